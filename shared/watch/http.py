"""The durable watch's HTTP API as functions over a durable client (duck-typed: the SDK's
``DurableOrchestrationClient``); ``poll_aml_durable`` maps them onto HTTP responses.

One ADF Web activity = start and wait: the starter answers 202 + ``Location`` (+
``Retry-After``) pointing at the status route, which answers 202 while the runs go on, 200
with the result when every run completed and passed the gates, and a non-2xx JSON error
otherwise, so that the activity fails when the batch does. (The SDK's
``create_check_status_response`` cannot do this: it answers 200 for a terminated instance
and has no way to turn a failed batch into a 5xx.)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import re
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared import clock
from shared.aml.catalog import Pipeline
from shared.aml.request import validate_request
from shared.http import Answer, Problem, error, invalid_request, json_body, problem
from shared.watch.policy import RunState, WatchOptions, start

log = logging.getLogger(__name__)

ORCHESTRATOR = "watch_pipeline_runs"
CANCEL_EVENT = "cancel"

#: how the end of a watch maps onto the status route's answer
OUTCOME_STATUS = {"succeeded": 200, "gate_failed": 422, "failed": 502, "timed_out": 504, "canceled": 409}
_INSTANCE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


class RunSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    parameters: dict[str, Any] = Field(default_factory=dict)


class StartRequest(BaseModel):
    """Follow one run (``run_id``), or submit and follow (``pipeline`` + ``parameters``), or a
    batch (``pipeline`` + ``runs``)."""

    model_config = ConfigDict(extra="forbid")

    run_id: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$")
    pipeline: str | None = None
    parameters: dict[str, Any] | None = None
    runs: list[RunSpec] | None = Field(None, min_length=1, max_length=500)
    idempotency_key: str | None = Field(None, pattern=r"^[A-Za-z0-9_.:-]{1,200}$")
    timeout_s: float | None = None
    polling: dict[str, float] | None = None
    cancel_on_timeout: bool | None = None
    gates: dict[str, float | None] | None = None
    stuck_limit_s: float | None = None
    polls_per_generation: int | None = None

    @model_validator(mode="after")
    def _one_mode(self) -> StartRequest:
        if (self.run_id is None) == (self.pipeline is None):
            raise ValueError("give run_id (follow a run) or pipeline (submit and follow), not both")
        if self.run_id is not None and (self.parameters is not None or self.runs is not None):
            raise ValueError("run_id takes no parameters or runs")
        if self.parameters is not None and self.runs is not None:
            raise ValueError("give parameters (one run) or runs (a batch), not both")
        return self

    def options(self) -> WatchOptions:
        given = {k: getattr(self, k) for k in WatchOptions.model_fields if getattr(self, k) is not None}
        return WatchOptions(**given)


def _problems(e: ValidationError) -> list[Problem]:
    return [
        problem(".".join(str(p) for p in err["loc"]) or "(body)", err["msg"].removeprefix("Value error, "))
        for err in e.errors()
    ]


def instance_id_for(key: str | None) -> str:
    if key is None:
        return uuid.uuid4().hex
    return "watch-" + hashlib.sha256(key.encode()).hexdigest()[:32]


def plan_start(
    body: bytes, catalog: dict[str, Pipeline], now: dt.datetime
) -> tuple[dict[str, Any] | None, list[Problem] | dict[str, str] | None]:
    """The orchestration's input (a watch state) and None; or None and every problem of the
    request; or None and ``{"unknown_pipeline": message}`` (a 404, whatever else is wrong)."""
    data, problems = json_body(body)
    if problems:
        return None, problems
    try:
        req = StartRequest.model_validate(data)
        options = req.options()
    except ValidationError as e:
        return None, _problems(e)
    runs: list[RunState] = []
    if req.run_id is not None:
        runs.append(RunState(index=0, run_id=req.run_id))
    else:
        entry = catalog.get(req.pipeline or "")
        if entry is None:
            return None, {"unknown_pipeline": f"no pipeline {req.pipeline!r}; known: {', '.join(sorted(catalog))}"}
        specs = req.runs if req.runs is not None else [RunSpec(parameters=req.parameters or {})]
        for i, spec in enumerate(specs):
            checked, found = validate_request(entry, {"parameters": spec.parameters})
            prefix = f"runs.{i}." if req.runs is not None else ""
            problems += [problem(prefix + p["field"], p["message"]) for p in found]
            if checked is not None:
                runs.append(RunState(index=i, pipeline=entry.name, parameters=checked.parameters))
    if problems:
        return None, problems
    state = start(runs, options, now)
    return {"state": state.model_dump(mode="json"), "idempotency_key": req.idempotency_key}, None


def _unknown(instance_id: str) -> Answer:
    return error(404, "unknown_instance", f"no watch {instance_id!r}")


def status_url(base_url: str, instance_id: str) -> str:
    return f"{base_url.rstrip('/')}/api/orchestrations/pipeline-runs/{instance_id}"


async def start_watch(
    client: Any, body: bytes, catalog: dict[str, Pipeline], base_url: str, now: dt.datetime
) -> Answer:
    """``POST /api/orchestrations/pipeline-runs``: 202 + Location; the same idempotency key
    re-attaches to the instance it started."""
    plan, problems = plan_start(body, catalog, now)
    if isinstance(problems, dict):
        return error(404, "unknown_pipeline", problems["unknown_pipeline"])
    if plan is None:
        return invalid_request(problems or [])
    instance_id = instance_id_for(plan["idempotency_key"])
    existing = await client.get_status(instance_id) if plan["idempotency_key"] else None
    attached = existing is not None and getattr(existing, "runtime_status", None) is not None
    if not attached:
        await client.start_new(ORCHESTRATOR, instance_id, plan["state"])
    url = status_url(base_url, instance_id)
    management = client.create_http_management_payload(instance_id)
    answer = {
        "instance_id": instance_id,
        "attached": attached,
        "runs": len(plan["state"]["runs"]),
        "status_url": url,
        "management": management,
    }
    return 202, answer, {"Location": url, "Retry-After": str(int(plan["state"]["options"]["polling"]["first_s"]))}


def _retry_after(custom: dict[str, Any] | None, now: dt.datetime) -> str:
    nxt = (custom or {}).get("next_poll_at")
    if not nxt:
        return "10"
    wait = (clock.parse_iso(nxt) - now).total_seconds()
    return str(int(min(max(wait, 5), 120)))


def answer_status(status: Any, instance_id: str, base_url: str, now: dt.datetime) -> Answer:
    """``GET /api/orchestrations/pipeline-runs/{id}``: the instance's state as HTTP."""
    runtime = getattr(status, "runtime_status", None)
    runtime = getattr(runtime, "value", runtime)
    if runtime is None:
        return _unknown(instance_id)
    custom = getattr(status, "custom_status", None)
    if isinstance(custom, str):
        custom = json.loads(custom)
    if runtime in ("Pending", "Running", "ContinuedAsNew"):
        url = status_url(base_url, instance_id)
        body = {"instance_id": instance_id, "runtime_status": runtime, "progress": custom}
        return 202, body, {"Location": url, "Retry-After": _retry_after(custom, now)}
    output = getattr(status, "output", None)
    if isinstance(output, str):
        with contextlib.suppress(ValueError):
            output = json.loads(output)
    if runtime == "Completed" and isinstance(output, dict):
        outcome = output.get("outcome")
        if outcome == "succeeded":
            return 200, {"instance_id": instance_id, **output}, {}
        failed = output.get("failed", [])
        if outcome == "failed" and failed and all(r.get("outcome") == "gate_failed" for r in failed):
            outcome = "gate_failed"
        code = OUTCOME_STATUS.get(outcome or "failed", 502)
        return code, {"error": outcome, "message": _summary(output), "instance_id": instance_id, **output}, {}
    if runtime in ("Terminated", "Canceled"):
        return error(409, "terminated", f"the watch was {runtime.lower()}", instance_id=instance_id)
    # the orchestrator's own failure text may carry a stack trace: logged, not answered
    log.error("watch %s failed: %s", instance_id, output)
    message = "the watch itself failed; the app's logs have the details"
    return error(500, "watch_failed", message, instance_id=instance_id)


