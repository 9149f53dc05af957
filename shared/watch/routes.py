"""The durable watch's routes (start, status, cancel) as functions over a durable client
(duck-typed: the SDK's ``DurableOrchestrationClient``);
``poll_aml_durable.pipeline_runs_watch`` maps them onto HTTP responses.

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
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared import clock
from shared.aml.catalog import Pipeline
from shared.aml.request import validate_request
from shared.http import Answer, Problem, error, invalid_request, json_body, problem
from shared.watch.gates import Gates
from shared.watch.policy import RunState, WatchOptions, WatchState, start

log = logging.getLogger(__name__)

ORCHESTRATOR = "watch_pipeline_runs"
CANCEL_EVENT = "cancel"

#: how the end of a watch maps onto the status route's answer
OUTCOME_STATUS = {"succeeded": 200, "gate_failed": 422, "failed": 502, "timed_out": 504, "canceled": 409}
_INSTANCE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


class RunSpec(BaseModel):
    """One run a watch request asks for: its parameters."""

    model_config = ConfigDict(extra="forbid")
    parameters: dict[str, Any] = Field(default_factory=dict)


class StricterGates(BaseModel):
    """A caller's gates: only stricter than the pipeline's own (a lower MAPE limit, a younger
    model). Switching a gate off (null) or relaxing it is the catalog's alone."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    max_mape: float | None = Field(None, gt=0)
    max_age_days: float | None = Field(None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _no_null(cls, data: Any) -> Any:
        if isinstance(data, dict):
            off = sorted(k for k, v in data.items() if v is None)
            if off:
                raise ValueError(f"{', '.join(off)}: only the pipeline catalog may switch a gate off")
        return data

    def applied_to(self, gates: Gates) -> tuple[Gates, list[str]]:
        """``gates`` made stricter by these, or why they would loosen them."""
        problems, update = [], {}
        for name in ("max_mape", "max_age_days"):
            mine, theirs = getattr(self, name), getattr(gates, name)
            if mine is None:
                continue
            if theirs is not None and mine > theirs:
                problems.append(f"{name} {mine} is looser than the pipeline's {theirs}: only the catalog may relax it")
            update[name] = mine
        return gates.model_copy(update=update), problems


class StartRequest(BaseModel):
    """Follow one run (``run_id``), or submit and follow (``pipeline`` + ``parameters``), or a
    batch (``pipeline`` + ``runs``)."""

    # strict: ``"false"`` is no boolean, ``"60"`` no number; and every number finite
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    run_id: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$")
    pipeline: str | None = None
    parameters: dict[str, Any] | None = None
    runs: list[RunSpec] | None = Field(None, min_length=1, max_length=500)
    idempotency_key: str | None = Field(None, pattern=r"^[A-Za-z0-9_.:-]{1,200}$")
    timeout_s: float | None = None
    polling: dict[str, float] | None = None
    cancel_on_timeout: bool | None = None
    gates: StricterGates | None = None
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

    def options(self, catalog: dict[str, Pipeline]) -> tuple[WatchOptions, list[Problem]]:
        """The watch's options, its gates the pipeline's own (all of the catalog's when it
        follows a run whose pipeline it learns from the run) made stricter by the caller's."""
        mine = self.gates or StricterGates()
        own = catalog[self.pipeline].gates if self.pipeline in catalog else Gates()
        gates, found = mine.applied_to(own)
        per_pipeline = {}
        if self.run_id is not None:
            per_pipeline = {name: mine.applied_to(p.gates)[0] for name, p in catalog.items()}
        given = {k: getattr(self, k) for k in _OPTION_FIELDS if getattr(self, k) is not None}
        options = WatchOptions(**given, gates=gates, pipeline_gates=per_pipeline)
        return options, [problem("gates", message) for message in found]

    def fingerprint(self) -> str:
        """What the request asks for, whatever its key, field order or spacing: the same key
        with another request is a conflict, not a re-attach."""
        content = self.model_dump(mode="json", exclude={"idempotency_key"}, exclude_none=True)
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


_OPTION_FIELDS = ("timeout_s", "polling", "cancel_on_timeout", "stuck_limit_s", "polls_per_generation")


def _problems(e: ValidationError) -> list[Problem]:
    return [
        problem(".".join(str(p) for p in err["loc"]) or "(body)", err["msg"].removeprefix("Value error, "))
        for err in e.errors()
    ]


def instance_id_for(key: str | None) -> str:
    """The watch's instance id: from the idempotency key, or a new random one."""
    if key is None:
        return uuid.uuid4().hex
    return "watch-" + hashlib.sha256(key.encode()).hexdigest()[:32]


def plan_start(
    body: bytes, catalog: dict[str, Pipeline], now: dt.datetime, default_polling: dict[str, float] | None = None
) -> tuple[dict[str, Any] | None, list[Problem] | dict[str, str] | None]:
    """The orchestration's input (a watch state) and None; or None and every problem of the
    request; or None and ``{"unknown_pipeline": message}`` (a 404, whatever else is wrong).
    ``default_polling`` applies when the request names none (the safety poll with job events)."""
    data, problems = json_body(body)
    if problems:
        return None, problems
    named = data.get("pipeline") if isinstance(data, dict) else None
    if isinstance(named, str) and named not in catalog:
        return None, {"unknown_pipeline": f"no pipeline {named!r}; known: {', '.join(sorted(catalog))}"}
    try:
        req = StartRequest.model_validate(data)
        fingerprint = req.fingerprint()  # what the caller asked, before the app's defaults
        if req.polling is None and default_polling is not None:
            req = req.model_copy(update={"polling": default_polling})
        options, problems = req.options(catalog)
    except ValidationError as e:
        # the options are wrong: the parameters are still checked, so that every problem is listed
        return None, _problems(e) + _parameter_problems(data, catalog)
    runs, found = _runs(req, catalog)
    problems += found
    if problems:
        return None, problems
    state = start(runs, options, now)
    state.request = fingerprint
    return {"state": state.to_input(), "idempotency_key": req.idempotency_key}, None


def _runs(req: StartRequest, catalog: dict[str, Pipeline]) -> tuple[list[RunState], list[Problem]]:
    if req.run_id is not None:
        return [RunState(index=0, run_id=req.run_id)], []
    entry = catalog[req.pipeline or ""]
    runs: list[RunState] = []
    problems: list[Problem] = []
    specs = req.runs if req.runs is not None else [RunSpec(parameters=req.parameters or {})]
    for i, spec in enumerate(specs):
        checked, found = validate_request(entry, {"parameters": spec.parameters})
        prefix = f"runs.{i}." if req.runs is not None else ""
        problems += [problem(prefix + p["field"], p["message"]) for p in found]
        if checked is not None:
            runs.append(RunState(index=i, pipeline=entry.name, parameters=checked.parameters))
    return runs, problems


def _parameter_problems(data: Any, catalog: dict[str, Pipeline]) -> list[Problem]:
    """The parameters' problems of a body whose other fields are wrong."""
    if not isinstance(data, dict) or data.get("pipeline") not in catalog:
        return []
    entry = catalog[data["pipeline"]]
    specs = data.get("runs") if isinstance(data.get("runs"), list) else None
    found: list[Problem] = []
    for i, spec in enumerate(specs if specs is not None else [{"parameters": data.get("parameters")}]):
        params = spec.get("parameters") if isinstance(spec, dict) else None
        if isinstance(params, dict):
            prefix = f"runs.{i}." if specs is not None else ""
            found += [
                problem(prefix + p["field"], p["message"]) for p in validate_request(entry, {"parameters": params})[1]
            ]
    return found


def _unknown(instance_id: str) -> Answer:
    return error(404, "unknown_instance", f"no watch {instance_id!r}")


def status_url(base_url: str, instance_id: str, code: str | None = None) -> str:
    """The status route; with the caller's own function key (``?code=``) when it came that way,
    so that a client that follows ``Location`` without re-sending its headers is let in."""
    url = f"{base_url.rstrip('/')}/api/orchestrations/pipeline-runs/{instance_id}"
    return f"{url}?{urlencode({'code': code})}" if code else url


def cancel_url(base_url: str, instance_id: str, code: str | None = None) -> str:
    """The URL of a watch's cancel route."""
    url = f"{base_url.rstrip('/')}/api/orchestrations/pipeline-runs/{instance_id}/cancel"
    return f"{url}?{urlencode({'code': code})}" if code else url


async def start_watch(
    client: Any,
    body: bytes,
    catalog: dict[str, Pipeline],
    base_url: str,
    now: dt.datetime,
    code: str | None = None,
    default_polling: dict[str, float] | None = None,
) -> Answer:
    """``POST /api/orchestrations/pipeline-runs``: 202 + Location. The same idempotency key
    with the same request re-attaches to the instance it started; with another request it is
    a 409. Only this app's own routes are answered: the durable extension's management URLs
    carry its system key, which controls every instance of the task hub."""
    plan, problems = plan_start(body, catalog, now, default_polling)
    if isinstance(problems, dict):
        return error(404, "unknown_pipeline", problems["unknown_pipeline"])
    if plan is None:
        return invalid_request(problems or [])
    key = plan["idempotency_key"]
    instance_id = instance_id_for(key)
    attached = False
    if key:
        attached, conflict = await _existing(client, instance_id, plan)
        if conflict:
            return conflict
    if not attached:
        try:
            await client.start_new(ORCHESTRATOR, instance_id, plan["state"])
        except Exception:
            # with overridableExistingInstanceStates = NonRunningStates (host.json) the
            # extension refuses a second start of a running instance: a racing start won
            if not key:
                raise
            attached, conflict = await _existing(client, instance_id, plan)
            if conflict:
                return conflict
            if not attached:
                raise
    url = status_url(base_url, instance_id, code)
    answer = {
        "instance_id": instance_id,
        "attached": attached,
        "runs": len(plan["state"]["runs"]),
        "status_url": url,
        "cancel_url": cancel_url(base_url, instance_id, code),
    }
    first_poll = WatchState.model_validate(plan["state"]).options.polling.first_s
    return 202, answer, {"Location": url, "Retry-After": str(int(first_poll))}


async def _existing(client: Any, instance_id: str, plan: dict[str, Any]) -> tuple[bool, Answer | None]:
    """Whether the instance exists, and a 409 when it was started with another request."""
    status = await client.get_status(instance_id, show_input=True)
    if getattr(status, "runtime_status", None) is None:
        return False, None
    given = getattr(status, "input_", None)
    if isinstance(given, str):
        with contextlib.suppress(ValueError):
            given = json.loads(given)
    theirs = ((given or {}).get("state") or given or {}).get("request") if isinstance(given, dict) else None
    if theirs is not None and theirs != plan["state"]["request"]:
        message = (
            f"idempotency key {plan['idempotency_key']!r} already started watch {instance_id} with another "
            "request; use a new key for a new request"
        )
        return True, error(409, "idempotency_conflict", message, instance_id=instance_id)
    return True, None


def _retry_after(custom: dict[str, Any] | None, now: dt.datetime) -> str:
    nxt = (custom or {}).get("next_poll_at")
    if not nxt:
        return "10"
    wait = (clock.parse_iso(nxt) - now).total_seconds()
    return str(int(min(max(wait, 5), 120)))


def answer_status(status: Any, instance_id: str, base_url: str, now: dt.datetime, code: str | None = None) -> Answer:
    """``GET /api/orchestrations/pipeline-runs/{id}``: the instance's state as HTTP."""
    runtime = getattr(status, "runtime_status", None)
    runtime = getattr(runtime, "value", runtime)
    if runtime is None:
        return _unknown(instance_id)
    custom = getattr(status, "custom_status", None)
    if isinstance(custom, str):
        custom = json.loads(custom)
    if runtime in ("Pending", "Running", "ContinuedAsNew", "Suspended"):
        # suspended by an operator: not a failure; it goes on when resumed
        url = status_url(base_url, instance_id, code)
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
        status_code = OUTCOME_STATUS.get(outcome or "failed", 502)
        return status_code, {"error": outcome, "message": _summary(output), "instance_id": instance_id, **output}, {}
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


async def get_watch(client: Any, instance_id: str, base_url: str, now: dt.datetime, code: str | None = None) -> Answer:
    """The answer of a watch's status route; not found if the id is not one."""
    if not _INSTANCE.match(instance_id):
        return _unknown(instance_id)
    return answer_status(await client.get_status(instance_id), instance_id, base_url, now, code)


async def cancel_watch(client: Any, instance_id: str, base_url: str, code: str | None = None) -> Answer:
    """DELETE (or POST .../cancel): the orchestrator cancels its AML runs, then ends."""
    if not _INSTANCE.match(instance_id):
        return _unknown(instance_id)
    status = await client.get_status(instance_id)
    runtime = getattr(getattr(status, "runtime_status", None), "value", getattr(status, "runtime_status", None))
    if runtime is None:
        return _unknown(instance_id)
    if runtime in ("Pending", "Running", "ContinuedAsNew", "Suspended"):
        await client.raise_event(instance_id, CANCEL_EVENT, {"requested": True})
    url = status_url(base_url, instance_id, code)
    return 202, {"instance_id": instance_id, "runtime_status": runtime, "cancel_requested": True}, {"Location": url}
