"""The fake durable host: ``DurableHost`` plays the durable extension for one orchestrator, the orchestrators it
calls as sub-orchestrations, and their activities (episodes replayed through the SDK, activities run for real,
timers on a virtual clock, external events, retries, ``continue_as_new``, sub-orchestrations), and the errors
it raises when asked for what it cannot do."""

from __future__ import annotations

import inspect
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from tests.fakes.durable.client import run_async
from tests.fakes.durable.history import EventType, History
from tests.fakes.durable.instance import TERMINAL, InstanceState, Work
from tests.fakes.durable.replay import (
    ReplayResult,
    activities_of,
    find_function,
    orchestrators_of,
    replay,
    resolve_orchestrator,
)
from tests.fakes.durable.wire import DEFAULT_START_TIME, as_utc, from_json, parse_time, to_json

__all__ = ["DurableHost", "DurableHostError", "NonDeterminismError"]

# ExecutionIds are uuid5 names under this namespace (deterministic, so derived child instance ids are too)
_EXECUTION_NAMESPACE = uuid.UUID("4f1c2f4e-2b4b-4c55-9d0e-6b1d0c7a5e21")


class DurableHostError(RuntimeError):
    """The harness was asked for something it cannot do (unknown activity, unsupported action, ...)."""


class NonDeterminismError(DurableHostError):
    """A replay produced different actions than an earlier replay of the same history prefix."""


