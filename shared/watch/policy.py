"""The watch policy: follow AML runs to their end, decide, and say what happened.

Pure functions over a JSON-safe :class:`WatchState`: no clock, no I/O. The durable
orchestrator (``poll_aml_durable``) and the command line (:func:`watch_here`) drive the same
policy, so the local main job waits exactly as Azure does:

1. poll every unfinished run (``observe``), backing off exponentially between polls;
2. a run ends on Completed / Failed / Canceled; NotResponding / Paused / Unknown are waited
   out up to ``stuck_limit_s``, then count as failed;
3. completed runs pass the health gates (MAPE <= ``max_mape``; model no older than
   ``max_age_days``) or fail them;
4. past ``timeout_s`` the unfinished runs are canceled (``cancel_on_timeout``) and the watch
   ends ``timed_out``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, Field

TERMINAL = ("Completed", "Failed", "Canceled")
STUCK = ("NotResponding", "Paused", "Unknown")
#: custom status must stay under 16 KB (the durable extension's limit)
CUSTOM_STATUS_BUDGET = 12_000


class Polling(BaseModel):
    first_s: float = Field(30.0, gt=0, le=3600)
    factor: float = Field(1.5, ge=1.0, le=10.0)
    max_s: float = Field(300.0, gt=0, le=6 * 3600)


class Gates(BaseModel):
    max_mape: float | None = Field(0.45, gt=0)
    max_age_days: float | None = Field(60.0, gt=0)


class WatchOptions(BaseModel):
    timeout_s: float = Field(12 * 3600.0, gt=0, le=7 * 24 * 3600)
    polling: Polling = Field(default_factory=Polling)
    cancel_on_timeout: bool = True
    gates: Gates = Field(default_factory=Gates)
    stuck_limit_s: float = Field(1800.0, gt=0)
    #: polls per orchestration generation before continue_as_new keeps the history bounded
    polls_per_generation: int = Field(20, ge=1, le=1000)


class RunState(BaseModel):
    index: int
    run_id: str | None = None
    pipeline: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    aml_status: str = "NotStarted"
    status: str = "queued"
    done: bool = False
    outcome: Literal["completed", "failed", "canceled", "stuck", "timed_out", "gate_failed"] | None = None
    stuck_since: str | None = None
    error: dict[str, Any] | None = None
    failed_step: str | None = None
    portal_url: str | None = None
    metrics: dict[str, dict[str, float]] = Field(default_factory=dict)
    gate_failures: list[dict[str, Any]] = Field(default_factory=list)
    polls: int = 0
    unavailable_since: str | None = None
    cancel_error: str | None = None


class WatchState(BaseModel):
    options: WatchOptions = Field(default_factory=WatchOptions)
    runs: list[RunState]
    started_at: str
    deadline: str
    interval_s: float
    polls: int = 0
    generation: int = 0
    next_poll_at: str | None = None
    finished: bool = False
    outcome: Literal["succeeded", "failed", "timed_out", "canceled"] | None = None


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


def start(runs: list[RunState], options: WatchOptions, now: dt.datetime) -> WatchState:
    return WatchState(
        options=options,
        runs=runs,
        started_at=_iso(now),
        deadline=_iso(now + dt.timedelta(seconds=options.timeout_s)),
        interval_s=options.polling.first_s,
    )


def pending(state: WatchState) -> list[RunState]:
    """Runs still to poll."""
    return [r for r in state.runs if not r.done and r.run_id is not None]


def observe(state: WatchState, index: int, status: dict[str, Any], now: dt.datetime) -> None:
    """Take one run's status (the ``GET /api/pipelines/runs/{id}`` body) into the state."""
    run = state.runs[index]
    run.polls += 1
    run.unavailable_since = None
    run.aml_status = status["aml_status"]
    run.status = status["status"]
    run.portal_url = status.get("portal_url") or run.portal_url
    run.metrics = status.get("metrics") or run.metrics
    if status.get("error"):
        run.error = status["error"]
        run.failed_step = status["error"].get("step")
    if run.aml_status in STUCK:
        run.stuck_since = run.stuck_since or _iso(now)
        if (now - _parse(run.stuck_since)).total_seconds() > state.options.stuck_limit_s:
            run.done, run.outcome = True, "stuck"
            run.error = {
                "message": f"AML reported {run.aml_status} for over {state.options.stuck_limit_s:.0f} s",
                "code": "stuck",
            }
        return
    run.stuck_since = None
    if run.aml_status not in TERMINAL:
        return
    run.done = True
    if run.aml_status == "Completed":
        run.gate_failures = gate_failures(run.metrics, state.options.gates, now)
        if status.get("metrics_error") and (state.options.gates.max_mape or state.options.gates.max_age_days):
            # no metrics is no evidence of health: the gates fail, they do not pass
            run.gate_failures.append(
                {
                    "gate": "metrics",
                    "step": None,
                    "metric": None,
                    "value": None,
                    "limit": None,
                    "by": None,
                    "message": status["metrics_error"],
                }
            )
        run.outcome = "gate_failed" if run.gate_failures else "completed"
    else:
        run.outcome = "failed" if run.aml_status == "Failed" else "canceled"


