"""The ``azureml`` backend: the real service through azure-ai-ml's ``MLClient``.

Imported lazily (``shared.runtime.aml_backend``): azure-ai-ml costs about a second of import
that the ingestion functions must not pay at cold start.

The run id is the AML job name, derived from the request's idempotency key, so a second
submit with the same key finds the first job (GET before PUT; a PUT that loses a race to an
identical one re-attaches). Transient answers (429 with Retry-After, 5xx, timeouts) are
retried by the client's retry policy with backoff, bounded so that an HTTP caller still gets
an answer in seconds; what remains becomes a 503 to retry later. Other AML errors become
answers a data engineer can act on (403: the app's identity has no rights on the workspace;
a missing component: its name).

Inputs: a lake path or ``azureml://datastores/...`` URI, or a registered data asset version
(``azureml:<name>:<version>``): a lake path or a legacy ``azureml://datastores/lake/paths/...``
URI becomes its container's datastore URI (:func:`aml_path`), the rest is passed to the job as
it is, and AML resolves it. Outputs: every step
of a pipeline job YAML writes its outputs into the lake, at
``azureml://datastores/lake_runs/paths/<run_id>/outputs/<step>/<output>``, where the local backend
puts them (a registered pipeline component's inner steps keep AML's default outputs).
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass
from typing import Any, cast

import yaml
from azure.ai.ml import Input, MLClient, load_job
from azure.ai.ml.entities import Job, ManagedIdentityConfiguration, PipelineJob, PipelineJobSettings
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from shared import ROOT
from shared.aml import jobspec
from shared.aml.backend import Backend, BackendError, RunNotFound, TransientBackendError
from shared.aml.catalog import Pipeline
from shared.aml.lakeuri import aml_path
from shared.aml.request import RunRequest
from shared.aml.status import TERMINAL, RunError, RunStatus, StepStatus, normalise
from shared.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Retry:
    """azure-core's retry settings, for MLClient and for the MLflow client alike."""

    total: int = 3
    backoff_factor: float = 1.0
    backoff_max: float = 8

    def kwargs(self) -> dict[str, Any]:
        return {
            "retry_total": self.total,
            "retry_backoff_factor": self.backoff_factor,
            "retry_backoff_max": self.backoff_max,
        }


#: bounded retries: ADF's Azure Function activity gives up after 230 s
RETRY = Retry()
TIMEOUTS: dict[str, Any] = {"connection_timeout": 10, "read_timeout": 30}
TAG_PIPELINE = "forecastops.pipeline"
TAG_KEY = "forecastops.idempotency_key"
#: the components (name:version) a run was submitted with
TAG_COMPONENTS = "forecastops.components"


class MetricsUnavailable(Exception):
    """A finished run's metrics could not be read from AML's MLflow tracking."""


