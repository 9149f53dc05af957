"""The watch's one decision loop, driven by the durable orchestrator and by the command line.

:func:`steps` is a generator over a :class:`~shared.watch.policy.WatchState`: it yields what
it needs done (:class:`Submit`, :class:`Poll`, :class:`Cancel`, :class:`Sleep`,
:class:`Renew`) and is sent back what came of it; it returns the watch's result. It does no
I/O and reads the time only through the ``now`` it is given, so the orchestrator can drive it
with durable activities and timers (deterministic on replay) and :func:`watch_here` with plain
calls and ``time.sleep``. Both therefore decide exactly alike.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from shared import clock
from shared.aml import runs
from shared.aml.backend import Backend
from shared.aml.catalog import load_catalog
from shared.watch import policy
from shared.watch.policy import RunState, WatchState

#: a call's outcome: ``(True, answer)`` or ``(False, error text)``
Outcome = tuple[bool, Any]


@dataclass(frozen=True)
class Submit:
    """Start these runs (``run_id`` is still None); reply: one :data:`Outcome` per run, the
    answer carrying ``run_id`` and ``portal_url``."""

    runs: list[RunState]


@dataclass(frozen=True)
class Poll:
    """Read these runs' statuses; reply: one :data:`Outcome` per run, the answer being the
    ``GET /api/pipelines/runs/{id}`` body."""

    runs: list[RunState]


@dataclass(frozen=True)
class Cancel:
    """Ask these runs to stop; reply: one :data:`Outcome` per run, a run AML does not know
    answered with :func:`cancel_run`'s ``nothing to cancel`` (a success: it is not asked again)."""

    runs: list[RunState]


@dataclass(frozen=True)
class Sleep:
    """Wait until ``until``; reply: True when a cancel of the watch arrived meanwhile."""

    until: dt.datetime


@dataclass(frozen=True)
class Renew:
    """Start a fresh history with this state (durable ``continue_as_new``); reply: True when
    a cancel of the watch arrived first (the loop then ends the watch). A driver without a
    history replies None and the loop goes on."""

    state: WatchState


Command = Submit | Poll | Cancel | Sleep | Renew
Steps = Generator[Command, Any, dict[str, Any]]


def steps(state: WatchState, now: Callable[[], dt.datetime], cancelled: Callable[[], bool]) -> Steps:
    """The watch from ``state`` to its result (see :mod:`shared.watch.policy` for the rules).

    ``cancelled`` tells whether a cancel of the watch has arrived (checked after each poll,
    besides the :class:`Sleep` reply)."""
    yield from _submit_new(state)
    polls_at_start = state.polls
    while True:
        t = now()
        polled = policy.pending(state)
        outcomes = (yield Poll(polled)) if polled else []
        for r, (ok, status) in zip(polled, outcomes, strict=True):
            if ok:
                policy.observe(state, r.index, status, t)
            else:
                policy.unavailable(state, r.index, status, t)
        # a run given up on (stuck, or its status unavailable too long) must not keep AML's
        # compute busy after ADF was told it failed: asked to stop, best effort
        yield from _cancel_runs([r for r in polled if policy.given_up(r)])
        decision = policy.after_poll(state, t)
        if decision == "done":
            policy.finish(state)
            return policy.result(state)
        if decision == "timed_out" or cancelled() or (yield Sleep(policy.next_poll(state, t))):
            return (yield from _end_early(state, timed_out=decision == "timed_out"))
        if state.polls - polls_at_start >= state.options.polls_per_generation:
            # a fresh history every N polls: a while loop would grow it without bound. A cancel
            # that came with the timer ending this generation must end the watch, not be lost
            # with the history (the next generation's waiter would never see it)
            if cancelled() or (yield Renew(state.model_copy(update={"generation": state.generation + 1}))):
                return (yield from _end_early(state, timed_out=False))
            state.generation += 1
            polls_at_start = state.polls


def _submit_new(state: WatchState) -> Generator[Command, Any, None]:
    to_submit = [r for r in state.runs if r.run_id is None and not r.done]
    if not to_submit:
        return
    outcomes = yield Submit(to_submit)
    for r, (ok, answer) in zip(to_submit, outcomes, strict=True):
        if ok:
            # the portal link comes with the run's end: a 500-run state stays small meanwhile
            r.run_id = answer["run_id"]
        else:
            policy.fail_run(state, r.index, {"message": f"submit failed: {answer}", "code": "submit_failed"})


def _end_early(state: WatchState, *, timed_out: bool) -> Steps:
    """A timeout (its runs canceled unless the options say not to) or a cancel of the watch."""
    if not timed_out or state.options.cancel_on_timeout:
        yield from _cancel_runs(policy.pending(state))
    if timed_out:
        policy.time_out(state)
    else:
        policy.cancel_all(state)
    return policy.result(state)


