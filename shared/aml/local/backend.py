"""The ``local`` AML backend: the pipeline's steps run on this machine, in the background.

``submit`` records the run in the lake (``runs/<run_id>/run.json``, created atomically, so
that two identical submits start one run) and starts a detached runner process, then returns
at once. The runner (``python -m shared.aml.local.backend <run_id>``) resolves the pipeline job YAML
and its component YAMLs the way AML does (``${{parent.inputs.x}}``,
``${{parent.jobs.<step>.outputs.<o>}}``, ``${{inputs.x}}``, ``$[[optional]]``), runs each
step's command as a subprocess, and keeps ``runs/<run_id>/status.json`` current (with a
heartbeat), step logs under ``runs/<run_id>/logs/`` and outputs under
``runs/<run_id>/outputs/``. Any process that sees the same lake reads the status; cancel is
a marker file the runner watches, so it works from another process too.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared import ROOT, clock
from shared.aml.catalog import Pipeline, RunRequest, load_catalog
from shared.aml.status import Backend, RunError, RunNotFound, RunStatus, StepStatus, normalise
from shared.lake import Lake, LocalLake, NotFoundError
from shared.settings import Settings, settings_env

HEARTBEAT_S = 2.0
#: a runner silent for this long is reported NotResponding (AML's word for it)
STALE_S = 30.0
POLL_S = 0.1


def _paths(run_id: str) -> dict[str, str]:
    base = f"runs/{run_id}"
    return {"run": f"{base}/run.json", "status": f"{base}/status.json", "cancel": f"{base}/cancel.json"}


class LocalBackend(Backend):
    name = "local"

    def __init__(self, lake: Lake, settings: Settings) -> None:
        self.lake = lake
        self.settings = settings

    def submit(self, pipeline: Pipeline, request: RunRequest, run_id: str) -> tuple[RunStatus, bool]:
        if pipeline.local is None:
            from shared.aml.status import BackendError

            raise BackendError(f"pipeline {pipeline.name} has no local definition", status=501, code="not_local")
        record = {
            "run_id": run_id,
            "pipeline": pipeline.name,
            "request": request.model_dump(mode="json"),
            "created_at": clock.now_iso(),
        }
        if not self.lake.create(_paths(run_id)["run"], json.dumps(record, indent=2).encode()):
            return self.get(run_id), False
        env = {**os.environ, **settings_env(self.settings), "PYTHONPATH": str(ROOT)}
        log = Path(tempfile.gettempdir()) / f"forecastops-runner-{run_id}.log"
        # detached through a shell that exits at once: the runner is re-parented (no zombie
        # left to this long-lived worker) and outlives this request and this process
        try:
            subprocess.run(
                ["/bin/sh", "-c", '"$0" "$@" </dev/null >>"$FORECASTOPS_RUNNER_LOG" 2>&1 &']
                + [sys.executable, "-m", "shared.aml.local.backend", run_id],
                cwd=ROOT,
                env={**env, "FORECASTOPS_RUNNER_LOG": str(log)},
                check=True,
                timeout=30,
            )
        except (OSError, subprocess.SubprocessError) as e:
            # the run is recorded: end it, or the same key would re-attach to a run that never starts
            error = {"step": None, "message": f"the local runner could not start: {e}", "code": "runner_not_started"}
            status = {
                "aml_status": "Failed",
                "steps": [],
                "ended_at": clock.now_iso(),
                "heartbeat_at": clock.now_iso(),
                "error": error,
            }
            self.lake.write_bytes(_paths(run_id)["status"], json.dumps(status).encode())
        return self.get(run_id), True

    def get(self, run_id: str) -> RunStatus:
        paths = _paths(run_id)
        try:
            record = json.loads(self.lake.read_bytes(paths["run"]))
        except (NotFoundError, ValueError):
            raise RunNotFound(run_id) from None
        try:
            status = json.loads(self.lake.read_bytes(paths["status"]))
        except NotFoundError:
            status = {"aml_status": "NotStarted", "steps": []}
        aml_status = status["aml_status"]
        terminal = aml_status in ("Completed", "Failed", "Canceled")
        if not terminal:
            if self.lake.exists(paths["cancel"]):
                aml_status = "CancelRequested"
            beat = status.get("heartbeat_at") or record["created_at"]
            age = (clock.now() - clock.parse_iso(beat)).total_seconds()
            if age > STALE_S:
                aml_status = "NotResponding"
        req = record["request"]
        return RunStatus.of(
            run_id,
            aml_status,
            pipeline=record["pipeline"],
            backend=self.name,
            experiment=req.get("experiment"),
            created_at=record["created_at"],
            started_at=status.get("started_at"),
            ended_at=status.get("ended_at"),
            steps=[StepStatus(**s) for s in status.get("steps", [])],
            error=RunError(**status["error"]) if status.get("error") else None,
            portal_url=self.lake.describe(f"runs/{run_id}/status.json").removesuffix("/status.json"),
            metrics=status.get("metrics", {}),
            tags=req.get("tags", {}),
        )

    def cancel(self, run_id: str) -> RunStatus:
        self.get(run_id)  # 404 for an unknown run
        self.lake.create(_paths(run_id)["cancel"], json.dumps({"requested_at": clock.now_iso()}).encode())
        return self.get(run_id)


# the plan: AML's pipeline YAML resolved for this machine -------------------------------------
@dataclass
class Step:
    name: str
    argv: list[str]
    cwd: Path
    outputs: dict[str, Path]
    env: dict[str, str] = field(default_factory=dict)


_BINDING = re.compile(r"\$\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")
_OPTIONAL = re.compile(r"\$\[\[(.*?)\]\]", re.S)


def _yaml(path: Path) -> dict[str, Any]:
    import yaml

    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _local_path(value: str, lake: Lake, work: Path, name: str) -> str:
    """A uri input (``azureml://datastores/<store>/paths/<p>`` or a lake path) as a folder here."""
    m = re.match(r"^azureml://datastores/[^/]+/paths/(.*)$", value)
    rel = (m.group(1) if m else value).strip("/")
    if isinstance(lake, LocalLake):
        return str(lake.root / rel)
    target = work / "inputs" / name
    for path in lake.list(rel):
        dest = target / path[len(rel) :].lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(lake.read_bytes(path))
    return str(target)


def plan(pipeline: Pipeline, request: RunRequest, lake: Lake, work: Path) -> list[Step]:
    """The steps of ``pipeline`` in order, with every binding resolved."""
    assert pipeline.local is not None
    job_file = ROOT / pipeline.local.job
    job = _yaml(job_file)
    values: dict[str, str] = {}
    for name, spec in (job.get("inputs") or {}).items():
        default = spec.get("default", spec.get("path")) if isinstance(spec, dict) else spec
        if default is not None:
            values[name] = str(default)
    values.update({k: json.dumps(v) if isinstance(v, bool) else str(v) for k, v in request.parameters.items()})
    values.update(request.inputs)
    for name, spec in (job.get("inputs") or {}).items():
        if isinstance(spec, dict) and spec.get("type") in ("uri_folder", "uri_file", "mltable") and name in values:
            values[name] = _local_path(values[name], lake, work, name)
    steps: list[Step] = []
    produced: dict[str, dict[str, Path]] = {}
    for step_name, step in (job.get("jobs") or {}).items():
        ref = step["component"]
        if isinstance(ref, str) and ref.startswith("azureml:"):
            comp_name = ref.split(":")[1]
            comp_file = ROOT / pipeline.local.components[comp_name]
        else:
            comp_file = (job_file.parent / str(ref).removeprefix("file:")).resolve()
        comp = _yaml(comp_file)
        outputs = {o: work / "outputs" / step_name / o for o in (comp.get("outputs") or {})}
        inputs: dict[str, str] = {}
        for name, spec in (comp.get("inputs") or {}).items():
            if isinstance(spec, dict) and spec.get("default") is not None:
                inputs[name] = str(spec["default"])
        for name, bound in (step.get("inputs") or {}).items():
            inputs[name] = _bind(str(bound), values, produced)
        context = {
            **{f"inputs.{k}": v for k, v in inputs.items()},
            **{f"outputs.{k}": str(v) for k, v in outputs.items()},
        }
        argv = shlex.split(_render(comp["command"], context, comp_file))
        if argv and argv[0] in ("python", "python3"):
            argv[0] = sys.executable
        steps.append(Step(step_name, argv, (comp_file.parent / comp.get("code", ".")).resolve(), outputs))
        produced[step_name] = outputs
    return steps


def _render(command: str, context: dict[str, str], where: Path) -> str:
    """A component's command with its ``$[[optional]]`` parts and ``${{...}}`` bindings."""
    command = _OPTIONAL.sub(lambda m: m.group(1) if _bound_all(m.group(1), context) else "", command)
    return _BINDING.sub(lambda m: _lookup(m.group(1), context, where), command)


def _bound_all(text: str, context: dict[str, str]) -> bool:
    return all(m.group(1) in context for m in _BINDING.finditer(text))


def _lookup(name: str, context: dict[str, str], where: Path) -> str:
    if name not in context:
        raise ValueError(f"{where}: ${{{{{name}}}}} is not bound")
    return shlex.quote(context[name])


def _bind(value: str, values: dict[str, str], produced: dict[str, dict[str, Path]]) -> str:
    def sub(m: re.Match[str]) -> str:
        parts = m.group(1).split(".")
        if parts[:2] == ["parent", "inputs"] and len(parts) == 3:
            if parts[2] not in values:
                raise ValueError(f"pipeline input {parts[2]!r} has no value")
            return values[parts[2]]
        if parts[:2] == ["parent", "jobs"] and len(parts) == 5 and parts[3] == "outputs":
            return str(produced[parts[2]][parts[4]])
        raise ValueError(f"unsupported binding ${{{{{m.group(1)}}}}}")

    return _BINDING.sub(sub, value)


# the runner (a process of its own) -------------------------------------------------------------
class Runner:
    def __init__(self, lake: Lake, run_id: str, work: Path) -> None:
        self.lake = lake
        self.run_id = run_id
        self.work = work
        self.paths = _paths(run_id)
        self.status: dict[str, Any] = {"aml_status": "Starting", "steps": [], "metrics": {}}

    def save(self) -> None:
        self.status["heartbeat_at"] = clock.now_iso()
        self.lake.write_bytes(self.paths["status"], json.dumps(self.status, indent=2).encode())

    def cancel_requested(self) -> bool:
        return self.lake.exists(self.paths["cancel"])

    def finish(self, aml_status: str, error: dict[str, Any] | None = None) -> None:
        self.status.update(aml_status=aml_status, ended_at=clock.now_iso(), error=error)
        self.save()

    def run(self) -> None:
        record = json.loads(self.lake.read_bytes(self.paths["run"]))
        request = RunRequest(**record["request"])
        pipeline = load_catalog()[record["pipeline"]]
        self.status["started_at"] = clock.now_iso()
        try:
            steps = plan(pipeline, request, self.lake, self.work)
        except (ValueError, KeyError, OSError) as e:
            self.finish("Failed", {"step": None, "message": f"the pipeline could not be prepared: {e}", "code": "plan"})
            return
        self.status["steps"] = [
            {"name": s.name, "aml_status": "NotStarted", "status": "queued", "started_at": None, "ended_at": None}
            for s in steps
        ]
        self.status["aml_status"] = "Running"
        self.save()
        failed: dict[str, Any] | None = None
        for i, step in enumerate(steps):
            if self.cancel_requested():
                self.finish("Canceled")
                return
            outcome = self._run_step(i, step)
            if outcome == "Canceled":
                self.finish("Canceled")
                return
            if outcome == "Failed" and failed is None:
                failed = {"step": step.name, "message": self.status["steps"][i]["error"], "code": "step_failed"}
                if not request.continue_on_step_failure:
                    break
        self.finish("Failed" if failed else "Completed", failed)

    def _set_step(self, i: int, aml_status: str, **kw: Any) -> None:
        self.status["steps"][i].update(aml_status=aml_status, status=normalise(aml_status), **kw)
        self.save()

    def _run_step(self, i: int, step: Step) -> str:
        for out in step.outputs.values():
            out.mkdir(parents=True, exist_ok=True)
        log_file = self.work / "logs" / f"{step.name}.txt"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        metrics_file = self.work / "metrics" / f"{step.name}.jsonl"
        metrics_file.parent.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "FORECASTOPS_RUN_ID": self.run_id,
            "FORECASTOPS_STEP": step.name,
            "FORECASTOPS_METRICS_FILE": str(metrics_file),
            "MLFLOW_TRACKING_URI": (self.work / "mlruns").as_uri(),
            # MLflow 3 keeps its file store in maintenance mode and refuses it unless allowed;
            # a database store would need SQLAlchemy, which the light install leaves out
            "MLFLOW_ALLOW_FILE_STORE": "true",
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        self._set_step(i, "Running", started_at=clock.now_iso())
        with open(log_file, "ab") as log:
            proc = subprocess.Popen(
                step.argv, cwd=step.cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            last_beat = time.monotonic()
            while proc.poll() is None:
                time.sleep(POLL_S)
                if self.cancel_requested():
                    os.killpg(proc.pid, signal.SIGTERM)
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        os.killpg(proc.pid, signal.SIGKILL)
                        proc.wait()
                    self._set_step(i, "Canceled", ended_at=clock.now_iso())
                    return "Canceled"
                if time.monotonic() - last_beat > HEARTBEAT_S:
                    self.save()
                    last_beat = time.monotonic()
        self._publish(step, log_file)
        self.status["metrics"][step.name] = _read_metrics(metrics_file)
        if proc.returncode != 0:
            tail = log_file.read_text(errors="replace").strip().splitlines()[-5:]
            message = f"exit code {proc.returncode}: " + " | ".join(tail)
            self._set_step(i, "Failed", ended_at=clock.now_iso(), error=message[-2000:])
            return "Failed"
        self._set_step(i, "Completed", ended_at=clock.now_iso())
        return "Completed"

    def _publish(self, step: Step, log_file: Path) -> None:
        """Step logs and outputs into the lake, unless the work folder already is the lake."""
        if isinstance(self.lake, LocalLake) and self.work.is_relative_to(self.lake.root):
            return
        base = f"runs/{self.run_id}"
        with open(log_file, "rb") as f:
            self.lake.upload(f"{base}/logs/{step.name}.txt", f)
        for name, folder in step.outputs.items():
            for file in sorted(p for p in folder.rglob("*") if p.is_file()):
                with open(file, "rb") as f:
                    self.lake.upload(f"{base}/outputs/{step.name}/{name}/{file.relative_to(folder).as_posix()}", f)


def _read_metrics(path: Path) -> dict[str, float]:
    metrics: dict[str, float] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                item = json.loads(line)
                metrics[item["name"]] = float(item["value"])
    return metrics


def work_folder(lake: Lake, settings: Settings, run_id: str) -> Path:
    if settings.local_runs_root is not None:
        return Path(settings.local_runs_root).absolute() / run_id
    if isinstance(lake, LocalLake):
        return lake.root / "runs" / run_id
    return Path(tempfile.gettempdir()) / "forecastops-runs" / run_id


def main(argv: list[str] | None = None) -> int:
    from shared.lake import make_lake
    from shared.settings import get_settings

    (run_id,) = argv if argv is not None else sys.argv[1:]
    if argv is None and os.getpgid(0) != os.getpid():
        os.setsid()  # a session of its own: a cancel signal to its steps never reaches the caller
    settings = get_settings()
    lake = make_lake(settings)
    runner = Runner(lake, run_id, work_folder(lake, settings, run_id))
    try:
        runner.run()
    except Exception as e:  # the run must end in a status, whatever happened
        runner.finish("Failed", {"step": None, "message": f"the local runner crashed: {e!r}", "code": "runner"})
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
