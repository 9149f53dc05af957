"""The pipeline-run API as plain functions: HTTP body in, (status code, JSON object, headers)
out. ``trigger_aml.pipeline_runs`` maps them onto Functions HTTP responses; the command line calls the
same functions. Every answer is a JSON object (ADF's Azure Function activity rejects
arrays) and comes back in seconds."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from shared import http
from shared.aml.backend import Backend, BackendError, RunNotFound, TransientBackendError
from shared.aml.catalog import Pipeline
from shared.aml.request import TAG_REQUEST, validate_request
from shared.aml.status import RunStatus
from shared.http import Answer

log = logging.getLogger(__name__)

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$")


def backend_error(e: Exception) -> Answer | None:
    """A backend's refusal as its own answer; ``None`` for anything else (answered 500 by
    :func:`shared.http.guarded`)."""
    return refused(e) if isinstance(e, BackendError) else None


def refused(e: BackendError) -> Answer:
    """502 AML refused, 503 + Retry-After AML unavailable."""
    log.warning("%s", e.message)
    if isinstance(e, TransientBackendError):
        return http.error(e.status, e.code, e.message, retry_after_s=e.retry_after)
    return http.error(e.status, e.code, e.message)


def answer(call: Callable[[], Answer]) -> Answer:
    """One API call, always as a JSON answer: a backend that cannot be built or refuses is its
    own error; anything unexpected is logged and answered 500, never with a stack trace."""
    return http.guarded(call, backend_error)


def status_url(base_url: str, run_id: str) -> str:
    """The URL of a run's status route."""
    return f"{base_url.rstrip('/')}/api/pipelines/runs/{run_id}"


def list_pipelines(catalog: dict[str, Pipeline]) -> Answer:
    """The answer listing the catalog's pipelines with their parameters and inputs."""
    return (
        200,
        {
            "pipelines": {
                name: {
                    "description": p.description,
                    "definition": p.definition.kind,
                    "experiment": p.experiment,
                    "parameters": {k: v.model_dump(exclude_defaults=True) for k, v in p.parameters.items()},
                    "inputs": {k: v.model_dump(exclude_defaults=True) for k, v in p.inputs.items()},
                    "local": p.local is not None,
                }
                for name, p in catalog.items()
            }
        },
        {},
    )


def submit(backend: Backend, catalog: dict[str, Pipeline], pipeline: str, body: bytes, base_url: str) -> Answer:
    """``POST /api/pipelines/{pipeline}/runs``: 202 for a new run, 200 for the run the same
    idempotency key already started; 400 listing every problem; 404 for an unknown pipeline."""
    entry = catalog.get(pipeline)
    if entry is None:
        return http.error(404, "unknown_pipeline", f"no pipeline {pipeline!r}; known: {', '.join(sorted(catalog))}")
    data, problems = http.json_body(body)
    if problems:
        return http.invalid_request(problems)
    request, problems = validate_request(entry, data)
    if request is None:
        return http.invalid_request(problems)
    run_id = request.job_name()
    request = request.stamped()
    try:
        status, created = backend.submit(entry, request, run_id)
    except BackendError as e:
        return refused(e)
    if not created and status.pipeline not in (None, pipeline):
        return http.error(409, "idempotency_conflict", f"run {run_id} belongs to pipeline {status.pipeline}")
    theirs = status.tags.get(TAG_REQUEST)
    if not created and theirs is not None and theirs != request.tags[TAG_REQUEST]:
        message = (
            f"idempotency key {request.idempotency_key!r} already started run {run_id} with another request; "
            "use a new key for a new request"
        )
        return http.error(409, "idempotency_conflict", message, run_id=run_id)
    url = status_url(base_url, run_id)
    log.info("submit %s: run %s %s (%s)", pipeline, run_id, "started" if created else "re-attached", status.aml_status)
    answer = {
        "run_id": run_id,
        "pipeline": pipeline,
        "backend": backend.name,
        "status": status.status,
        "aml_status": status.aml_status,
        "created": created,
        "status_url": url,
        "portal_url": status.portal_url,
    }
    return (202 if created else 200), answer, {"Location": url}


def get(backend: Backend, run_id: str) -> Answer:
    """``GET /api/pipelines/runs/{run_id}``: the run's status, steps, error and metrics."""
    if not _RUN_ID.match(run_id):
        return http.error(404, "unknown_run", f"no run {run_id!r}")
    try:
        status = backend.get(run_id)
    except RunNotFound:
        return http.error(404, "unknown_run", f"no run {run_id!r}")
    except BackendError as e:
        return refused(e)
    return 200, status.model_dump(mode="json"), {}


def cancel(backend: Backend, run_id: str) -> Answer:
    """``POST /api/pipelines/runs/{run_id}/cancel``: 202 with the status; asking twice is fine."""
    if not _RUN_ID.match(run_id):
        return http.error(404, "unknown_run", f"no run {run_id!r}")
    try:
        status: RunStatus = backend.cancel(run_id)
    except RunNotFound:
        return http.error(404, "unknown_run", f"no run {run_id!r}")
    except BackendError as e:
        return refused(e)
    log.info("cancel %s: %s", run_id, status.aml_status)
    return 202, status.model_dump(mode="json"), {}