def _cancel_runs(runs_: list[RunState]) -> Generator[Command, Any, None]:
    """Ask each run to stop; each run records what came of it (:func:`policy.cancel_answered`)."""
    if not runs_:
        return
    outcomes = yield Cancel(runs_)
    for r, (ok, answer) in zip(runs_, outcomes, strict=True):
        policy.cancel_answered(r, ok, answer)


class CancelRefused(Exception):
    """The run API refused a cancel for another reason than an unknown run; ``status`` and
    ``body`` are its answer, the message is the body's own."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(str(body.get("message") or body))
        self.status, self.body = status, body


def cancel_run(backend: Backend, run_id: str) -> dict[str, Any]:
    """Ask a run to stop through the run API (:func:`shared.aml.runs.cancel`), for the watch:
    the run's status once asked. A run AML does not know (404) has nothing to stop: the answer
    says so (:data:`policy.NOTHING_TO_CANCEL`) instead of failing, because a retry would only
    ask again for nothing. Any other refusal raises :class:`CancelRefused` (worth a retry)."""
    status, body, _ = runs.cancel(backend, run_id)
    if status == 404:
        return {
            "run_id": run_id,
            policy.NOTHING_TO_CANCEL: True,
            "message": f"AML does not know run {run_id!r}: nothing to cancel",
        }
    if status >= 400:
        raise CancelRefused(status, body)
    return body


def watch_here(
    get_status: Callable[[str], dict[str, Any]],
    cancel: Callable[[str], Any],
    state: WatchState,
    *,
    submit: Callable[[RunState], dict[str, Any]] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], dt.datetime] = clock.now,
    on_change: Callable[[WatchState], None] | None = None,
) -> WatchState:
    """Drive :func:`steps` in this process (the command line, the main job): each call in turn,
    an exception being that run's failure, and ``sleep`` between polls."""
    here = _Here(get_status, cancel, submit, sleep, now, on_change, state)
    loop = steps(state, now, lambda: False)
    reply: Any = None
    while True:
        try:
            command = loop.send(reply)
        except StopIteration:
            here.changed()
            return state
        reply = here.reply(command)


@dataclass
class _Here:
    """How :func:`watch_here` answers each command: plain calls, and ``sleep``."""

    get_status: Callable[[str], dict[str, Any]]
    cancel: Callable[[str], Any]
    submit: Callable[[RunState], dict[str, Any]] | None
    sleep: Callable[[float], None]
    now: Callable[[], dt.datetime]
    on_change: Callable[[WatchState], None] | None
    state: WatchState

    def changed(self) -> None:
        if self.on_change:
            self.on_change(self.state)

    def reply(self, command: Command) -> Any:
        if isinstance(command, Submit):
            return _each(self._submit, command.runs)
        if isinstance(command, Poll):
            return _each(lambda r: self.get_status(_run_id(r)), command.runs)
        if isinstance(command, Cancel):
            return _each(lambda r: self.cancel(_run_id(r)), command.runs)
        if isinstance(command, Sleep):
            self.changed()
            self.sleep(max(0.0, (command.until - self.now()).total_seconds()))
            return False  # no cancel reaches a watch in this process
        return None  # Renew: there is no history to renew here

    def _submit(self, run: RunState) -> dict[str, Any]:
        if self.submit is None:
            raise RuntimeError("no way to submit runs here")
        return self.submit(run)


def _run_id(run: RunState) -> str:
    if run.run_id is None:
        raise ValueError(f"run {run.index} was never submitted")
    return run.run_id


def _each(call: Callable[[RunState], Any], runs_: list[RunState]) -> list[Outcome]:
    """Each call's outcome: one run's failure is that run's, the others go on."""
    outcomes: list[Outcome] = []
    for run in runs_:
        try:
            outcomes.append((True, call(run)))
        except Exception as e:
            outcomes.append((False, str(e)))
    return outcomes


def follow(
    backend: Backend,
    run_ids: list[str],
    options: policy.WatchOptions,
    *,
    on_status: Callable[[dict[str, Any]], None] | None = None,
    on_change: Callable[[WatchState], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], dt.datetime] = clock.now,
) -> WatchState:
    """Follow runs in this process with the durable watch's policy: the command line and the
    main job wait exactly as the orchestrator does, each run held to its own pipeline's gates
    from the catalog, and a run given up on is asked to stop as the orchestrator asks
    (:func:`cancel_run`). ``on_status`` sees every status read."""
    if not options.pipeline_gates:
        options = options.model_copy(update={"pipeline_gates": {n: p.gates for n, p in load_catalog().items()}})

    def get_status(run_id: str) -> dict[str, Any]:
        code, body, _ = runs.get(backend, run_id)
        if code != 200:
            raise RuntimeError(body.get("message", body))
        if on_status:
            on_status(body)
        return body

    state = policy.start([RunState(index=i, run_id=r) for i, r in enumerate(run_ids)], options, now())
    return watch_here(
        get_status, lambda run_id: cancel_run(backend, run_id), state, sleep=sleep, now=now, on_change=on_change
    )