def fail_run(state: WatchState, index: int, error: dict[str, Any]) -> None:
    """A run that cannot go on (its submit failed)."""
    run = state.runs[index]
    run.done, run.outcome, run.error = True, "failed", error


def unavailable(state: WatchState, index: int, error: str, now: dt.datetime) -> None:
    """A run whose status could not be read, even after the activity's retries: AML may be
    briefly out of reach, so it is waited out like a stuck run (``stuck_limit_s``), then failed."""
    run = state.runs[index]
    run.polls += 1
    run.unavailable_since = run.unavailable_since or _iso(now)
    if (now - _parse(run.unavailable_since)).total_seconds() > state.options.stuck_limit_s:
        run.done, run.outcome = True, "failed"
        run.error = {"message": f"status unavailable: {error}", "code": "status_unavailable"}


_NAME_END = re.compile(r"(?:^|[./:])([A-Za-z_]+)$")


def gate_failures(metrics: dict[str, dict[str, float]], gates: Gates, now: dt.datetime) -> list[dict[str, Any]]:
    """Every gate a run's metrics fail: ``mape`` metrics above ``max_mape``; ``trained_at``
    (epoch seconds) older than ``max_age_days``. Metric names may carry a model prefix
    (``northeast.large.fast.mape``)."""
    failures = []
    for step, values in sorted(metrics.items()):
        for name, value in sorted(values.items()):
            m = _NAME_END.search(name)
            leaf = m.group(1) if m else name
            if leaf == "mape" and gates.max_mape is not None and value > gates.max_mape:
                failures.append(
                    {
                        "gate": "max_mape",
                        "step": step,
                        "metric": name,
                        "value": round(value, 4),
                        "limit": gates.max_mape,
                        "by": round(value - gates.max_mape, 4),
                    }
                )
            if leaf == "trained_at" and gates.max_age_days is not None:
                age = (now.timestamp() - value) / 86400
                if age > gates.max_age_days:
                    failures.append(
                        {
                            "gate": "max_age_days",
                            "step": step,
                            "metric": name,
                            "value": round(age, 2),
                            "limit": gates.max_age_days,
                            "by": round(age - gates.max_age_days, 2),
                        }
                    )
    return failures


def after_poll(state: WatchState, now: dt.datetime) -> Literal["wait", "timed_out", "done"]:
    """What to do once every pending run was observed: wait, cancel for timeout, or end."""
    state.polls += 1
    if not pending(state):
        return "done"
    if now >= _parse(state.deadline):
        return "timed_out"
    return "wait"


def next_poll(state: WatchState, now: dt.datetime) -> dt.datetime:
    """When to poll next; the interval grows by ``factor`` up to ``max_s`` (never past the deadline)."""
    fire = now + dt.timedelta(seconds=state.interval_s)
    fire = min(fire, _parse(state.deadline))
    state.interval_s = min(state.interval_s * state.options.polling.factor, state.options.polling.max_s)
    state.next_poll_at = _iso(fire)
    return fire


