"""The pipeline-run API as plain functions: HTTP body in, (status code, JSON object, headers)
out. ``trigger_aml`` maps them onto Functions HTTP responses; the command line calls the
same functions. Every answer is a JSON object (ADF's Azure Function activity rejects
arrays) and comes back in seconds."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from shared.aml.catalog import Pipeline, validate_request
from shared.aml.status import Backend, BackendError, RunNotFound, RunStatus, TransientBackendError

log = logging.getLogger(__name__)

Answer = tuple[int, dict[str, Any], dict[str, str]]
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$")


def _error(status: int, code: str, message: str, **extra: Any) -> Answer:
    headers = {"Retry-After": str(extra["retry_after_s"])} if "retry_after_s" in extra else {}
    return status, {"error": code, "message": message, **extra}, headers


def _backend_error(e: BackendError) -> Answer:
    if isinstance(e, TransientBackendError):
        return _error(e.status, e.code, e.message, retry_after_s=e.retry_after)
    return _error(e.status, e.code, e.message)


INTERNAL = (500, {"error": "internal_error", "message": "an unexpected error; the app's logs have the details"}, {})


def answer(call: Callable[[], Answer]) -> Answer:
    """One API call, always as a JSON answer: a backend that cannot be built or refuses is its
    own error; anything unexpected is logged and answered 500, never with a stack trace."""
    try:
        return call()
    except Exception as e:
        return _failed(e)


async def answer_async(call: Awaitable[Answer]) -> Answer:
    """:func:`answer` for the durable client's coroutines."""
    try:
        return await call
    except Exception as e:
        return _failed(e)


def _failed(e: Exception) -> Answer:
    if isinstance(e, BackendError):
        log.warning("%s", e.message)
        return _backend_error(e)
    log.error("unexpected error", exc_info=e)
    return INTERNAL


def origin(url: str) -> str:
    """``scheme://host[:port]`` of a request URL: where the status routes are served."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def status_url(base_url: str, run_id: str) -> str:
    return f"{base_url.rstrip('/')}/api/pipelines/runs/{run_id}"


def list_pipelines(catalog: dict[str, Pipeline]) -> Answer:
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
        return _error(404, "unknown_pipeline", f"no pipeline {pipeline!r}; known: {', '.join(sorted(catalog))}")
    try:
        data = json.loads(body) if body and body.strip() else {}
    except ValueError as e:
        return 400, {"error": "invalid_request", "problems": [{"field": "(body)", "message": f"not JSON: {e}"}]}, {}
    request, problems = validate_request(entry, data)
    if request is None:
        return 400, {"error": "invalid_request", "problems": problems}, {}
    run_id = request.job_name()
    try:
        status, created = backend.submit(entry, request, run_id)
    except BackendError as e:
        log.warning("submit %s: %s", pipeline, e.message)
        return _backend_error(e)
    if not created and status.pipeline not in (None, pipeline):
        return _error(409, "idempotency_conflict", f"run {run_id} belongs to pipeline {status.pipeline}")
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
        return _error(404, "unknown_run", f"no run {run_id!r}")
    try:
        status = backend.get(run_id)
    except RunNotFound:
        return _error(404, "unknown_run", f"no run {run_id!r}")
    except BackendError as e:
        return _backend_error(e)
    return 200, status.model_dump(mode="json"), {}


def cancel(backend: Backend, run_id: str) -> Answer:
    """``POST /api/pipelines/runs/{run_id}/cancel``: 202 with the status; asking twice is fine."""
    if not _RUN_ID.match(run_id):
        return _error(404, "unknown_run", f"no run {run_id!r}")
    try:
        status: RunStatus = backend.cancel(run_id)
    except RunNotFound:
        return _error(404, "unknown_run", f"no run {run_id!r}")
    except BackendError as e:
        return _backend_error(e)
    log.info("cancel %s: %s", run_id, status.aml_status)
    return 202, status.model_dump(mode="json"), {}


def follow(
    backend: Backend,
    run_ids: list[str],
    options: Any,
    *,
    on_status: Callable[[dict[str, Any]], None] | None = None,
    on_change: Callable[[Any], None] | None = None,
) -> Any:
    """Follow runs in this process with the durable watch's policy (``shared.watch.policy``): the
    command line and the main job wait exactly as the orchestrator does."""
    import datetime as dt

    from shared.watch import policy as watch

    def get_status(run_id: str) -> dict[str, Any]:
        code, body, _ = get(backend, run_id)
        if code != 200:
            raise RuntimeError(body.get("message", body))
        if on_status:
            on_status(body)
        return body

    runs_ = [watch.RunState(index=i, run_id=r) for i, r in enumerate(run_ids)]
    state = watch.start(runs_, options, dt.datetime.now(dt.UTC))
    return watch.watch_here(get_status, lambda run_id: cancel(backend, run_id), state, on_change=on_change)
