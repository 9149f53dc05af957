"""The watch policy: follow AML runs to their end, decide, and say what happened.

Pure functions over a JSON-safe :class:`WatchState`: no clock, no I/O. The durable
orchestrator (``poll_aml_durable.pipeline_runs_watch``) and the command line drive it through
the one decision loop in :mod:`shared.watch.loop`, so the local main job waits exactly as
Azure does:

1. poll every unfinished run (``observe``), backing off exponentially between polls;
2. a run ends on Completed / Failed / Canceled; NotResponding / Paused / Unknown are waited
   out up to ``stuck_limit_s``, then count as failed;
3. completed runs pass the health gates (MAPE <= ``max_mape``; model no older than
   ``max_age_days``) or fail them;
4. past ``timeout_s`` the unfinished runs are canceled (``cancel_on_timeout``) and the watch
   ends ``timed_out``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared import clock
from shared.aml.status import STUCK, TERMINAL
from shared.watch.gates import Gates, finite, gate_failures

#: custom status must stay under 16 KB (the durable extension's limit)
CUSTOM_STATUS_BUDGET = 12_000


#: the shortest interval a watch polls at: AML's own state changes no faster, and a watch
#: polling in a loop would spend the task hub and AML's rate limit for nothing
MIN_POLL_S = 1.0
#: the longest a run may report NotResponding, Paused or Unknown before it counts as failed
MAX_STUCK_LIMIT_S = 7 * 24 * 3600.0


class Polling(BaseModel):
    """How often a watch polls: the first interval, its growth and its cap (finite numbers)."""

    model_config = ConfigDict(allow_inf_nan=False)

    first_s: float = Field(30.0, ge=MIN_POLL_S, le=3600)
    factor: float = Field(1.5, ge=1.0, le=10.0)
    max_s: float = Field(300.0, ge=MIN_POLL_S, le=6 * 3600)


class WatchOptions(BaseModel):
    """How a watch follows its runs: timeout, polling, gates and stuck limit (finite, bounded)."""

    model_config = ConfigDict(allow_inf_nan=False)

    timeout_s: float = Field(12 * 3600.0, gt=0, le=7 * 24 * 3600)
    polling: Polling = Field(default_factory=Polling)
    cancel_on_timeout: bool = True
    #: the gates of the watch's pipeline (from the catalog, made stricter by the caller, never looser)
    gates: Gates = Field(default_factory=Gates)
    #: following runs whose pipeline is read from their status: each catalog pipeline's gates
    pipeline_gates: dict[str, Gates] = Field(default_factory=dict)
    stuck_limit_s: float = Field(1800.0, gt=0, le=MAX_STUCK_LIMIT_S)
    #: polls per orchestration generation before continue_as_new keeps the history bounded
    polls_per_generation: int = Field(20, ge=1, le=1000)


#: how a whole watch ended
Outcome = Literal["succeeded", "failed", "timed_out", "canceled"]


class RunState(BaseModel):
    """One run a watch follows: its request, status, outcome and gate failures."""

    index: int
    run_id: str | None = None
    pipeline: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    #: the run's inputs by reference (``azureml:<data asset>:<version>`` or a lake URI)
    inputs: dict[str, str] = Field(default_factory=dict)
    aml_status: str = "NotStarted"
    status: str = "queued"
    done: bool = False
    outcome: Literal["completed", "failed", "canceled", "stuck", "timed_out", "gate_failed"] | None = None
    stuck_since: str | None = None
    error: dict[str, Any] | None = None
    failed_step: str | None = None
    portal_url: str | None = None
    metrics: dict[str, dict[str, float | None]] = Field(default_factory=dict)
    gate_failures: list[dict[str, Any]] = Field(default_factory=list)
    polls: int = 0
    unavailable_since: str | None = None
    #: a run the watch gave up on (stuck, status unavailable, timed out) is asked to stop in AML
    cancel_requested: bool = False
    #: seconds from the run's start to its end, when AML reported both
    duration_s: float | None = None
    cancel_error: str | None = None
    #: why a cancel is done though nothing was canceled (AML does not know the run: nothing to stop)
    cancel_note: str | None = None


class WatchState(BaseModel):
    """One watch: its options, its runs, its deadline and how it ended."""

    options: WatchOptions = Field(default_factory=WatchOptions)
    runs: list[RunState]
    started_at: str
    deadline: str
    interval_s: float
    polls: int = 0
    generation: int = 0
    next_poll_at: str | None = None
    finished: bool = False
    outcome: Outcome | None = None
    #: the fingerprint of the request that started the watch (its idempotency key's content)
    request: str | None = None

    def to_input(self) -> dict[str, Any]:
        """The state as an orchestration's input: JSON, without the fields at their defaults
        (a 500-run batch's state stays well under the payload a durable message carries)."""
        return self.model_dump(mode="json", exclude_defaults=True)


def start(runs: list[RunState], options: WatchOptions, now: dt.datetime) -> WatchState:
    """A new watch of these runs, its deadline the timeout from ``now``."""
    return WatchState(
        options=options,
        runs=runs,
        started_at=clock.iso(now),
        deadline=clock.iso(now + dt.timedelta(seconds=options.timeout_s)),
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
    run.pipeline = run.pipeline or status.get("pipeline")
    run.metrics = finite_metrics(status.get("metrics")) or run.metrics
    if status.get("error"):
        run.error = status["error"]
        run.failed_step = status["error"].get("step")
    if run.aml_status in STUCK:
        run.stuck_since = run.stuck_since or clock.iso(now)
        if (now - clock.parse_iso(run.stuck_since)).total_seconds() > state.options.stuck_limit_s:
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
    run.duration_s = _duration(status.get("started_at"), status.get("ended_at"))
    if run.aml_status == "Completed":
        gates = gates_for(state, run)
        run.gate_failures = gate_failures(run.metrics, gates, now)
        if status.get("metrics_error") and (gates.max_mape or gates.max_age_days or gates.required):
            # no metrics is no evidence of health: the gates fail, they do not pass
            run.gate_failures.append(
                {
                    "gate": "metrics",
                    "step": None,
                    "metric": None,
                    "model": None,
                    "value": None,
                    "limit": None,
                    "by": None,
                    "message": status["metrics_error"],
                }
            )
        run.outcome = "gate_failed" if run.gate_failures else "completed"
        if run.outcome == "completed":
            run.portal_url = None  # a passed run's answer has no use for it: the state stays small
    else:
        run.outcome = "failed" if run.aml_status == "Failed" else "canceled"


def _duration(started: Any, ended: Any) -> float | None:
    if not isinstance(started, str) or not isinstance(ended, str):
        return None
    with contextlib.suppress(ValueError):
        return round((clock.parse_iso(ended) - clock.parse_iso(started)).total_seconds(), 3)
    return None


def gates_for(state: WatchState, run: RunState) -> Gates:
    """The gates a run is held to: its pipeline's, when the watch knows them by name."""
    return state.options.pipeline_gates.get(run.pipeline or "", state.options.gates)


def finite_metrics(metrics: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, float | None]]:
    """Metrics as JSON can carry them: NaN and infinities become null (and fail a gate)."""
    return {
        step: {name: (float(v) if finite(v) else None) for name, v in values.items()}
        for step, values in (metrics or {}).items()
    }


_JSON_OBJECT = re.compile(r"\{.*\}")
#: what a client is told of an activity failure that is not one of the run API's own answers
ACTIVITY_FAILED = "the activity failed; the app's logs have the details"


def activity_failure(text: str) -> str:
    """One line, fit for an HTTP body, for a failed activity's text: the SDK hands the
    orchestrator ``"<reason> \n <details>"``, details being a stack trace with the worker's
    file paths. Only the run API's own structured answer (JSON in the reason) is kept."""
    found = _JSON_OBJECT.search(text.split("\n", 1)[0])
    data: Any = None
    if found:
        with contextlib.suppress(ValueError):
            data = json.loads(found.group(0))
    if not isinstance(data, dict) or not data.get("message"):
        return ACTIVITY_FAILED
    message = " ".join(str(data["message"]).split())
    if data.get("status"):
        code = f" ({data['error']})" if data.get("error") else ""
        message = f"{data.get('what', 'the call')} answered {data['status']}{code}: {message}"
    return message[:500]


def given_up(run: RunState) -> bool:
    """The watch stopped following a run whose AML job may still be running: stuck, or its
    status unavailable past the stuck limit."""
    code = (run.error or {}).get("code")
    return run.done and (run.outcome == "stuck" or (run.outcome == "failed" and code == "status_unavailable"))


#: a cancel's answer for a run AML does not know (404): there is nothing to stop, so that cancel
#: is done, never asked again
NOTHING_TO_CANCEL = "nothing_to_cancel"


def cancel_answered(run: RunState, ok: bool, answer: Any) -> None:
    """Record a cancel's outcome on its run: AML took it (``cancel_requested``); AML does not
    know the run, so there was nothing to stop (done: no error, ``cancel_note`` says why); or it
    failed (``cancel_error``, after the caller's retries)."""
    if ok and isinstance(answer, dict) and answer.get(NOTHING_TO_CANCEL):
        run.cancel_requested, run.cancel_error = False, None
        run.cancel_note = str(answer.get("message") or "AML does not know this run: nothing to cancel")
        return
    run.cancel_requested = ok
    run.cancel_error = None if ok else f"cancel failed: {answer}"


def fail_run(state: WatchState, index: int, error: dict[str, Any]) -> None:
    """A run that cannot go on (its submit failed)."""
    run = state.runs[index]
    run.done, run.outcome, run.error = True, "failed", error


def unavailable(state: WatchState, index: int, error: str, now: dt.datetime) -> None:
    """A run whose status could not be read, even after the activity's retries: AML may be
    briefly out of reach, so it is waited out like a stuck run (``stuck_limit_s``), then failed."""
    run = state.runs[index]
    run.polls += 1
    run.unavailable_since = run.unavailable_since or clock.iso(now)
    if (now - clock.parse_iso(run.unavailable_since)).total_seconds() > state.options.stuck_limit_s:
        run.done, run.outcome = True, "failed"
        run.error = {"message": f"status unavailable: {error}", "code": "status_unavailable"}


def after_poll(state: WatchState, now: dt.datetime) -> Literal["wait", "timed_out", "done"]:
    """What to do once every pending run was observed: wait, cancel for timeout, or end."""
    state.polls += 1
    if not pending(state):
        return "done"
    if now >= clock.parse_iso(state.deadline):
        return "timed_out"
    return "wait"


def next_poll(state: WatchState, now: dt.datetime) -> dt.datetime:
    """When to poll next; the interval grows by ``factor`` up to ``max_s`` (never past the deadline)."""
    fire = now + dt.timedelta(seconds=state.interval_s)
    fire = min(fire, clock.parse_iso(state.deadline))
    state.interval_s = min(state.interval_s * state.options.polling.factor, state.options.polling.max_s)
    state.next_poll_at = clock.iso(fire)
    return fire


def time_out(state: WatchState) -> None:
    """End the watch as timed out, each pending run too."""
    for run in pending(state):
        run.done, run.outcome = True, "timed_out"
        run.error = {"message": f"still {run.aml_status} after {state.options.timeout_s:.0f} s", "code": "timeout"}
    finish(state, "timed_out")


def cancel_all(state: WatchState) -> None:
    """End the watch as canceled, each run not done too."""
    for run in state.runs:
        if not run.done:
            run.done, run.outcome = True, "canceled"
    finish(state, "canceled")


def finish(state: WatchState, outcome: Outcome | None = None) -> None:
    """End the watch: as ``outcome``, or failed if a run did not complete, else succeeded."""
    state.finished = True
    if outcome is None:
        bad = [r for r in state.runs if r.outcome != "completed"]
        outcome = "failed" if bad else "succeeded"
    state.outcome = outcome


def result(state: WatchState) -> dict[str, Any]:
    """The answer the status route gives once the watch ended: every field for a run that did
    not pass; for one that did, what it is and what it measured (a 500-run batch's answer stays
    well under what a durable output carries)."""
    runs = [_run_answer(r) for r in state.runs]
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


def _run_answer(r: RunState) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "run_id": r.run_id,
        "pipeline": r.pipeline,
        "parameters": r.parameters,
        "aml_status": r.aml_status,
        "outcome": r.outcome,
        "duration_s": r.duration_s,
        "metrics": r.metrics,
    }
    if r.outcome != "completed":
        answer |= {
            "failed_step": r.failed_step,
            "error": r.error,
            "gate_failures": r.gate_failures,
            "cancel_requested": r.cancel_requested,
            "cancel_error": r.cancel_error,
            "cancel_note": r.cancel_note,
            "portal_url": r.portal_url,
        }
    return answer


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
