"""Test infrastructure for Durable Functions: the SDK's real replay engine, a fake durable host, an RPC stub.

Three layers, each usable on its own:

* ``History`` builds the JSON the Functions host sends to a Python orchestrator, and ``replay(fn, history)``
  runs the orchestrator over it exactly as the worker does (``DurableOrchestrationContext.from_json`` +
  ``Orchestrator(fn).handle``) and returns the parsed orchestrator state (``ReplayResult``).
* ``DurableHost`` plays the durable extension for one orchestrator and a dict of activities: it replays the
  orchestrator episode by episode, runs the activities it asks for, fires timers on a virtual clock,
  delivers queued external events, handles retries and ``continue_as_new``.
* ``DurableRpcStub`` is a loopback HTTP server that answers the extension's HTTP API (the calls
  ``df.DurableOrchestrationClient`` makes) from a ``DurableHost``; ``call_http_function`` invokes an
  indexed DFApp HTTP starter the way the worker does.

Nothing here talks to Azure; everything runs in-process on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
import traceback
import uuid
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import azure.functions as func
from azure.durable_functions.constants import DATETIME_STRING_FORMAT
from azure.durable_functions.models.DurableOrchestrationContext import DurableOrchestrationContext
from azure.durable_functions.models.utils import http_utils as _df_http_utils
from azure.durable_functions.orchestrator import Orchestrator
from azure.functions._durable_functions import _deserialize_custom_object, _serialize_custom_object
from dateutil.parser import parse as _parse_datetime

__all__ = [
    "ACTION_TYPES",
    "DEFAULT_START_TIME",
    "DurableHost",
    "DurableHostError",
    "DurableRpcStub",
    "EventType",
    "History",
    "InstanceState",
    "NonDeterminismError",
    "ReplayResult",
    "activities_of",
    "call_http_function",
    "find_function",
    "from_json",
    "replay",
    "run_async",
    "to_json",
]

DEFAULT_START_TIME = datetime(2025, 1, 6, 6, 0, tzinfo=UTC)
OUT_OF_PROC_MARKER = "\n\n$OutOfProcData$:"


class EventType:
    """HistoryEventType values (azure.durable_functions.models.history.HistoryEventType)."""

    EXECUTION_STARTED = 0
    EXECUTION_COMPLETED = 1
    EXECUTION_FAILED = 2
    EXECUTION_TERMINATED = 3
    TASK_SCHEDULED = 4
    TASK_COMPLETED = 5
    TASK_FAILED = 6
    TIMER_CREATED = 10
    TIMER_FIRED = 11
    ORCHESTRATOR_STARTED = 12
    ORCHESTRATOR_COMPLETED = 13
    EVENT_RAISED = 15
    CONTINUE_AS_NEW = 16


# ActionType values (azure.durable_functions.models.actions.ActionType) -> readable names
ACTION_TYPES = {
    0: "CallActivity",
    1: "CallActivityWithRetry",
    2: "CallSubOrchestrator",
    3: "CallSubOrchestratorWithRetry",
    4: "ContinueAsNew",
    5: "CreateTimer",
    6: "WaitForExternalEvent",
    7: "CallEntity",
    8: "CallHttp",
    9: "SignalEntity",
    11: "WhenAny",
    12: "WhenAll",
}


class DurableHostError(RuntimeError):
    """The harness was asked for something it cannot do (unknown activity, unsupported action, ...)."""


class NonDeterminismError(DurableHostError):
    """A replay produced different actions than an earlier replay of the same history prefix."""


# --------------------------------------------------------------------------------------------------
# JSON helpers (the wire format the SDK uses: json + the {"__class__","__module__","__data__"} envelope)
# --------------------------------------------------------------------------------------------------


def to_json(value: Any) -> str:
    """Serialize like the SDK's df_dumps in loose mode (custom objects via their to_json)."""
    return json.dumps(value, default=_serialize_custom_object)


def from_json(text: str | None) -> Any:
    """Decode a payload like the SDK's loose-mode decoder, without df_loads' one-time 'no expected_type' notice."""
    if text is None or text == "":
        return None
    return json.loads(text, object_hook=_deserialize_custom_object)


def _ts(when: datetime) -> str:
    return _as_utc(when).strftime(DATETIME_STRING_FORMAT)


def _as_utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _parse_time(text: str) -> datetime:
    return _as_utc(_parse_datetime(text))


# --------------------------------------------------------------------------------------------------
# History builder
# --------------------------------------------------------------------------------------------------