class AzureMLBackend(Backend):
    """The backend that runs pipelines as Azure ML jobs in one workspace."""

    name = "azureml"

    def __init__(self, client: MLClient, credential: Any, transport: Any = None, retry: Retry = RETRY) -> None:
        self.client = client
        self.retry = retry
        self.workspace = client.workspace_name
        # kept to talk to AML's MLflow endpoint with the same identity and transport
        self._credential = credential
        self._transport = transport
        self._mlflow: Any = None

    @classmethod
    def from_settings(cls, settings: Settings) -> AzureMLBackend:
        missing = [
            n
            for n, v in (
                ("AML_SUBSCRIPTION_ID", settings.aml_subscription_id),
                ("AML_RESOURCE_GROUP", settings.aml_resource_group),
                ("AML_WORKSPACE", settings.aml_workspace),
            )
            if not v
        ]
        if missing:
            raise BackendError(f"FORECASTOPS_AML_BACKEND=azureml needs {', '.join(missing)}", status=500, code="config")
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
        client = MLClient(
            credential,
            settings.aml_subscription_id,
            settings.aml_resource_group,
            settings.aml_workspace,
            **RETRY.kwargs(),
            **TIMEOUTS,
        )
        return cls(client, credential)

    # errors ---------------------------------------------------------------------------------------
    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ResourceNotFoundError, ResourceExistsError):
            raise
        except (ServiceRequestError, ServiceResponseError) as e:
            raise TransientBackendError(f"{what}: Azure ML did not answer ({e})") from e
        except ClientAuthenticationError as e:
            raise BackendError(f"{what}: the app could not authenticate to Azure ML: {_first_line(e)}") from e
        except HttpResponseError as e:
            status = e.status_code or 0
            if status == 429 or status >= 500 or status == 408:
                retry = _retry_after(e)
                raise TransientBackendError(f"{what}: Azure ML answered {status} ({_first_line(e)})", retry) from e
            if status in (401, 403):
                raise BackendError(
                    f"{what}: the app's identity has no rights on workspace {self.workspace} "
                    f"(Azure ML answered {status}: {_first_line(e)}); grant it AzureML Data Scientist",
                    code="forbidden",
                ) from e
            raise BackendError(f"{what}: Azure ML answered {status}: {_first_line(e)}") from e

    # the interface ----------------------------------------------------------------------------------
    def submit(self, pipeline: Pipeline, request: RunRequest, run_id: str) -> tuple[RunStatus, bool]:
        try:
            return self._status(self._call("get job", self.client.jobs.get, run_id)), False
        except ResourceNotFoundError:
            pass
        try:
            job = self._submit(pipeline, request, run_id)
        except ResourceExistsError:
            # an identical request won the race to create this job: re-attach to it
            return self._status(self._call("get job", self.client.jobs.get, run_id)), False
        except ResourceNotFoundError as e:
            raise BackendError(
                f"submit {pipeline.name}: an asset it needs is not registered in workspace {self.workspace}: "
                f"{_first_line(e)}",
                code="missing_asset",
            ) from e
        except HttpResponseError as e:
            if e.status_code == 409 or "already exists" in str(e).lower():
                return self._status(self._call("get job", self.client.jobs.get, run_id)), False
            raise
        return self._status(job, pipeline=pipeline.name), True

    def _submit(self, pipeline: Pipeline, request: RunRequest, run_id: str) -> Job:
        d = pipeline.definition
        tags = {**request.tags, TAG_PIPELINE: pipeline.name}
        if request.idempotency_key:
            tags[TAG_KEY] = request.idempotency_key
        inputs: dict[str, Any] = dict(request.parameters)
        for name, path in request.inputs.items():
            inputs[name] = Input(type=pipeline.inputs[name].type, path=aml_path(path))
        if d.kind == "pipeline_job":
            job_file = ROOT / str(d.job)
            spec = jobspec.build(
                job_file, request, pipeline, run_id, self._registered_outputs, workspace=self.workspace
            )
            pinned = sorted({str(n["component"]) for n in spec["jobs"].values() if isinstance(n.get("component"), str)})
            tags[TAG_COMPONENTS] = ",".join(c.removeprefix("azureml:") for c in pinned)
            job = cast(
                PipelineJob,
                self._sdk(
                    pipeline,
                    "load the pipeline job",
                    load_job,
                    io.StringIO(yaml.safe_dump(spec, sort_keys=False)),
                    relative_origin=str(job_file.parent),
                ),
            )
        else:
            component = self._call("get component", self.client.components.get, *_name_version(d.component))
            job = PipelineJob(component=component, inputs=inputs)
        job.name = run_id
        job.experiment_name = request.experiment
        job.tags = {**(job.tags or {}), **tags}
        # the steps read and write the lake through identity-based datastores as the compute's
        # managed identity (infra/ gives it the lake roles), not as whoever submitted
        job.identity = ManagedIdentityConfiguration()
        settings = job.settings if job.settings is not None else PipelineJobSettings()
        if pipeline.compute:
            settings.default_compute = pipeline.compute
        if request.continue_on_step_failure:
            settings.continue_on_step_failure = True
        job.settings = settings
        return self._call("create job", self._sdk, pipeline, "submit the job", self.client.jobs.create_or_update, job)

    def _registered_outputs(self, name: str, version: str | None, label: str | None) -> dict[str, str]:
        """A registered component's outputs (name -> type), asked of AML."""
        if version:
            component = self._call("get component", self.client.components.get, name, version)
        else:
            component = self._call("get component", self.client.components.get, name, label=label or "latest")
        return {k: v.type or "uri_folder" for k, v in (component.outputs or {}).items()}

    def _sdk(self, pipeline: Pipeline, stage: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args)``, an azure-ai-ml call; an exception of the SDK's own (not an answer of
        AML's) is a 502 naming the pipeline and the stage, never a 500 with its traceback."""
        try:
            return fn(*args, **kwargs)
        except (HttpResponseError, ServiceRequestError, ServiceResponseError, ClientAuthenticationError):
            raise
        except Exception as e:
            log.warning("submit %s: azure-ai-ml failed to %s", pipeline.name, stage, exc_info=True)
            raise BackendError(
                f"submit {pipeline.name}: azure-ai-ml failed to {stage}: {type(e).__name__}: {_first_line(e)}",
                code="backend_error",
            ) from e

    def get(self, run_id: str, known_status: str | None = None) -> RunStatus:
        """The job's status, steps and, once it ended, metrics. A caller that already knows
        the job's status (``known_status``) pays one AML call while nothing has changed: the
        steps are read only when the status moved, or at the end."""
        try:
            job = self._call("get job", self.client.jobs.get, run_id)
        except ResourceNotFoundError:
            raise RunNotFound(run_id) from None
        aml_status = _text(job.status)
        return self._status(job, with_steps=aml_status != known_status or aml_status in TERMINAL)

    def cancel(self, run_id: str) -> RunStatus:
        try:
            # polling=False: ask and answer at once; the status shows CancelRequested, then Canceled
            self._call("cancel job", self.client.jobs.begin_cancel, run_id, polling=False)
        except ResourceNotFoundError:
            raise RunNotFound(run_id) from None
        return self.get(run_id)

    # reading a job ------------------------------------------------------------------------------------
    def _status(self, job: Job, pipeline: str | None = None, with_steps: bool = False) -> RunStatus:
        """The job's status; with its steps (one Run History call, which carries each step's
        times and error) and, once the job has ended, the steps' metrics (read once, at the end)."""
        aml_status = _text(job.status)
        steps: list[StepStatus] = []
        error: RunError | None = None
        metrics: dict[str, dict[str, float | None]] = {}
        metrics_error: str | None = None
        if with_steps:
            for child in self._children(str(job.name)):
                step = self._step(child)
                steps.append(step)
                if step.aml_status == "Failed" and error is None:
                    error = RunError(step=step.name, message=step.error or "the step failed", code="step_failed")
            if aml_status in TERMINAL:
                metrics, metrics_error = self._metrics(steps)
        if aml_status == "Failed" and error is None:
            error = RunError(step=None, message="the run failed before any step ran", code="run_failed")
        tags = dict(job.tags or {})
        created = getattr(job, "creation_context", None)
        return RunStatus.of(
            str(job.name),
            aml_status,
            pipeline=pipeline or tags.get(TAG_PIPELINE),
            backend=self.name,
            experiment=job.experiment_name,
            created_at=_iso(created.created_at) if created is not None else None,
            # the job's own times are not in its REST body: its steps' span stands for them
            started_at=_time(job, "StartTimeUtc") or min((s.started_at for s in steps if s.started_at), default=None),
            ended_at=_time(job, "EndTimeUtc") or _ended(aml_status, steps),
            steps=steps,
            error=error,
            portal_url=job.studio_url,
            metrics=metrics,
            metrics_error=metrics_error,
            tags=tags,
        )

    def _children(self, run_id: str) -> list[dict[str, Any]]:
        """The pipeline's step runs, as Run History answers them (``startTimeUtc``,
        ``endTimeUtc``, ``error``): ``jobs.list(parent_job_name=...)`` would GET the parent
        again and drop the times."""
        ops = self.client.jobs._runs_operations
        scope = ops._operation_scope
        pages = self._call(
            "list steps",
            lambda: list(
                ops._operation.get_child(scope.subscription_id, scope.resource_group_name, str(self.workspace), run_id)
            ),
        )
        return [dict(run) for run in pages]

    def _step(self, child: dict[str, Any]) -> StepStatus:
        props = child.get("properties") or {}
        name = child.get("displayName") or props.get("azureml.nodeid") or child.get("runId") or "step"
        status = _text(child.get("status"))
        message = None
        if status == "Failed":
            message = _error_message(child.get("error")) or self._step_error(str(child.get("runId")))
        return StepStatus(
            name=name,
            aml_status=status,
            status=normalise(status),
            started_at=_iso(child.get("startTimeUtc")),
            ended_at=_iso(child.get("endTimeUtc")),
            error=message,
            run_id=child.get("runId"),
        )

    def _metrics(self, steps: list[StepStatus]) -> tuple[dict[str, dict[str, float | None]], str | None]:
        """Each completed step's metrics from MLflow; the last error, if any could not be read."""
        metrics: dict[str, dict[str, float | None]] = {}
        metrics_error = None
        for step in steps:
            if step.aml_status != "Completed" or not step.run_id:
                continue
            try:
                found = self.run_metrics(step.run_id)
            except MetricsUnavailable as e:
                # reported, so that the health gates fail rather than pass on nothing
                log.warning("metrics of step %s: %s", step.name, e)
                metrics_error = str(e)
                continue
            if found:
                metrics[step.name] = dict(found)
        return metrics, metrics_error

    def _step_error(self, run_id: str) -> str | None:
        """A failed step's own message, from Run History (the Job objects carry none)."""
        try:
            details = self.client.jobs._runs_operations.get_run_details(run_id)
            message = details.error.error.message if details.error and details.error.error else None
            return _for_client(message, run_id) if message else None
        except Exception as e:  # a missing message must not hide the failure itself
            log.warning("error of step %s: not readable (%s)", run_id, e)
            return None

    def run_metrics(self, run_id: str) -> dict[str, float]:
        """A run's metrics from AML's MLflow tracking (the MLflow run id is the job or step
        run name), with the client's identity and transport."""
        from azure.core.rest import HttpRequest

        try:
            client, base = self._mlflow_client()
            response = client.send_request(HttpRequest("GET", f"{base}/runs/get", params={"run_id": run_id}))
        except (ServiceRequestError, ServiceResponseError, HttpResponseError) as e:
            raise MetricsUnavailable(f"MLflow did not answer for {run_id}: {_first_line(e)}") from e
        if response.status_code != 200:
            raise MetricsUnavailable(f"MLflow answered {response.status_code} for {run_id}")
        data = response.json().get("run", {}).get("data", {})
        return {m["key"]: float(m["value"]) for m in data.get("metrics", [])}

    def _mlflow_client(self) -> tuple[Any, str]:
        if self._mlflow is None:
            from azure.core import PipelineClient
            from azure.core.pipeline.policies import BearerTokenCredentialPolicy, RetryPolicy

            ws = self._call("get workspace", self.client.workspaces.get, self.workspace)
            base = ws.mlflow_tracking_uri.replace("azureml://", "https://", 1) + "/api/2.0/mlflow"
            policies = [
                RetryPolicy(**self.retry.kwargs()),
                BearerTokenCredentialPolicy(self._credential, "https://ml.azure.com/.default"),
            ]
            kwargs = {"transport": self._transport} if self._transport is not None else {}
            self._mlflow = (PipelineClient(base_url=base, policies=policies, **kwargs), base)
        return self._mlflow


