"""MFE jobs: submit (PUT, with one Run History child run per pipeline step), get (advancing a status script),
list, cancel (202 + an operation result to poll), and the statuses and failures tests set. A job's status
follows AML's contract (``contract.TERMINAL_STATUSES``) onto its steps and its MLflow run."""

from __future__ import annotations

import copy
import json
import re
import uuid
from typing import Any

from tests.fakes.aml.contract import ARM_HOST, PROVIDER, TERMINAL_STATUSES, now_iso
from tests.fakes.aml.tracking import TrackingMixin
from tests.fakes.aml.transport import RecordedRequest, Reply

__all__ = ["JobsMixin"]


class JobsMixin(TrackingMixin):
    """The workspace's jobs and their pipeline steps (every job and step also has an MLflow run)."""

    #: what runs a submitted job (``tests.fakes.aml.executor.Executor``); None: the job moves only as a test says
    executor: Any = None

    # ------------------------------------------------------------------ public helpers
    def script(self, job_name: str, statuses: list[str]) -> None:
        """Each MFE GET of the job consumes one status (pipeline children follow); the last one sticks."""
        self.scripts[job_name] = list(statuses)

    def set_status(self, job_name: str, status: str) -> None:
        self._set_status(job_name, status)

    def fail(
        self, job_name: str, step: str | None = None, message: str = "Step failed", code: str = "UserError"
    ) -> None:
        """Mark a job Failed. For a pipeline, ``step`` names the failing child: that child is Failed with ``error``
        (Run History ErrorResponse shape), earlier steps Completed, later ones Canceled."""
        self.scripts.pop(job_name, None)
        error = self._error_response(code, message, target=step)
        if job_name in self.children and step is not None:
            self._fail_step(job_name, step, error)
        elif job_name in self.runs:
            self.runs[job_name]["status"] = "Failed"
            self.runs[job_name]["error"] = error
        self._set_status(job_name, "Failed", propagate=False)
        job = self.jobs.get(job_name)
        if job is not None:
            if step is not None and job_name in self.children:
                # what AML puts on the pipeline (parent) run; the step's own error is on the child run
                error = self._error_response(
                    "UserError",
                    f"Pipeline has failed child jobs. Failed nodes: /{step}. For more details and logs, please go to "
                    "the job detail page and check the child jobs.",
                )
            job["_error"] = error
            if step is not None:
                job["_failed_step"] = step

    def child_runs(self, job_name: str) -> list[dict[str, Any]]:
        return self.children.get(job_name, [])

    def child_run(self, job_name: str, step: str) -> dict[str, Any]:
        for child in self.children.get(job_name, []):
            if child["name"] == step:
                return child
        raise KeyError(step)

    # ------------------------------------------------------------------ handlers
    def _put_job(self, name: str, rec: RecordedRequest) -> Reply:
        sent = rec.json or {}
        props = copy.deepcopy(sent.get("properties", {}))
        created = name not in self.jobs
        unknown = self._unregistered_components(props)
        if created and unknown:
            # AML resolves every component a job names when it is submitted
            return self._not_found(f"component {unknown[0]} in workspace {self.workspace_name}")
        mismatch = self._parallel_mismatch(props) if created else None
        if mismatch:
            # AML runs a parallel node only with a parallel component (its task, mini-batches)
            return Reply(400, self._error_response("UserError", mismatch), {"x-ms-response-type": "error"})
        experiment = props.get("experimentName") or "Default"
        props["experimentName"] = experiment
        props.setdefault("displayName", name)
        props.setdefault("isArchived", False)
        props["status"] = "NotStarted"
        props["services"] = self._services(name)
        server_props = dict(props.get("properties") or {})
        if props.get("jobType") == "Pipeline":
            server_props.update(
                {
                    "azureml.runsource": "azureml.PipelineRun",
                    "runSource": "MFE",
                    "runType": "HTTP",
                    "azureml.parameters": json.dumps(
                        {k: v.get("value") for k, v in (props.get("inputs") or {}).items() if "value" in v}
                    ),
                    "azureml.continue_on_step_failure": "False",
                    "azureml.continue_on_failed_optional_input": "True",
                    "azureml.pipelineComponent": "pipelinerun",
                    "azureml.pipelines.stages": '{"Initialization":null,"Execution":"NotStarted"}',
                }
            )
        props["properties"] = server_props
        body = {
            "id": self.arm_id("jobs", name),
            "name": name,
            "type": f"{PROVIDER}/workspaces/jobs",
            "properties": props,
            "systemData": self._system_data(),
        }
        self._experiment_id(experiment)
        self.jobs[name] = {"sent": copy.deepcopy(sent), "body": body}
        self._mlflow_run(name, experiment=experiment, run_name=props.get("displayName"))
        if props.get("jobType") == "Pipeline":
            self._create_children(name, props)
        if created and self.executor is not None:
            self.executor.submitted(self, name)
        return Reply(201 if created else 200, body)

    def _parallel_mismatch(self, props: dict[str, Any]) -> str | None:
        """Why a pipeline's parallel node cannot run: its component is not a parallel one, or
        lacks what a parallel job needs (input_data, a run_function task with an entry script)."""
        for step, node in (props.get("jobs") or {}).items():
            m = re.search(r"/components/([^/]+)/versions/([^/]+)$", node.get("componentId") or "")
            if node.get("type") != "parallel" or m is None:
                continue
            found = self.components.get(m.group(1), {}).get(m.group(2))
            spec = ((found or {}).get("properties") or {}).get("componentSpec") or {}
            task = spec.get("task") or {}
            if spec.get("type") != "parallel":
                return f"step {step}: component {m.group(1)}:{m.group(2)} is not a parallel component"
            if not spec.get("input_data") or not task.get("entry_script"):
                return f"step {step}: a parallel component needs input_data and task.entry_script"
        return None

    def _unregistered_components(self, props: dict[str, Any]) -> list[str]:
        ids = [props.get("componentId")] + [n.get("componentId") for n in (props.get("jobs") or {}).values()]
        found = []
        for cid in ids:
            m = re.search(r"/components/([^/]+)/versions/([^/]+)$", cid or "")
            if m and m.group(2) not in self.components.get(m.group(1), {}):
                found.append(f"{m.group(1)}:{m.group(2)}")
        return found

    def _get_job(self, name: str, rec: RecordedRequest) -> Reply:
        job = self.jobs.get(name)
        if job is None:
            if name in self.runs:
                # pipeline child job: MFE answers with no "properties" (the SDK then falls back to Run History)
                return Reply(
                    200, {"id": self.arm_id("jobs", name), "name": name, "type": f"{PROVIDER}/workspaces/jobs"}
                )
            return self._not_found(f"job {name} in workspace {self.workspace_name}")
        self._advance(name)
        return Reply(200, job["body"])

    def _list_jobs(self, rec: RecordedRequest) -> Reply:
        values = [j["body"] for j in self.jobs.values()]
        return Reply(200, {"value": values, "nextLink": None})

    def _cancel_job(self, name: str, rec: RecordedRequest) -> Reply:
        job = self.jobs.get(name)
        if job is None:
            return self._not_found(f"job {name} in workspace {self.workspace_name}")
        self.scripts.pop(name, None)
        status = job["body"]["properties"]["status"]
        if status not in TERMINAL_STATUSES:
            self._set_status(name, "CancelRequested", propagate=False)
            job["_cancel_pending"] = True
        op = f"jc:{uuid.uuid5(uuid.NAMESPACE_URL, name)}"
        job["_cancel_op"] = op
        api = rec.api_version or "2023-02-01-preview"
        loc = (
            f"https://{ARM_HOST}/subscriptions/{self.subscription_id}/providers/{PROVIDER}/locations/{self.location}"
            f"/mfeOperationResults/{op}?api-version={api}"
        )
        return Reply(202, None, {"Location": loc, "Retry-After": "0", "x-ms-async-operation-timeout": "PT1H"})

    def _operation_result(self, op: str, rec: RecordedRequest) -> Reply:
        for name, job in self.jobs.items():
            if job.get("_cancel_op") == op:
                if job.pop("_cancel_pending", False):
                    self._set_status(name, "Canceled")
                return Reply(200, None)
        return self._not_found(f"operation {op}")

    # ------------------------------------------------------------------ status
    def _advance(self, name: str) -> None:
        steps = self.scripts.get(name)
        if steps:
            status = steps.pop(0) if len(steps) > 1 else steps[0]
            self._set_status(name, status)

    def _set_status(self, name: str, status: str, propagate: bool = True) -> None:
        job = self.jobs.get(name)
        if job is not None:
            job["body"]["properties"]["status"] = status
            if propagate:
                self._propagate_to_children(name, status)
        elif name in self.runs:
            self.runs[name]["status"] = status
        self._set_mlflow_status(name, status)

    def _propagate_to_children(self, parent: str, status: str) -> None:
        """Parent Running: first unfinished step Running, the rest NotStarted. Parent terminal (Completed, Failed,
        Canceled): unfinished steps take the parent's status and end. Other parent statuses (Queued, Preparing,
        and the stalled NotResponding, Paused, Unknown, which do not end a job) leave the steps alone."""
        pending = [c for c in self.children.get(parent, []) if c["status"] not in TERMINAL_STATUSES]
        if status == "Running":
            for i, child in enumerate(pending):
                child["status"] = "Running" if i == 0 else "NotStarted"
                if i == 0:
                    child["startTimeUtc"] = child["startTimeUtc"] or now_iso()
        elif status in TERMINAL_STATUSES:
            for child in pending:
                child["status"] = status
                child["startTimeUtc"] = child["startTimeUtc"] or now_iso()
                child["endTimeUtc"] = now_iso()
        for child in self.children.get(parent, []):
            self._set_mlflow_status(child["runId"], child["status"])

    def _fail_step(self, job_name: str, step: str, error: dict[str, Any]) -> None:
        """Steps before ``step`` Completed, ``step`` Failed with ``error``, later ones Canceled."""
        seen = False
        for child in self.children[job_name]:
            if child["name"] == step:
                seen = True
                child["status"] = "Failed"
                child["error"] = error
                child["endTimeUtc"] = now_iso()
            elif not seen:
                child["status"] = "Completed"
                child["endTimeUtc"] = now_iso()
            else:
                child["status"] = "Canceled"
        if not seen:
            raise KeyError(f"pipeline {job_name} has no step {step!r}")

    # ------------------------------------------------------------------ bodies
    def _services(self, name: str) -> dict[str, Any]:
        return {
            "Tracking": {
                "jobServiceType": "Tracking",
                "port": None,
                "endpoint": self.mlflow_tracking_uri,
                "status": None,
                "errorMessage": None,
                "properties": None,
                "nodes": None,
            },
            "Studio": {
                "jobServiceType": "Studio",
                "port": None,
                "endpoint": f"https://ml.azure.com/runs/{name}?wsid={self.ws_scope}",
                "status": None,
                "errorMessage": None,
                "properties": None,
                "nodes": None,
            },
        }

    def _create_children(self, parent: str, props: dict[str, Any]) -> None:
        experiment = props["experimentName"]
        children = []
        for i, (step, node) in enumerate((props.get("jobs") or {}).items()):
            run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{parent}/{step}"))
            node_id = uuid.uuid5(uuid.NAMESPACE_OID, f"{parent}/{step}").hex[:8]
            run = self._child_run_body(parent, experiment, step, node, run_id, node_id, 1000 + i, props)
            children.append(run)
            self.runs[run_id] = run
            self._mlflow_run(
                run_id,
                experiment=experiment,
                run_name=run["displayName"],
                tags={"mlflow.parentRunId": parent, "mlflow.rootRunId": parent, "azureml.nodeid": node_id},
            )
        self.children[parent] = children

    def _child_run_body(
        self,
        parent: str,
        experiment: str,
        step: str,
        node: dict[str, Any],
        run_id: str,
        node_id: str,
        run_number: int,
        props: dict[str, Any],
    ) -> dict[str, Any]:
        """The Run History ``Run`` of one pipeline step, NotStarted."""
        cm = re.search(r"/components/([^/]+)/versions/([^/]+)$", node.get("componentId") or "")
        compute = (props.get("computeId") or "").rsplit("/", 1)[-1]
        return {
            "runNumber": run_number,
            "rootRunId": parent,
            "createdUtc": now_iso(),
            "createdBy": {
                "userObjectId": "00000000-0000-0000-0000-0000000000bb",
                "userTenantId": "00000000-0000-0000-0000-0000000000aa",
                "userName": "ForecastOps Test",
                "upn": "forecastops@example.com",
            },
            "userId": "00000000-0000-0000-0000-0000000000bb",
            "runUuid": str(uuid.uuid4()),
            "parentRunUuid": None,
            "rootRunUuid": None,
            "runId": run_id,
            "parentRunId": parent,
            "experimentId": self._experiment_id(experiment),
            "status": "NotStarted",
            "startTimeUtc": None,
            "endTimeUtc": None,
            "displayName": node.get("displayName") or step,
            "name": step,
            "description": node.get("description"),
            "hidden": False,
            "runType": "azureml.StepRun",
            "runTypeV2": {"orchestrator": None, "traits": [], "attribution": "Aether", "computeType": "AmlCompute"},
            "properties": {
                "ContentSnapshotId": str(uuid.uuid4()),
                "StepType": "ParallelRunStep" if node.get("type") == "parallel" else "CommandStep",
                "azureml.moduleid": str(uuid.uuid4()),
                "azureml.moduleName": cm.group(1) if cm else step,
                "azureml.moduleVersion": cm.group(2) if cm else None,
                "azureml.runsource": "azureml.StepRun",
                "azureml.nodeid": node_id,
                "azureml.pipelinerunid": parent,
                "azureml.pipeline": parent,
                "azureml.rootpipelinerunid": parent,
                "azureml.pipelineComponent": "masterescloud",
                "_azureml.ComputeTargetType": "amlctrain",
            },
            "parameters": {},
            "tags": {"azureml.nodeid": node_id, "azureml.pipeline": parent},
            "services": {},
            "target": compute or None,
            "compute": {"target": compute, "targetType": "AmlCompute"},
            "error": None,
            "warnings": None,
            "createdFrom": None,
            "lastModifiedUtc": now_iso(),
        }