class History:
    """Builds the orchestration-trigger payload the durable extension sends to a Python orchestrator.

    Every method appends one event and returns ``self`` (chainable). EventIds of TaskScheduled /
    TimerCreated are allocated sequentially from 0, like the SDK's own sequence numbers (the orchestrator's
    n-th scheduled activity or timer has id n); pass ``event_id=`` to force one. Completion events refer to
    them through ``task_id`` / ``timer_id``. Events before the last OrchestratorStarted are sent with
    ``IsPlayed: true`` (they are the replayed part), the rest with ``IsPlayed: false``.
    """

    def __init__(
        self,
        input: Any = None,
        *,
        instance_id: str = "instance-0",
        name: str = "orchestrator",
        start_time: datetime = DEFAULT_START_TIME,
        upper_schema_version: int = 2,
        input_json: str | None = None,
        start: bool = True,
    ) -> None:
        self.instance_id = instance_id
        self.name = name
        self.upper_schema_version = upper_schema_version
        self.clock = _as_utc(start_time)
        self.input_json = input_json if input_json is not None else (None if input is None else to_json(input))
        self.events: list[dict[str, Any]] = []
        self.next_id = 0
        self.last_id: int | None = None
        if start:
            self.orchestrator_started().execution_started()

    # -- plumbing ---------------------------------------------------------------------------------
    def _event(self, event_type: int, event_id: int = -1, **fields: Any) -> History:
        event = {"EventType": event_type, "EventId": event_id, "IsPlayed": False, "Timestamp": _ts(self.clock)}
        event.update(fields)
        self.events.append(event)
        return self

    def _allocate(self, event_id: int | None) -> int:
        if event_id is None:
            event_id = self.next_id
        self.next_id = max(self.next_id, event_id + 1)
        self.last_id = event_id
        return event_id

    def allocate_id(self) -> int:
        """Reserve the next sequence number without writing an event (what the SDK does for retry timers)."""
        return self._allocate(None)

    def advance(self, delta: timedelta) -> History:
        self.clock += delta
        return self

    # -- events -----------------------------------------------------------------------------------
    def orchestrator_started(self, timestamp: datetime | None = None) -> History:
        """Start an episode; its timestamp becomes the orchestrator's current_utc_datetime."""
        if timestamp is not None:
            self.clock = max(self.clock, _as_utc(timestamp))
        return self._event(EventType.ORCHESTRATOR_STARTED)

    def execution_started(self, input: Any = ..., *, input_json: str | None = None) -> History:
        if input is not ...:
            self.input_json = None if input is None else to_json(input)
        if input_json is not None:
            self.input_json = input_json
        return self._event(
            EventType.EXECUTION_STARTED,
            Name=self.name,
            Version="",
            Input=self.input_json,
            OrchestrationInstance={"InstanceId": self.instance_id, "ExecutionId": uuid.uuid4().hex},
        )

    def task_scheduled(
        self, name: str, input: Any = None, *, event_id: int | None = None, input_json: str | None = None
    ) -> History:
        event_id = self._allocate(event_id)
        return self._event(
            EventType.TASK_SCHEDULED,
            event_id,
            Name=name,
            Version="",
            Input=input_json if input_json is not None else to_json(input),
        )

    def task_completed(self, task_id: int, result: Any = None, *, result_json: str | None = None) -> History:
        return self._event(
            EventType.TASK_COMPLETED,
            TaskScheduledId=task_id,
            Result=result_json if result_json is not None else to_json(result),
        )

    def task_failed(self, task_id: int, reason: str, details: str = "") -> History:
        return self._event(EventType.TASK_FAILED, TaskScheduledId=task_id, Reason=reason, Details=details)

    def timer_created(self, fire_at: datetime, *, event_id: int | None = None) -> History:
        event_id = self._allocate(event_id)
        return self._event(EventType.TIMER_CREATED, event_id, FireAt=_ts(fire_at))

    def timer_fired(self, timer_id: int, fire_at: datetime | None = None) -> History:
        fire_at = self.clock if fire_at is None else fire_at
        return self._event(EventType.TIMER_FIRED, TimerId=timer_id, FireAt=_ts(fire_at))

    def event_raised(self, name: str, input: Any = None, *, input_json: str | None = None) -> History:
        return self._event(
            EventType.EVENT_RAISED, Name=name, Input=input_json if input_json is not None else to_json(input)
        )

    def orchestrator_completed(self) -> History:
        return self._event(EventType.ORCHESTRATOR_COMPLETED)

    def episode(self, timestamp: datetime | None = None) -> History:
        """Close the current episode (if open) and start a new one: OrchestratorCompleted + OrchestratorStarted."""
        if self.events and self.events[-1]["EventType"] != EventType.ORCHESTRATOR_COMPLETED:
            self.orchestrator_completed()
        return self.orchestrator_started(timestamp)

    # -- output -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        last_started = max(
            (i for i, e in enumerate(self.events) if e["EventType"] == EventType.ORCHESTRATOR_STARTED), default=0
        )
        history = [dict(e, IsPlayed=i < last_started) for i, e in enumerate(self.events)]
        return {
            "history": history,
            "input": self.input_json,
            "instanceId": self.instance_id,
            "isReplaying": False,
            "parentInstanceId": None,
            "upperSchemaVersion": self.upper_schema_version,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def __len__(self) -> int:
        return len(self.events)


# --------------------------------------------------------------------------------------------------
# Replay through the SDK
# --------------------------------------------------------------------------------------------------


@dataclass
class ReplayResult:
    """The orchestrator state one replay returned (the JSON the worker hands back to the extension)."""

    state: dict[str, Any]
    actions: list[dict[str, Any]]  # atomic actions in scheduling order (WhenAll/WhenAny flattened away)
    raw_actions: list[Any]
    is_done: bool
    output: Any
    error: str | None
    custom_status: Any
    context: DurableOrchestrationContext | None
    warnings: list[str] = field(default_factory=list)

    @property
    def continued_as_new(self) -> bool:
        return self.is_done and any(a["actionType"] == 4 for a in self.actions)

    def of_type(self, type_name: str) -> list[dict[str, Any]]:
        return [a for a in self.actions if a["type"] == type_name]


def _flatten_actions(raw: Iterable[Any]) -> list[dict[str, Any]]:
    flat: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for child in node:
                walk(child)
        elif "compoundActions" in node:
            walk(node["compoundActions"])
        else:
            action = dict(node, type=ACTION_TYPES.get(node["actionType"], str(node["actionType"])))
            if isinstance(node.get("input"), str):
                action["inputValue"] = from_json(node["input"])
            flat.append(action)

    walk(list(raw))
    return flat


def _resolve_orchestrator(orchestrator: Any) -> tuple[Callable[..., Any], type | None, str]:
    """(user generator function, decorator input_type, function name) from any form an orchestrator takes:
    a DFApp/Blueprint FunctionBuilder, an indexed azure.functions Function, the handle that
    ``Orchestrator.create`` returns, or a plain generator function."""
    name = None
    target = orchestrator
    if hasattr(target, "_function") and hasattr(target._function, "get_user_function"):  # FunctionBuilder
        target = target._function
    if hasattr(target, "get_user_function"):  # azure.functions Function
        name = target.get_function_name()
        target = target.get_user_function()
    input_type = getattr(target, "_df_input_type", None)
    inner = getattr(target, "orchestrator_function", None)  # Orchestrator.create's handle
    fn = inner if inner is not None else target
    return fn, input_type, name or getattr(target, "__name__", None) or fn.__name__


def replay(
    orchestrator: Any, history: History | Mapping[str, Any] | str, *, warnings_mode: str = "record"
) -> ReplayResult:
    """Run ``orchestrator`` over ``history`` with the SDK's replay engine and return the parsed state.

    Mirrors the worker's orchestration-trigger path (``Orchestrator.create``'s handle): build the context
    with ``DurableOrchestrationContext.from_json``, propagate the decorator's ``input_type``, then
    ``Orchestrator(fn).handle(context)``. When the orchestrator raises, the SDK raises
    ``Exception("<message>\\n\\n$OutOfProcData$:<state json>")``; that state is parsed like the extension does.

    ``warnings_mode="record"`` (default) isolates the SDK from the test runner's warning filters, as in
    production where a warning is only logged, and returns the warnings in ``ReplayResult.warnings``;
    ``"error"`` lets them propagate (under ``-W error`` they then fail the orchestration, as an exception).
    """
    fn, input_type, _ = _resolve_orchestrator(orchestrator)
    if isinstance(history, History):
        payload = history.to_json()
    elif isinstance(history, str):
        payload = history
    else:
        payload = json.dumps(history)

    captured: list[warnings.WarningMessage] = []
    context: DurableOrchestrationContext | None = None
    with warnings.catch_warnings(record=warnings_mode == "record") as recorded:
        if warnings_mode == "record":
            warnings.simplefilter("always")
        try:
            context = DurableOrchestrationContext.from_json(payload)
            context._input_expected_type = input_type
            state = json.loads(Orchestrator(fn).handle(context))
        except Exception as exc:  # the orchestrator failed (or the SDK did); recover the state it reported
            message = str(exc)
            if OUT_OF_PROC_MARKER in message:
                state = json.loads(message.split(OUT_OF_PROC_MARKER, 1)[1])
            else:
                state = {"isDone": False, "actions": [], "error": f"{type(exc).__name__}: {message}"}
        if recorded is not None:
            captured = list(recorded)

    raw_actions = state.get("actions", [])
    return ReplayResult(
        state=state,
        actions=_flatten_actions(raw_actions),
        raw_actions=raw_actions,
        is_done=bool(state.get("isDone")),
        output=state.get("output"),
        error=state.get("error"),
        custom_status=state.get("customStatus"),
        context=context,
        warnings=[f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in captured],
    )


# --------------------------------------------------------------------------------------------------
# Function discovery on a DFApp / Blueprint
# --------------------------------------------------------------------------------------------------


def _functions_of(app: Any) -> list[Any]:
    return [fb._function for fb in getattr(app, "_function_builders", [])]


def find_function(app: Any, name: str) -> Any:
    """The azure.functions ``Function`` called ``name`` in a DFApp or Blueprint (indexed, not built)."""
    for function in _functions_of(app):
        if function.get_function_name() == name:
            return function
    raise KeyError(f"no function {name!r} in {app!r}")


def activities_of(app: Any) -> dict[str, Callable[[Any], Any]]:
    """{activity name: user function} for every ``activity_trigger`` function of a DFApp or Blueprint."""
    found: dict[str, Callable[[Any], Any]] = {}
    for function in _functions_of(app):
        trigger = function.get_trigger()
        if trigger is not None and trigger.get_binding_name() == "activityTrigger":
            found[function.get_function_name()] = function.get_user_function()
    return found


# --------------------------------------------------------------------------------------------------
# The fake durable host
# --------------------------------------------------------------------------------------------------

TERMINAL = ("Completed", "Failed", "Terminated")


@dataclass
class _Work:
    kind: str  # "activity" | "timer"
    event_id: int
    name: str = ""
    input_json: str | None = None
    fire_at: datetime | None = None
    retry: dict[str, Any] | None = None  # {"options": {...}, "attempt": n, "name":, "input_json":}
    retry_timer: bool = False


@dataclass
class InstanceState:
    """What the host keeps per orchestration instance (the status the HTTP API reports, plus counters)."""

    instance_id: str
    name: str
    input_json: str | None
    runtime_status: str = "Pending"
    output: Any = None
    custom_status: Any = None
    error: str | None = None
    created_time: datetime = DEFAULT_START_TIME
    last_updated_time: datetime = DEFAULT_START_TIME
    generation: int = 1
    history_lengths: list[int] = field(default_factory=list)  # one entry per generation, current one last
    past_histories: list[list[dict[str, Any]]] = field(default_factory=list)
    activity_executions: int = 0
    replays: int = 0
    warnings: list[str] = field(default_factory=list)
    step_limit_hit: bool = False
    paused_timer: int | None = None  # the timer advance() stopped in front of
    # current generation
    history: History | None = None
    known_actions: list[dict[str, Any]] = field(default_factory=list)
    action_ids: list[int | None] = field(default_factory=list)
    activities: deque[_Work] = field(default_factory=deque)
    timers: dict[int, _Work] = field(default_factory=dict)
    waiters: dict[str, int] = field(default_factory=dict)
    pending_events: deque[tuple[str, str | None]] = field(default_factory=deque)
    last_result: ReplayResult | None = None

    @property
    def input(self) -> Any:
        return from_json(self.input_json)

    @property
    def generations(self) -> int:
        return self.generation

    @property
    def events(self) -> list[dict[str, Any]]:
        return self.history.to_dict()["history"] if self.history is not None else []

    def to_status_json(self) -> dict[str, Any]:
        """The JSON the extension's GET /instances/{id} returns (what DurableOrchestrationStatus parses)."""
        return {
            "name": self.name,
            "instanceId": self.instance_id,
            "runtimeStatus": self.runtime_status,
            "input": self.input,
            "customStatus": self.custom_status,
            "output": self.output,
            "createdTime": self.created_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "lastUpdatedTime": self.last_updated_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


class DurableHost:
    """Plays the durable extension for one orchestrator function and a set of activities.

    Every episode appends ``OrchestratorStarted`` + one new event to the instance's history, replays the
    orchestrator through the SDK, appends ``TaskScheduled``/``TimerCreated`` for the new actions it returned,
    then ``OrchestratorCompleted``. Work is then picked in this order: scheduled activities (run for real,
    FIFO), queued external events the orchestrator waits for, the earliest pending timer (the virtual clock
    jumps to its fire time). One completion per episode, so sequence numbers stay in step with the SDK's.
    """

    def __init__(
        self,
        orchestrator: Any,
        activities: Mapping[str, Callable[[Any], Any]] | None = None,
        *,
        name: str | None = None,
        start_time: datetime = DEFAULT_START_TIME,
        max_steps: int = 1000,
        upper_schema_version: int = 2,
        warnings_mode: str = "record",
    ) -> None:
        self.orchestrator = orchestrator
        _, _, resolved_name = _resolve_orchestrator(orchestrator)
        self.name = name or resolved_name
        self.activities = dict(activities or {})
        self.clock = _as_utc(start_time)
        self.max_steps = max_steps
        self.upper_schema_version = upper_schema_version
        self.warnings_mode = warnings_mode
        self.instances: dict[str, InstanceState] = {}
        self.lock = threading.RLock()

    @classmethod
    def from_app(cls, app: Any, orchestrator_name: str, **kwargs: Any) -> DurableHost:
        """A host for the orchestrator ``orchestrator_name`` of a DFApp/Blueprint, with all its activities."""
        return cls(find_function(app, orchestrator_name), activities_of(app), **kwargs)

    # -- public API -------------------------------------------------------------------------------
    def start(
        self, input: Any = None, *, instance_id: str | None = None, run: bool = True, input_json: str | None = None
    ) -> str:
        """Create an instance (Pending); with ``run=True`` run it until it completes, fails or only waits."""
        with self.lock:
            instance_id = instance_id or uuid.uuid4().hex
            state = InstanceState(
                instance_id=instance_id,
                name=self.name,
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

    def run(self, instance_id: str, max_steps: int | None = None) -> InstanceState:
        """Run episodes until the instance is terminal, idle (waiting for an event not yet raised) or the
        step limit is hit (then ``step_limit_hit`` is set and the instance stays Running)."""
        return self._drive(instance_id, max_steps or self.max_steps, stop_at_timers=None)

    def advance(self, instance_id: str, max_steps: int = 1) -> InstanceState:
        """Run until the orchestrator waits on a timer for the ``max_steps``-th time, without firing it.

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

    def advance_clock(self, delta: timedelta) -> None:
        self.clock += delta

    # -- engine -----------------------------------------------------------------------------------
    def _drive(self, instance_id: str, max_steps: int, stop_at_timers: int | None) -> InstanceState:
        with self.lock:
            state = self.instances[instance_id]
            timer_waits = 0
            for _ in range(max_steps):
                if state.runtime_status in TERMINAL:
                    return state
                if state.history is None:  # Pending: first episode of generation 1
                    state.runtime_status = "Running"
                    self._start_generation(state)
                    continue
                work = self._next_work(state)
                if work is None:
                    return state  # idle: waiting for an external event nobody raised yet
                if (
                    work[0] == "timer"
                    and stop_at_timers is not None
                    and not work[1].retry_timer  # retry back-off timers are the host's business, not a stop
                    and state.paused_timer != work[1].event_id
                ):
                    timer_waits += 1
                    if timer_waits >= stop_at_timers:
                        state.paused_timer = work[1].event_id
                        return state
                state.paused_timer = None
                self._deliver(state, work)
            state.step_limit_hit = True
            return state

    def _start_generation(self, state: InstanceState) -> None:
        state.history = History(
            instance_id=state.instance_id,
            name=state.name,
            start_time=self.clock,
            upper_schema_version=self.upper_schema_version,
            input_json=state.input_json,
            start=False,
        )
        state.history.orchestrator_started(self.clock).execution_started(input_json=state.input_json)
        state.history_lengths.append(len(state.history))
        self._replay_and_schedule(state, followups=[])

    def _clear_work(self, state: InstanceState) -> None:
        state.activities.clear()
        state.timers.clear()
        state.waiters.clear()

    def _next_work(self, state: InstanceState) -> tuple[str, Any] | None:
        if state.activities:
            return ("activity", state.activities[0])
        for index, (name, _) in enumerate(state.pending_events):
            if state.waiters.get(name, 0) > 0:
                return ("event", index)
        live = [w for w in state.timers.values() if not self._timer_cancelled(state, w)]
        if live:
            return ("timer", min(live, key=lambda w: (w.fire_at, w.event_id)))
        return None

    @staticmethod
    def _timer_cancelled(state: InstanceState, work: _Work) -> bool:
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
        followups: list[tuple[str, _Work]] = []
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
                followups.append(("retry-activity", item))
        self._replay_and_schedule(state, followups)

    def _run_activity(self, state: InstanceState, work: _Work) -> tuple[bool, Any]:
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

    def _replay_and_schedule(self, state: InstanceState, followups: list[tuple[str, _Work]]) -> None:
        history = state.history
        assert history is not None
        result = replay(self.orchestrator, history, warnings_mode=self.warnings_mode)
        state.replays += 1
        state.last_result = result
        state.warnings.extend(w for w in result.warnings if w not in state.warnings)
        duplicates = [w for w in result.warnings if "Potential duplicate Task completion" in w]
        if duplicates:  # the SDK saw a completion for a task it never scheduled: the history is wrong
            raise DurableHostError(f"history out of step with the SDK: {duplicates[0]}\n{history.to_json()}")
        state.last_updated_time = self.clock
        if result.custom_status is not None:
            state.custom_status = result.custom_status

        # what the SDK allocated while processing the new event (retry timers / rescheduled attempts)
        for what, item in followups:
            if what == "retry-timer":
                delay = timedelta(milliseconds=item.retry["options"]["firstRetryIntervalInMilliseconds"])
                history.timer_created(self.clock + delay)
                state.timers[history.last_id] = _Work(
                    "timer", history.last_id, fire_at=self.clock + delay, retry=item.retry, retry_timer=True
                )
            else:
                retry = dict(item.retry, attempt=item.retry["attempt"] + 1)
                history.task_scheduled(retry["name"], input_json=retry["input_json"])
                state.activities.append(
                    _Work("activity", history.last_id, retry["name"], retry["input_json"], retry=retry)
                )

        # determinism: the actions already acted on must come back identical
        known = len(state.known_actions)
        for before, now in zip(state.known_actions, result.actions[:known], strict=False):
            if _comparable(before) != _comparable(now):
                self._fail(
                    state,
                    f"Non-deterministic orchestrator: expected {_comparable(before)}, "
                    f"replay produced {_comparable(now)}",
                )
                return
        if len(result.actions) < known and not result.error:
            self._fail(state, f"Non-deterministic orchestrator: {known} actions before, {len(result.actions)} now")
            return
        new_actions = result.actions[known:]
        continue_input: str | None = None
        for action in new_actions:
            event_id = self._schedule(state, action)
            if action["type"] == "ContinueAsNew":
                continue_input = action.get("input")
            state.known_actions.append(action)
            state.action_ids.append(event_id)
        # refresh isCanceled flags of timers acted on earlier
        for index, action in enumerate(result.actions[:known]):
            state.known_actions[index] = action

        if result.error:
            history._event(EventType.EXECUTION_FAILED, Reason=result.error)
            history.orchestrator_completed()
            state.history_lengths[-1] = len(history)
            self._finish(state, "Failed", error=result.error, output=result.error)
        elif result.is_done and result.continued_as_new:
            history._event(EventType.CONTINUE_AS_NEW, Input=continue_input)
            history.orchestrator_completed()
            state.history_lengths[-1] = len(history)
            self._continue_as_new(state, continue_input)
        elif result.is_done:
            history._event(EventType.EXECUTION_COMPLETED, Result=to_json(result.output))
            history.orchestrator_completed()
            state.history_lengths[-1] = len(history)
            self._finish(state, "Completed", output=result.output)
        else:
            history.orchestrator_completed()
            state.history_lengths[-1] = len(history)

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
                _Work("activity", history.last_id, action["functionName"], action.get("input"), retry=retry)
            )
            return history.last_id
        if kind == "CreateTimer":
            fire_at = _parse_time(action["fireAt"])
            history.timer_created(fire_at)
            state.timers[history.last_id] = _Work("timer", history.last_id, fire_at=fire_at)
            return history.last_id
        if kind == "WaitForExternalEvent":
            name = action["externalEventName"]
            state.waiters[name] = state.waiters.get(name, 0) + 1
            return None
        if kind == "ContinueAsNew":
            return history.allocate_id()
        raise DurableHostError(f"DurableHost does not support {kind} actions: {action}")

    def _finish(self, state: InstanceState, status: str, *, output: Any = None, error: str | None = None) -> None:
        state.runtime_status = status
        state.output = output
        state.error = error
        state.last_updated_time = self.clock
        self._clear_work(state)

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


# --------------------------------------------------------------------------------------------------
# HTTP: the extension's API as a loopback stub, the client binding, calling an indexed starter
# --------------------------------------------------------------------------------------------------


def run_async(awaitable: Any) -> Any:
    """Run a coroutine on a fresh event loop, then close the SDK's shared aiohttp session.

    ``DurableOrchestrationClient`` keeps one module-level aiohttp ClientSession; it is tied to the loop that
    created it, and an unclosed session warns (ResourceWarning) when garbage-collected."""

    async def main() -> Any:
        try:
            return await awaitable
        finally:
            await _df_http_utils._close_session()

    return asyncio.run(main())


class DurableRpcStub:
    """ThreadingHTTPServer on 127.0.0.1 answering the extension's HTTP API from a DurableHost.

    ``on_start`` / ``on_event`` say what happens after start_new / raise_event: "run" (run the instance until
    it completes or only waits for an event), "advance" (until it waits on a timer), "none" (leave it Pending /
    just queue the event). Requests are recorded in ``requests`` as (method, path-with-query).
    """

    TASK_HUB = "TestHubName"
    CODE = "stub-code"

    def __init__(self, host: DurableHost, *, on_start: str = "run", on_event: str = "run") -> None:
        self.host = host
        self.on_start = on_start
        self.on_event = on_event
        self.requests: list[tuple[str, str]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stub._handle(self, "GET")

            def do_POST(self) -> None:
                stub._handle(self, "POST")

            def do_DELETE(self) -> None:
                stub._handle(self, "DELETE")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, name="durable-rpc-stub", daemon=True
        )
        self.thread.start()

    # -- lifecycle --------------------------------------------------------------------------------
    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> DurableRpcStub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the client binding -----------------------------------------------------------------------
    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def rpc_base_url(self) -> str:
        return f"{self.origin}/durabletask/"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/runtime/webhooks/durabletask"

    def client_binding(self) -> dict[str, Any]:
        base, hub, code = self.base_url, self.TASK_HUB, self.CODE
        common = f"taskHub={hub}&connection=Storage&code={code}"
        return {
            "taskHubName": hub,
            "creationUrls": {
                "createNewInstancePostUri": f"{base}/orchestrators/{{functionName}}[/{{instanceId}}]?code={code}",
                "createAndWaitOnNewInstancePostUri": f"{base}/orchestrators/{{functionName}}[/{{instanceId}}]"
                f"?timeout={{timeoutInSeconds}}&pollingInterval="
                f"{{intervalInSeconds}}&code={code}",
            },
            "managementUrls": {
                "id": "INSTANCEID",
                "statusQueryGetUri": f"{base}/instances/INSTANCEID?{common}",
                "sendEventPostUri": f"{base}/instances/INSTANCEID/raiseEvent/{{eventName}}?{common}",
                "terminatePostUri": f"{base}/instances/INSTANCEID/terminate?reason={{text}}&{common}",
                "rewindPostUri": f"{base}/instances/INSTANCEID/rewind?reason={{text}}&{common}",
                "purgeHistoryDeleteUri": f"{base}/instances/INSTANCEID?{common}",
                "restartPostUri": f"{base}/instances/INSTANCEID/restart?{common}",
                "suspendPostUri": f"{base}/instances/INSTANCEID/suspend?reason={{text}}&{common}",
                "resumePostUri": f"{base}/instances/INSTANCEID/resume?reason={{text}}&{common}",
            },
            "baseUrl": base,
            "requiredQueryStringParameters": f"code={code}",
            "rpcBaseUrl": self.rpc_base_url,
            "httpBaseUrl": "",
            "maxGrpcMessageSizeInBytes": 0,
            "grpcHttpClientTimeout": "00:01:40",
        }

    def client_binding_json(self) -> str:
        """The string the Functions host passes to a ``durable_client_input`` binding."""
        return json.dumps(self.client_binding())

    def management_payload(self, instance_id: str) -> dict[str, str]:
        payload = {"id": instance_id}
        for key, url in self.client_binding()["managementUrls"].items():
            if key != "id":
                payload[key] = url.replace("INSTANCEID", instance_id)
        return payload

    # -- request handling -------------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        self.requests.append((method, handler.path))
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        try:
            status, payload = self._route(method, handler.path, body)
        except Exception as exc:  # report harness bugs as 500s instead of hanging the client
            status, payload = 500, {"Message": "stub error", "ExceptionMessage": f"{type(exc).__name__}: {exc}"}
        data = b"" if payload is None else json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _route(self, method: str, raw_path: str, body: bytes) -> tuple[int, Any]:
        url = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        path = url.path
        for prefix in ("/durabletask/", "/runtime/webhooks/durabletask/"):
            if path.startswith(prefix):
                path = path[len(prefix) :]
                break
        else:
            return 404, {"Message": f"not a durable API path: {url.path}"}
        parts = [unquote(p) for p in path.split("/")]
        host = self.host
        # a JSON body; the SDK sends its already-serialized payload as a JSON string
        parsed = json.loads(body) if body.strip() else None

        if method == "POST" and parts[0] == "orchestrators" and len(parts) in (2, 3):
            name = parts[1]
            if name != host.name:
                return 400, {
                    "Message": "One or more of the arguments submitted is incorrect",
                    "ExceptionMessage": f"The function '{name}' doesn't exist, is disabled, or is not an "
                    "orchestrator function. Additional info: No orchestrator functions "
                    "are currently registered!",
                    "ExceptionType": "System.ArgumentException",
                }
            instance_id = parts[2] if len(parts) == 3 and parts[2] else None
            input_json = parsed if isinstance(parsed, str) or parsed is None else json.dumps(parsed)
            instance_id = host.start(instance_id=instance_id, input_json=input_json, run=False)
            self._after(instance_id, self.on_start)
            return 202, self.management_payload(instance_id)

        if parts[0] != "instances":
            return 501, {"Message": f"DurableRpcStub does not implement {method} {url.path}"}
        instance_id = parts[1] if len(parts) > 1 else ""
        state = host.instances.get(instance_id)

        if method == "GET" and len(parts) == 2:
            if not instance_id:
                return 200, [s.to_status_json() for s in host.instances.values()]
            if state is None:
                return 404, None
            return (202 if state.runtime_status in ("Pending", "Running") else 200), state.to_status_json()

        if method == "DELETE" and len(parts) == 2:
            if state is None:
                return 404, None
            del host.instances[instance_id]
            return 200, {"instancesDeleted": 1}

        if method == "POST" and len(parts) == 4 and parts[2] == "raiseEvent":
            if state is None:
                return 404, None
            if state.runtime_status in TERMINAL:
                return 410, None
            data_json = parsed if isinstance(parsed, str) else json.dumps(parsed)
            host.raise_event(instance_id, parts[3], data_json=data_json)
            self._after(instance_id, self.on_event)
            return 202, None

        if method == "POST" and len(parts) == 3 and parts[2] == "terminate":
            if state is None:
                return 404, None
            if state.runtime_status in TERMINAL:
                return 410, None
            host.terminate(instance_id, query.get("reason", ""))
            return 202, None

        return 501, {"Message": f"DurableRpcStub does not implement {method} {url.path}"}

    def _after(self, instance_id: str, mode: str) -> None:
        if mode == "run":
            self.host.run(instance_id)
        elif mode == "advance":
            self.host.advance(instance_id)
        elif mode != "none":
            raise ValueError(f"unknown mode {mode!r}")


def call_http_function(
    function: Any, req: func.HttpRequest, client_binding_json: str, *, app: Any = None, **kwargs: Any
) -> func.HttpResponse:
    """Invoke an indexed DFApp HTTP function with a durable client binding the way the worker does.

    ``function`` is a FunctionBuilder, an azure.functions Function, or a function name (with ``app=``).
    ``durable_client_input`` replaced the user function with an ``async`` wrapper that takes the client
    binding as its JSON string and builds ``DurableOrchestrationClient`` itself; it is called with
    ``{<http trigger name>: req, <client name>: client_binding_json}`` and run with asyncio if it returns
    an awaitable (the SDK's aiohttp session is closed afterwards).
    """
    if isinstance(function, str):
        function = find_function(app, function)
    if hasattr(function, "_function") and hasattr(function._function, "get_user_function"):
        function = function._function
    trigger = function.get_trigger()
    client_names = [b.name for b in function.get_bindings() if b.type == "durableClient"]
    arguments = dict(kwargs)
    arguments[trigger.name if trigger is not None else "req"] = req
    arguments[client_names[0] if client_names else "client"] = client_binding_json
    result = function.get_user_function()(**arguments)
    if inspect.isawaitable(result):
        result = run_async(result)
    return result