def time_out(state: WatchState) -> None:
    for run in pending(state):
        run.done, run.outcome = True, "timed_out"
        run.error = {"message": f"still {run.aml_status} after {state.options.timeout_s:.0f} s", "code": "timeout"}
    finish(state, "timed_out")


def cancel_all(state: WatchState) -> None:
    for run in state.runs:
        if not run.done:
            run.done, run.outcome = True, "canceled"
    finish(state, "canceled")


def finish(state: WatchState, outcome: str | None = None) -> None:
    state.finished = True
    if outcome is None:
        bad = [r for r in state.runs if r.outcome != "completed"]
        outcome = "failed" if bad else "succeeded"
    state.outcome = outcome  # type: ignore[assignment]


def result(state: WatchState) -> dict[str, Any]:
    """The answer the status route gives once the watch ended."""
    runs = [
        {
            "run_id": r.run_id,
            "pipeline": r.pipeline,
            "parameters": r.parameters,
            "aml_status": r.aml_status,
            "outcome": r.outcome,
            "failed_step": r.failed_step,
            "error": r.error,
            "gate_failures": r.gate_failures,
            "cancel_error": r.cancel_error,
            "portal_url": r.portal_url,
            "metrics": r.metrics,
        }
        for r in state.runs
    ]
    failed = [r for r in runs if r["outcome"] != "completed"]
    return {
        "outcome": state.outcome,
        "runs_total": len(runs),
        "runs_completed": len(runs) - len(failed),
        "failed": failed,
        "runs": runs,
        "started_at": state.started_at,
        "polls": state.polls,
        "generation": state.generation,
    }


def progress(state: WatchState) -> dict[str, Any]:
    """Custom status: counts, then per run (state, polls), trimmed to stay under 16 KB."""
    counts: dict[str, int] = {}
    for r in state.runs:
        key = r.outcome or r.status
        counts[key] = counts.get(key, 0) + 1
    status: dict[str, Any] = {
        "runs": len(state.runs),
        "counts": counts,
        "polls": state.polls,
        "next_poll_at": state.next_poll_at,
        "deadline": state.deadline,
        "generation": state.generation,
        "per_run": [],
    }
    size = len(json.dumps(status))
    # unfinished and failed runs first: they are what a reader looks for
    order = sorted(state.runs, key=lambda r: (r.outcome == "completed", r.index))
    for r in order:
        item = {"i": r.index, "run_id": r.run_id, "aml_status": r.aml_status, "outcome": r.outcome, "polls": r.polls}
        cost = len(json.dumps(item)) + 2
        if size + cost > CUSTOM_STATUS_BUDGET:
            status["per_run_truncated"] = len(state.runs) - len(status["per_run"])
            break
        status["per_run"].append(item)
        size += cost
    return status


def watch_here(
    get_status: Callable[[str], dict[str, Any]],
    cancel: Callable[[str], Any],
    state: WatchState,
    *,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    on_change: Callable[[WatchState], None] | None = None,
) -> WatchState:
    """The same policy as the orchestrator, in this process (the command line, the main job)."""
    while True:
        t = now()
        for run in pending(state):
            try:
                observe(state, run.index, get_status(run.run_id), t)  # type: ignore[arg-type]
            except Exception as e:  # noqa: BLE001 - waited out like the orchestrator does, the others go on
                unavailable(state, run.index, str(e), t)
        decision = after_poll(state, t)
        if on_change:
            on_change(state)
        if decision == "done":
            finish(state)
            return state
        if decision == "timed_out":
            if state.options.cancel_on_timeout:
                for run in pending(state):
                    cancel(run.run_id)  # type: ignore[arg-type]
            time_out(state)
            return state
        fire = next_poll(state, t)
        sleep(max(0.0, (fire - now()).total_seconds()))