def _text(status: Any) -> str:
    """AML's status as a string (a fresh job's status is a JobStatus enum)."""
    if status is None:
        return "Unknown"
    return str(getattr(status, "value", status))


def _name_version(ref: str | None) -> tuple[str, str]:
    _, name, version = (ref or "").split(":")
    return name, version


def _first_line(e: Exception) -> str:
    message = getattr(e, "message", None) or str(e)
    return message.strip().splitlines()[0] if message.strip() else type(e).__name__


def _retry_after(e: HttpResponseError) -> int:
    headers = getattr(e.response, "headers", None) or {}
    value = headers.get("Retry-After")
    return int(value) if value and value.isdigit() else 30


def _time(job: Any, key: str) -> str | None:
    services = getattr(job, "_services", None) or {}
    props = getattr(job, "properties", None) or {}
    return props.get(key) or (services.get(key) if isinstance(services, dict) else None)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None and hasattr(value, "isoformat") else value


def _ended(aml_status: str, steps: list[StepStatus]) -> str | None:
    if aml_status not in TERMINAL:
        return None
    return max((s.ended_at for s in steps if s.ended_at), default=None)


def _error_message(error: Any) -> str | None:
    """Run History's ``{"error": {"message": ...}}`` as one line, if it has one."""
    inner = error.get("error") if isinstance(error, dict) else None
    message = inner.get("message") if isinstance(inner, dict) else None
    return _for_client(message, "a step") if isinstance(message, str) and message.strip() else None


def _for_client(message: str, where: str) -> str:
    """AML's step error as an answer may carry it: up to a stack trace (the script's, with the
    compute's file paths), one line; the whole text goes to the log."""
    if "Traceback" in message:
        log.warning("error of %s, as AML reported it: %s", where, message)
    head = message.split("Traceback", 1)[0].strip() or message.strip().splitlines()[-1]
    return re.sub(r"\s+", " ", head)[:500]
