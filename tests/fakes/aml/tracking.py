"""MLflow's tracking REST API as AML serves it (``runs/get``, ``runs/search``, ``metrics/get-history``): one
MLflow run per job and per pipeline step, with the metrics, params and tags tests set on them."""

from __future__ import annotations

import re
from typing import Any

from tests.fakes.aml.contract import mlflow_status, now_ms
from tests.fakes.aml.transport import RecordedRequest, Reply
from tests.fakes.aml.workspace import Workspace

__all__ = ["TrackingMixin"]

_RUN_FIELDS = ("attributes.run_id", "run_id", "attributes.run_name", "run_name", "attributes.status", "status")


class TrackingMixin(Workspace):
    """The workspace's MLflow runs and the MLflow REST endpoints that read them."""

    # ------------------------------------------------------------------ public helpers
    def set_metrics(
        self,
        run_id: str,
        metrics: dict[str, float],
        params: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        run = self._mlflow_run(run_id)
        ts = now_ms()
        for key, value in metrics.items():
            run["metrics"][key] = {"key": key, "value": float(value), "timestamp": ts, "step": 0}
        run["params"].update(params or {})
        run["tags"].update(tags or {})

    # ------------------------------------------------------------------ state
    def _mlflow_run(
        self, run_id: str, experiment: str = "Default", run_name: str | None = None, tags: dict[str, str] | None = None
    ) -> dict[str, Any]:
        if run_id not in self.mlflow_runs:
            self.mlflow_runs[run_id] = {
                "run_id": run_id,
                "experiment_id": self._experiment_id(experiment),
                "run_name": run_name or run_id,
                "status": "RUNNING",
                "start_time": now_ms(),
                "metrics": {},
                "params": {},
                "tags": {"mlflow.runName": run_name or run_id, "mlflow.user": "ForecastOps Test", **(tags or {})},
            }
        elif tags:
            self.mlflow_runs[run_id]["tags"].update(tags)
        return self.mlflow_runs[run_id]

    def _set_mlflow_status(self, run_id: str, aml_status: str) -> None:
        """Follow a job's (or step's) AML status on its MLflow run, if it has one."""
        if run_id in self.mlflow_runs:
            self.mlflow_runs[run_id]["status"] = mlflow_status(aml_status)

    # ------------------------------------------------------------------ bodies
    def _mlflow_run_json(self, run: dict[str, Any]) -> dict[str, Any]:
        info = {
            "run_id": run["run_id"],
            "run_uuid": run["run_id"],
            "run_name": run["run_name"],
            "experiment_id": run["experiment_id"],
            "user_id": "00000000-0000-0000-0000-0000000000bb",
            "status": run["status"],
            "start_time": run["start_time"],
            "artifact_uri": f"azureml://experiments/{run['experiment_id']}/runs/{run['run_id']}/artifacts",
            "lifecycle_stage": "active",
        }
        if run["status"] in ("FINISHED", "FAILED", "KILLED"):
            info["end_time"] = now_ms()
        return {
            "info": info,
            "data": {
                "metrics": list(run["metrics"].values()),
                "params": [{"key": k, "value": str(v)} for k, v in run["params"].items()],
                "tags": [{"key": k, "value": str(v)} for k, v in run["tags"].items()],
            },
            "inputs": {},
        }

    def _mlflow_error(self, status: int, code: str, message: str) -> Reply:
        return Reply(status, {"error_code": code, "message": message})

    # ------------------------------------------------------------------ handlers
    def _mlflow_get_run(self, rec: RecordedRequest) -> Reply:
        run_id = rec.query.get("run_id") or rec.query.get("run_uuid")
        run = self.mlflow_runs.get(run_id or "")
        if run is None:
            return self._mlflow_error(404, "RESOURCE_DOES_NOT_EXIST", f"Run '{run_id}' not found.")
        return Reply(200, {"run": self._mlflow_run_json(run)})

    def _mlflow_search(self, rec: RecordedRequest) -> Reply:
        body = rec.json or {}
        exp_ids = set(body.get("experiment_ids") or [])
        runs = [r for r in self.mlflow_runs.values() if not exp_ids or r["experiment_id"] in exp_ids]
        flt = (body.get("filter") or "").strip()
        for clause in [c.strip() for c in re.split(r"\s+and\s+", flt, flags=re.I) if c.strip()]:
            cm = re.fullmatch(r"(?:tags\.)?[`\"]?([\w.]+)[`\"]?\s*(=|!=)\s*'([^']*)'", clause)
            if cm is None:
                return self._mlflow_error(400, "INVALID_PARAMETER_VALUE", f"Unsupported filter clause: {clause}")
            key, op, value = cm.groups()
            if key in _RUN_FIELDS:
                field_name = key.split(".")[-1]

                def get(r: dict[str, Any], f: str = field_name) -> Any:
                    return r[f]
            else:

                def get(r: dict[str, Any], k: str = key) -> Any:
                    return r["tags"].get(k)

            runs = [r for r in runs if (get(r) == value) == (op == "=")]
        max_results = int(body.get("max_results") or 1000)
        start = int(body.get("page_token") or 0)
        page = runs[start : start + max_results]
        out: dict[str, Any] = {"runs": [self._mlflow_run_json(r) for r in page]}
        if start + max_results < len(runs):
            out["next_page_token"] = str(start + max_results)
        return Reply(200, out)

    def _mlflow_metric_history(self, rec: RecordedRequest) -> Reply:
        run = self.mlflow_runs.get(rec.query.get("run_id", ""))
        if run is None:
            return self._mlflow_error(404, "RESOURCE_DOES_NOT_EXIST", "Run not found.")
        metric = run["metrics"].get(rec.query.get("metric_key", ""))
        return Reply(200, {"metrics": [metric] if metric else []})
