"""Run History as AML serves it: ``runs/{id}``, ``runs/{id}/details`` and ``runs/{id}/children`` for jobs and for
pipeline steps (where ``azure-ai-ml`` reads a pipeline's child jobs and a step's error)."""

from __future__ import annotations

from typing import Any

from tests.fakes.aml.contract import now_iso
from tests.fakes.aml.transport import RecordedRequest, Reply
from tests.fakes.aml.workspace import Workspace

__all__ = ["RunHistoryMixin"]


class RunHistoryMixin(Workspace):
    """Run History's view of the workspace's jobs and pipeline steps."""

    def _run_children(self, run_id: str, rec: RecordedRequest) -> Reply:
        if run_id not in self.children and run_id not in self.jobs and run_id not in self.runs:
            return self._not_found(f"run {run_id}")
        kids = self.children.get(run_id, [])
        top = rec.query.get("$top")
        if top:
            kids = kids[: int(top)]
        return Reply(200, {"value": kids, "continuationToken": None, "nextLink": None})

    def _run_body(self, run_id: str) -> dict[str, Any] | None:
        if run_id in self.runs:
            return self.runs[run_id]
        job = self.jobs.get(run_id)
        if job is None:
            return None
        props = job["body"]["properties"]
        return {
            "runId": run_id,
            "rootRunId": run_id,
            "parentRunId": None,
            "experimentId": self._experiment_id(props["experimentName"]),
            "status": props["status"],
            "displayName": props.get("displayName"),
            "name": run_id,
            "runType": "azureml.PipelineRun" if props.get("jobType") == "Pipeline" else "azureml.scriptrun",
            "properties": props.get("properties", {}),
            "tags": props.get("tags", {}),
            "error": job.get("_error"),
            "target": (props.get("computeId") or "").rsplit("/", 1)[-1] or None,
        }

    def _get_run(self, run_id: str, rec: RecordedRequest) -> Reply:
        body = self._run_body(run_id)
        return self._not_found(f"run {run_id}") if body is None else Reply(200, body)

    def _run_details(self, run_id: str, rec: RecordedRequest) -> Reply:
        run = self._run_body(run_id)
        if run is None:
            return self._not_found(f"run {run_id}")
        body = {
            "runId": run["runId"],
            "runUuid": run.get("runUuid"),
            "parentRunUuid": None,
            "rootRunUuid": None,
            "target": run.get("target"),
            "status": run["status"],
            "parentRunId": run.get("parentRunId"),
            "dataContainerId": f"dcid.{run['runId']}",
            "createdTimeUtc": now_iso(),
            "startTimeUtc": run.get("startTimeUtc"),
            "endTimeUtc": run.get("endTimeUtc"),
            "error": run.get("error"),
            "warnings": run.get("warnings"),
            "tags": run.get("tags", {}),
            "properties": run.get("properties", {}),
            "parameters": {},
            "services": {},
            "inputDatasets": [],
            "outputDatasets": [],
            "runDefinition": None,
            "logFiles": {},
            "jobCost": None,
            "revision": 1,
            "runTypeV2": None,
            "settings": {},
            "computeRequest": None,
            "compute": run.get("compute"),
            "createdBy": run.get("createdBy"),
            "computeDuration": None,
            "effectiveStartTimeUtc": None,
            "runNumber": run.get("runNumber"),
            "rootRunId": run.get("rootRunId"),
            "experimentId": run.get("experimentId"),
            "userId": run.get("userId"),
            "statusRevision": 1,
            "currentComputeTime": None,
            "lastStartTimeUtc": None,
            "lastModifiedBy": None,
            "lastModifiedUtc": None,
            "duration": None,
            "inputs": None,
            "outputs": None,
            "currentAttemptId": 1,
        }
        return Reply(200, body)