def _summary(output: dict[str, Any]) -> str:
    failed = output.get("failed", [])
    parts = []
    for r in failed[:5]:
        what = r.get("outcome")
        if what == "gate_failed":
            g = r["gate_failures"][0]
            what = f"gate {g['gate']} failed: " + (
                g.get("message") or f"{g['metric']} = {g['value']} (limit {g['limit']}, over by {g['by']})"
            )
        elif r.get("failed_step"):
            what = f"{r.get('aml_status')} at step {r['failed_step']}"
        parts.append(f"run {r.get('run_id')}: {what}")
    more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
    return f"{len(failed)} of {output.get('runs_total')} run(s) did not pass: " + "; ".join(parts) + more


async def get_watch(client: Any, instance_id: str, base_url: str, now: dt.datetime) -> Answer:
    if not _INSTANCE.match(instance_id):
        return _unknown(instance_id)
    return answer_status(await client.get_status(instance_id), instance_id, base_url, now)


async def cancel_watch(client: Any, instance_id: str, base_url: str) -> Answer:
    """DELETE (or POST .../cancel): the orchestrator cancels its AML runs, then ends."""
    if not _INSTANCE.match(instance_id):
        return _unknown(instance_id)
    status = await client.get_status(instance_id)
    runtime = getattr(getattr(status, "runtime_status", None), "value", getattr(status, "runtime_status", None))
    if runtime is None:
        return _unknown(instance_id)
    if runtime in ("Pending", "Running", "ContinuedAsNew"):
        await client.raise_event(instance_id, CANCEL_EVENT, {"requested": True})
    url = status_url(base_url, instance_id)
    return 202, {"instance_id": instance_id, "runtime_status": runtime, "cancel_requested": True}, {"Location": url}