class DurableHost:
    """Plays the durable extension for one orchestrator function, the orchestrators it calls as
    sub-orchestrations (``orchestrators={name: function}``) and a set of activities.

    Every episode appends ``OrchestratorStarted`` + one new event to the instance's history, replays the
    orchestrator through the SDK, appends ``TaskScheduled``/``SubOrchestrationInstanceCreated``/``TimerCreated``
    for the new actions it returned, then ``OrchestratorCompleted``. Work is then picked in this order: scheduled
    activities (run for real, FIFO), outcomes of finished sub-orchestrations (FIFO), queued external events the
    orchestrator waits for, the earliest pending timer (the virtual clock jumps to its fire time). One
    completion per episode, so sequence numbers stay in step with the SDK's.

    Sub-orchestrations: a CallSubOrchestrator(WithRetry) action creates the child instance (Pending, in
    ``instances``, its id as given or ``"<parent ExecutionId>:<event id>"`` like DTFx) with its own history,
    replayed with the same engine on the same clock. The instances one orchestration started form a tree that
    is driven as a whole, whichever of its instances ``run``/``advance``/``raise_event`` names: each step takes
    the first instance (root first, then children depth-first in creation order) that has work other than a
    timer (a child's first episode counts as such work) and does one piece of it in the order above; only when
    none has, the earliest timer of the whole tree fires, so the clock moves forward in fire-time order across
    parent and children. A child's end is queued on its parent as SubOrchestrationInstanceCompleted (Result)
    or SubOrchestrationInstanceFailed (Reason ``Orchestrator function '<name>' failed: <error>``, Details the
    error), unless the parent has ended or continued as new since. The with-retry form retries a failed child
    like activities: a retry timer, then a new child (the same instance id if one was given).
    """

    def __init__(
        self,
        orchestrator: Any,
        activities: Mapping[str, Callable[[Any], Any]] | None = None,
        *,
        orchestrators: Mapping[str, Any] | None = None,
        name: str | None = None,
        start_time: datetime = DEFAULT_START_TIME,
        max_steps: int = 1000,
        upper_schema_version: int = 2,
        warnings_mode: str = "record",
    ) -> None:
        self.orchestrator = orchestrator
        _, _, resolved_name = resolve_orchestrator(orchestrator)
        self.name = name or resolved_name
        # every orchestrator an instance can run, by name (the main one under its name, whatever the mapping says)
        self.orchestrators: dict[str, Any] = {**(orchestrators or {}), self.name: orchestrator}
        self.activities = dict(activities or {})
        self.clock = as_utc(start_time)
        self.max_steps = max_steps
        self.upper_schema_version = upper_schema_version
        self.warnings_mode = warnings_mode
        self.instances: dict[str, InstanceState] = {}
        self.lock = threading.RLock()
        self._executions: dict[str, int] = {}  # instance id -> executions started (generations, re-creations)

    @classmethod
    def from_app(cls, app: Any, orchestrator_name: str, **kwargs: Any) -> DurableHost:
        """A host for the orchestrator ``orchestrator_name`` of a DFApp/Blueprint, with all its activities and
        every orchestrator of the app as a possible sub-orchestration (``orchestrators=`` adds or overrides)."""
        orchestrators = {**orchestrators_of(app), **kwargs.pop("orchestrators", {})}
        return cls(find_function(app, orchestrator_name), activities_of(app), orchestrators=orchestrators, **kwargs)

    # -- public API -------------------------------------------------------------------------------
    def start(
        self,
        input: Any = None,
        *,
        instance_id: str | None = None,
        run: bool = True,
        input_json: str | None = None,
        name: str | None = None,
    ) -> str:
        """Create an instance (Pending) of the main orchestrator, or of the registered orchestrator ``name``;
        with ``run=True`` run it until it completes, fails or only waits."""
        with self.lock:
            name = name or self.name
            if name not in self.orchestrators:
                raise DurableHostError(f"no orchestrator {name!r} registered (known: {sorted(self.orchestrators)})")
            instance_id = instance_id or uuid.uuid4().hex
            state = InstanceState(
                instance_id=instance_id,
                name=name,
                input_json=input_json if input_json is not None else (None if input is None else to_json(input)),
                created_time=self.clock,
                last_updated_time=self.clock,
            )
            self.instances[instance_id] = state
            if run:
                self.run(instance_id)
            return instance_id

    def status(self, instance_id: str) -> InstanceState:
        return self.instances[instance_id]

    def children(self, instance_id: str) -> list[str]:
        """The sub-orchestration instance ids ``instance_id`` created (all generations and retry attempts, in
        creation order; an id given again for a retry appears once)."""
        return list(self.instances[instance_id].children)

    def run(self, instance_id: str, max_steps: int | None = None) -> InstanceState:
        """Run episodes until the instance's tree (the orchestration it belongs to, sub-orchestrations included)
        has nothing left to do: every instance terminal or idle (waiting for an event not yet raised), or the
        step limit is hit (then ``step_limit_hit`` is set and the instance stays Running)."""
        return self._drive(instance_id, max_steps or self.max_steps, stop_at_timers=None)

    def advance(self, instance_id: str, max_steps: int = 1) -> InstanceState:
        """Run until the orchestrator (or any instance of its tree) waits on a timer for the ``max_steps``-th
        time, without firing it.

        A timer already pending from an earlier ``advance`` is fired first. Use it to look at an instance
        while it is Running (e.g. between the two loops of a durable-timer wait)."""
        return self._drive(instance_id, self.max_steps, stop_at_timers=max_steps)

    def raise_event(
        self, instance_id: str, name: str, data: Any = None, *, data_json: str | None = None, run: bool = False
    ) -> None:
        """Queue an external event; it is delivered when the orchestrator waits for ``name``."""
        with self.lock:
            state = self.instances[instance_id]
            if state.runtime_status in TERMINAL:
                raise DurableHostError(f"instance {instance_id} is {state.runtime_status}")
            state.pending_events.append((name, data_json if data_json is not None else to_json(data)))
            if run:
                self.run(instance_id)

    def terminate(self, instance_id: str, reason: str = "") -> None:
        with self.lock:
            state = self.instances[instance_id]
            if state.runtime_status in TERMINAL:
                return
            if state.history is not None:
                state.history._event(EventType.EXECUTION_TERMINATED, Input=to_json(reason))
            state.runtime_status = "Terminated"
            state.output = reason
            state.last_updated_time = self.clock
            self._clear_work(state)
            self._notify_parent(state)

    def advance_clock(self, delta: timedelta) -> None:
        self.clock += delta

    # -- engine: picking and delivering work --------------------------------------------------------
    def _drive(self, instance_id: str, max_steps: int, stop_at_timers: int | None) -> InstanceState:
        with self.lock:
            state = self.instances[instance_id]
            root = self._root(state)
            timer_waits = 0
            for _ in range(max_steps):
                picked = self._next_work(root)
                if picked is None:
                    return state  # every instance of the tree is terminal or waits for an event not raised yet
                owner, work = picked
                if (
                    work[0] == "timer"
                    and stop_at_timers is not None
                    and not work[1].retry_timer  # retry back-off timers are the host's business, not a stop
                    and root.paused_timer != (owner.instance_id, work[1].event_id)
                ):
                    timer_waits += 1
                    if timer_waits >= stop_at_timers:
                        root.paused_timer = (owner.instance_id, work[1].event_id)
                        return state
                root.paused_timer = None
                if work[0] == "start":  # Pending: first episode of generation 1
                    owner.runtime_status = "Running"
                    self._start_generation(owner)
                else:
                    self._deliver(owner, work)
            for live in [state, *self._tree(root)]:
                if live is state or live.runtime_status not in TERMINAL:
                    live.step_limit_hit = True
            return state

    def _root(self, state: InstanceState) -> InstanceState:
        """The top of the tree ``state`` belongs to: its furthest ancestor still in ``instances`` (or itself)."""
        seen = {state.instance_id}
        while state.parent_instance_id is not None:
            parent = self.instances.get(state.parent_instance_id)
            if parent is None or state.instance_id not in parent.children or parent.instance_id in seen:
                break
            seen.add(parent.instance_id)
            state = parent
        return state

    def _tree(self, root: InstanceState) -> Iterator[InstanceState]:
        """``root`` and its sub-orchestrations, depth-first in creation order (terminal ones included)."""
        seen: set[str] = set()
        stack = [root]
        while stack:
            state = stack.pop()
            if state.instance_id in seen:
                continue
            seen.add(state.instance_id)
            yield state
            kids = [self.instances.get(child_id) for child_id in state.children]
            stack.extend(reversed([k for k in kids if k is not None and k.parent_instance_id == state.instance_id]))

    def _next_work(self, root: InstanceState) -> tuple[InstanceState, tuple[str, Any]] | None:
        live = [s for s in self._tree(root) if s.runtime_status not in TERMINAL]
        for state in live:
            work = self._ready_work(state)
            if work is not None:
                return state, work
        timers = [
            (w.fire_at, order, w.event_id, state, w)
            for order, state in enumerate(live)
            for w in state.timers.values()
            if not self._timer_cancelled(state, w)
        ]
        if not timers:
            return None
        *_, state, timer = min(timers, key=lambda t: t[:3])
        return state, ("timer", timer)

    @staticmethod
    def _ready_work(state: InstanceState) -> tuple[str, Any] | None:
        """Work of one instance that needs no time to pass: its first episode, an activity, a child's outcome,
        an external event it waits for."""
        if state.history is None:
            return ("start", None)
        if state.activities:
            return ("activity", state.activities[0])
        if state.child_results:
            return ("child", state.child_results[0])
        for index, (name, _) in enumerate(state.pending_events):
            if state.waiters.get(name, 0) > 0:
                return ("event", index)
        return None

    def _start_generation(self, state: InstanceState) -> None:
        self._executions[state.instance_id] = self._executions.get(state.instance_id, 0) + 1
        state.execution_id = uuid.uuid5(
            _EXECUTION_NAMESPACE, f"{state.instance_id}#{self._executions[state.instance_id]}"
        ).hex
        parent_instance = None
        if state.parent_instance_id is not None:
            parent = self.instances.get(state.parent_instance_id)
            parent_instance = {
                "Name": parent.name if parent is not None else None,
                "Version": "",
                "TaskScheduleId": state.parent_task_id,
                "OrchestrationInstance": {
                    "InstanceId": state.parent_instance_id,
                    "ExecutionId": state.parent_execution_id,
                },
            }
        state.history = History(
            instance_id=state.instance_id,
            name=state.name,
            start_time=self.clock,
            upper_schema_version=self.upper_schema_version,
            input_json=state.input_json,
            start=False,
            execution_id=state.execution_id,
            parent_instance_id=state.parent_instance_id,
            parent_instance=parent_instance,
        )
        state.history.orchestrator_started(self.clock).execution_started(input_json=state.input_json)
        state.history_lengths.append(len(state.history))
        self._replay_and_schedule(state, followups=[])

    def _clear_work(self, state: InstanceState) -> None:
        state.activities.clear()
        state.timers.clear()
        state.waiters.clear()
        state.sub_orchestrations.clear()  # children still running carry on; their outcome is dropped
        state.child_results.clear()

    @staticmethod
    def _timer_cancelled(state: InstanceState, work: Work) -> bool:
        if work.retry_timer:
            return False
        for action, event_id in zip(state.known_actions, state.action_ids, strict=True):
            if event_id == work.event_id and action.get("isCanceled"):
                return True
        return False

    def _deliver(self, state: InstanceState, work: tuple[str, Any]) -> None:
        kind, item = work
        history = state.history
        assert history is not None
        followups: list[tuple[str, Work]] = []
        if kind == "activity":
            state.activities.popleft()
            history.orchestrator_started(self.clock)
            ok, payload = self._run_activity(state, item)
            if ok:
                history.task_completed(item.event_id, result_json=payload)
            else:
                reason, details = payload
                history.task_failed(item.event_id, reason, details)
                if item.retry is not None:
                    followups.append(("retry-timer", item))
        elif kind == "child":
            state.child_results.popleft()
            history.orchestrator_started(self.clock)
            if item.failure is None:
                history.sub_orchestration_completed(item.event_id, result_json=item.result_json)
            else:
                history.sub_orchestration_failed(item.event_id, *item.failure)
                if item.retry is not None:
                    followups.append(("retry-timer", item))
        elif kind == "event":
            name, data_json = state.pending_events[item]
            del state.pending_events[item]
            state.waiters[name] -= 1
            history.orchestrator_started(self.clock)
            history.event_raised(name, input_json=data_json)
        else:
            del state.timers[item.event_id]
            self.clock = max(self.clock, item.fire_at)
            history.orchestrator_started(self.clock)
            history.timer_fired(item.event_id, item.fire_at)
            if item.retry_timer and item.retry["attempt"] < item.retry["options"]["maxNumberOfAttempts"]:
                followups.append(("retry-task", item))
        self._replay_and_schedule(state, followups)

    def _run_activity(self, state: InstanceState, work: Work) -> tuple[bool, Any]:
        fn = self.activities.get(work.name)
        state.activity_executions += 1
        if fn is None:
            return False, (
                f"The function '{work.name}' doesn't exist, is disabled, or is not an activity function.",
                "",
            )
        try:
            result = fn(from_json(work.input_json))
            if inspect.isawaitable(result):
                result = run_async(result)
            return True, to_json(result)
        except Exception as exc:  # the activity failed: TaskFailed with the exception's message
            return False, (str(exc) or type(exc).__name__, "".join(traceback.format_exception(exc)))

    # -- engine: one replay and what it scheduled ---------------------------------------------------
    def _replay_and_schedule(self, state: InstanceState, followups: list[tuple[str, Work]]) -> None:
        history = state.history
        assert history is not None
        result = replay(self.orchestrators[state.name], history, warnings_mode=self.warnings_mode)
        self._record_replay(state, result)
        self._schedule_followups(state, followups)
        known = len(state.known_actions)
        if not self._deterministic(state, result, known):
            return
        continue_input = self._schedule_new_actions(state, result, known)
        self._close_episode(state, result, continue_input)

    def _record_replay(self, state: InstanceState, result: ReplayResult) -> None:
        assert state.history is not None
        state.replays += 1
        state.last_result = result
        state.warnings.extend(w for w in result.warnings if w not in state.warnings)
        duplicates = [w for w in result.warnings if "Potential duplicate Task completion" in w]
        if duplicates:  # the SDK saw a completion for a task it never scheduled: the history is wrong
            raise DurableHostError(f"history out of step with the SDK: {duplicates[0]}\n{state.history.to_json()}")
        state.last_updated_time = self.clock
        if result.custom_status is not None:
            state.custom_status = result.custom_status

    def _schedule_followups(self, state: InstanceState, followups: list[tuple[str, Work]]) -> None:
        """What the SDK allocated while processing the new event (retry timers / rescheduled attempts of
        activities and sub-orchestrations)."""
        history = state.history
        assert history is not None
        for what, item in followups:
            if what == "retry-timer":
                delay = timedelta(milliseconds=item.retry["options"]["firstRetryIntervalInMilliseconds"])
                history.timer_created(self.clock + delay)
                state.timers[history.last_id] = Work(
                    "timer", history.last_id, fire_at=self.clock + delay, retry=item.retry, retry_timer=True
                )
            elif item.retry.get("kind") == "sub_orchestration":
                retry = dict(item.retry, attempt=item.retry["attempt"] + 1)
                self._call_sub_orchestrator(state, retry["name"], retry["input_json"], retry["instance_id"], retry)
            else:
                retry = dict(item.retry, attempt=item.retry["attempt"] + 1)
                history.task_scheduled(retry["name"], input_json=retry["input_json"])
                state.activities.append(
                    Work("activity", history.last_id, retry["name"], retry["input_json"], retry=retry)
                )

    def _deterministic(self, state: InstanceState, result: ReplayResult, known: int) -> bool:
        """The actions already acted on must come back identical; otherwise the instance fails."""
        for before, now in zip(state.known_actions, result.actions[:known], strict=False):
            if _comparable(before) != _comparable(now):
                self._fail(
                    state,
                    f"Non-deterministic orchestrator: expected {_comparable(before)}, "
                    f"replay produced {_comparable(now)}",
                )
                return False
        if len(result.actions) < known and not result.error:
            self._fail(state, f"Non-deterministic orchestrator: {known} actions before, {len(result.actions)} now")
            return False
        return True

    def _schedule_new_actions(self, state: InstanceState, result: ReplayResult, known: int) -> str | None:
        """Schedule the actions the replay added; the ContinueAsNew input if one of them is that."""
        continue_input: str | None = None
        for action in result.actions[known:]:
            event_id = self._schedule(state, action)
            if action["type"] == "ContinueAsNew":
                continue_input = action.get("input")
            state.known_actions.append(action)
            state.action_ids.append(event_id)
        # refresh isCanceled flags of timers acted on earlier
        for index, action in enumerate(result.actions[:known]):
            state.known_actions[index] = action
        return continue_input

    def _close_episode(self, state: InstanceState, result: ReplayResult, continue_input: str | None) -> None:
        history = state.history
        assert history is not None
        if result.error:
            history._event(EventType.EXECUTION_FAILED, Reason=result.error)
        elif result.is_done and result.continued_as_new:
            history._event(EventType.CONTINUE_AS_NEW, Input=continue_input)
        elif result.is_done:
            history._event(EventType.EXECUTION_COMPLETED, Result=to_json(result.output))
        history.orchestrator_completed()
        state.history_lengths[-1] = len(history)
        if result.error:
            self._finish(state, "Failed", error=result.error, output=result.error)
        elif result.is_done and result.continued_as_new:
            self._continue_as_new(state, continue_input)
        elif result.is_done:
            self._finish(state, "Completed", output=result.output)

    def _schedule(self, state: InstanceState, action: dict[str, Any]) -> int | None:
        history = state.history
        assert history is not None
        kind = action["type"]
        if kind in ("CallActivity", "CallActivityWithRetry"):
            history.task_scheduled(action["functionName"], input_json=action.get("input"))
            retry = None
            if kind == "CallActivityWithRetry":
                retry = {
                    "options": action["retryOptions"],
                    "attempt": 1,
                    "name": action["functionName"],
                    "input_json": action.get("input"),
                }
            state.activities.append(
                Work("activity", history.last_id, action["functionName"], action.get("input"), retry=retry)
            )
            return history.last_id
        if kind in ("CallSubOrchestrator", "CallSubOrchestratorWithRetry"):
            retry = None
            if kind == "CallSubOrchestratorWithRetry":
                retry = {
                    "options": action["retryOptions"],
                    "attempt": 1,
                    "name": action["functionName"],
                    "input_json": action.get("input"),
                    "kind": "sub_orchestration",
                    "instance_id": action.get("instanceId"),
                    "version": action.get("version"),
                }
            return self._call_sub_orchestrator(
                state,
                action["functionName"],
                action.get("input"),
                action.get("instanceId"),
                retry,
                action.get("version"),
            )
        if kind == "CreateTimer":
            fire_at = parse_time(action["fireAt"])
            history.timer_created(fire_at)
            state.timers[history.last_id] = Work("timer", history.last_id, fire_at=fire_at)
            return history.last_id
        if kind == "WaitForExternalEvent":
            name = action["externalEventName"]
            state.waiters[name] = state.waiters.get(name, 0) + 1
            return None
        if kind == "ContinueAsNew":
            return history.allocate_id()
        raise DurableHostError(f"DurableHost does not support {kind} actions: {action}")

    # -- engine: sub-orchestrations -----------------------------------------------------------------
    def _call_sub_orchestrator(
        self,
        state: InstanceState,
        name: str,
        input_json: str | None,
        instance_id: str | None,
        retry: dict[str, Any] | None,
        version: str | None = None,
    ) -> int:
        """SubOrchestrationInstanceCreated in the parent's history and the child instance (Pending; the drive
        loop runs it). An orchestrator the host does not know fails the call, like an unknown activity."""
        history = state.history
        assert history is not None
        event_id = history.next_id
        # DTFx (TaskOrchestrationContext.CreateSubOrchestrationInstanceCore): no id -> "<ExecutionId>:<event id>"
        child_id = instance_id or f"{state.execution_id}:{event_id}"
        self._check_child_id(state, child_id)
        history.sub_orchestration_created(
            name, child_id, event_id=event_id, input_json=input_json, version=version or ""
        )
        work = Work("sub_orchestration", event_id, name, input_json, retry=retry, instance_id=child_id)
        if name not in self.orchestrators:
            reason = f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator function."
            state.child_results.append(replace(work, kind="child", failure=(reason, "")))
            return event_id
        state.sub_orchestrations[event_id] = work
        self.instances[child_id] = InstanceState(
            instance_id=child_id,
            name=name,
            input_json=input_json,
            created_time=self.clock,
            last_updated_time=self.clock,
            parent_instance_id=state.instance_id,
            parent_execution_id=state.execution_id,
            parent_task_id=event_id,
        )
        if child_id not in state.children:
            state.children.append(child_id)
        return event_id

    def _check_child_id(self, state: InstanceState, child_id: str) -> None:
        if child_id in (state.instance_id, state.parent_instance_id):
            # the extension fails the parent with this ArgumentException; here it is a bug in the test
            raise DurableHostError(
                f"The instance ID of a sub-orchestration must be different than the instance ID of a parent "
                f"orchestration ({child_id!r})."
            )
        existing = self.instances.get(child_id)
        if existing is not None and existing.runtime_status not in TERMINAL:
            raise DurableHostError(
                f"sub-orchestration instance {child_id!r} already exists and is {existing.runtime_status}"
            )

    def _notify_parent(self, child: InstanceState) -> None:
        """Queue the ended child's outcome on its parent, if that execution still waits for it."""
        if child.parent_instance_id is None or child.parent_task_id is None:
            return
        parent = self.instances.get(child.parent_instance_id)
        if parent is None or parent.runtime_status in TERMINAL or parent.execution_id != child.parent_execution_id:
            return  # the parent ended or continued as new: the extension discards the message
        work = parent.sub_orchestrations.get(child.parent_task_id)
        if work is None or work.instance_id != child.instance_id:
            return
        del parent.sub_orchestrations[child.parent_task_id]
        if child.runtime_status == "Completed":
            outcome = replace(work, kind="child", result_json=to_json(child.output))
        elif child.runtime_status == "Terminated":
            outcome = replace(work, kind="child", failure=(str(child.output or "terminated"), ""))
        else:
            reason = f"Orchestrator function '{child.name}' failed: {child.error}"
            outcome = replace(work, kind="child", failure=(reason, child.error or ""))
        parent.child_results.append(outcome)
        parent.last_updated_time = self.clock

    # -- engine: ending a generation ----------------------------------------------------------------
    def _finish(self, state: InstanceState, status: str, *, output: Any = None, error: str | None = None) -> None:
        state.runtime_status = status
        state.output = output
        state.error = error
        state.last_updated_time = self.clock
        self._clear_work(state)
        self._notify_parent(state)

    def _fail(self, state: InstanceState, message: str) -> None:
        assert state.history is not None
        state.history.orchestrator_completed()
        self._finish(state, "Failed", output=message, error=message)
        state.history_lengths[-1] = len(state.history)

    def _continue_as_new(self, state: InstanceState, input_json: str | None) -> None:
        assert state.history is not None
        state.past_histories.append(state.history.to_dict()["history"])
        state.generation += 1
        state.input_json = input_json
        state.known_actions = []
        state.action_ids = []
        self._clear_work(state)  # unprocessed external events (pending_events) carry over
        state.history = None
        state.output = None
        self._start_generation(state)


def _comparable(action: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in action.items() if k not in ("isCanceled", "inputValue")}
