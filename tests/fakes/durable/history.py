"""The orchestration-trigger payload: ``History`` builds the event list the durable extension sends to a Python
orchestrator, ``EventType`` names the event types it uses."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from tests.fakes.durable.wire import DEFAULT_START_TIME, as_utc, format_time, to_json

__all__ = ["EventType", "History"]


class EventType:
    """HistoryEventType values (azure.durable_functions.models.history.HistoryEventType)."""

    EXECUTION_STARTED = 0
    EXECUTION_COMPLETED = 1
    EXECUTION_FAILED = 2
    EXECUTION_TERMINATED = 3
    TASK_SCHEDULED = 4
    TASK_COMPLETED = 5
    TASK_FAILED = 6
    SUB_ORCHESTRATION_INSTANCE_CREATED = 7
    SUB_ORCHESTRATION_INSTANCE_COMPLETED = 8
    SUB_ORCHESTRATION_INSTANCE_FAILED = 9
    TIMER_CREATED = 10
    TIMER_FIRED = 11
    ORCHESTRATOR_STARTED = 12
    ORCHESTRATOR_COMPLETED = 13
    EVENT_RAISED = 15
    CONTINUE_AS_NEW = 16


class History:
    """Builds the orchestration-trigger payload the durable extension sends to a Python orchestrator.

    Every method appends one event and returns ``self`` (chainable). EventIds of TaskScheduled /
    SubOrchestrationInstanceCreated / TimerCreated are allocated sequentially from 0, like the SDK's own
    sequence numbers (the orchestrator's n-th scheduled activity, sub-orchestration or timer has id n); pass
    ``event_id=`` to force one. Completion events refer to them through ``task_id`` / ``timer_id``.

    A sub-orchestration's history names its parent: ``parent_instance_id`` becomes the payload's
    ``parentInstanceId`` (what ``context.parent_instance_id`` reads) and ``parent_instance`` the
    ExecutionStarted event's ``ParentInstance`` (the extension writes it; the SDK does not read it). Events before the last OrchestratorStarted are sent with
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
        execution_id: str | None = None,
        parent_instance_id: str | None = None,
        parent_instance: dict[str, Any] | None = None,
    ) -> None:
        self.instance_id = instance_id
        self.execution_id = execution_id or uuid.uuid4().hex
        self.parent_instance_id = parent_instance_id
        self.parent_instance = parent_instance
        self.name = name
        self.upper_schema_version = upper_schema_version
        self.clock = as_utc(start_time)
        self.input_json = input_json if input_json is not None else (None if input is None else to_json(input))
        self.events: list[dict[str, Any]] = []
        self.next_id = 0
        self.last_id: int | None = None
        if start:
            self.orchestrator_started().execution_started()

    # -- plumbing ---------------------------------------------------------------------------------
    def _event(self, event_type: int, event_id: int = -1, **fields: Any) -> History:
        event = {"EventType": event_type, "EventId": event_id, "IsPlayed": False, "Timestamp": format_time(self.clock)}
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
            self.clock = max(self.clock, as_utc(timestamp))
        return self._event(EventType.ORCHESTRATOR_STARTED)

    def execution_started(self, input: Any = ..., *, input_json: str | None = None) -> History:
        if input is not ...:
            self.input_json = None if input is None else to_json(input)
        if input_json is not None:
            self.input_json = input_json
        fields: dict[str, Any] = {}
        if self.parent_instance is not None:
            fields["ParentInstance"] = self.parent_instance
        return self._event(
            EventType.EXECUTION_STARTED,
            Name=self.name,
            Version="",
            Input=self.input_json,
            OrchestrationInstance={"InstanceId": self.instance_id, "ExecutionId": self.execution_id},
            **fields,
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

    def sub_orchestration_created(
        self,
        name: str,
        instance_id: str,
        input: Any = None,
        *,
        event_id: int | None = None,
        input_json: str | None = None,
        version: str = "",
    ) -> History:
        """SubOrchestrationInstanceCreated: what the extension writes for a CallSubOrchestrator(WithRetry) action.
        The SDK skips this event; its EventId is the sequence number the completion's TaskScheduledId names."""
        event_id = self._allocate(event_id)
        return self._event(
            EventType.SUB_ORCHESTRATION_INSTANCE_CREATED,
            event_id,
            Name=name,
            Version=version,
            InstanceId=instance_id,
            Input=input_json if input_json is not None else to_json(input),
        )

    def sub_orchestration_completed(
        self, task_id: int, result: Any = None, *, result_json: str | None = None
    ) -> History:
        return self._event(
            EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED,
            TaskScheduledId=task_id,
            Result=result_json if result_json is not None else to_json(result),
        )

    def sub_orchestration_failed(self, task_id: int, reason: str, details: str = "") -> History:
        """The SDK raises ``Exception(f"{Reason} \\n {Details}")`` from the parent's ``yield``."""
        return self._event(
            EventType.SUB_ORCHESTRATION_INSTANCE_FAILED, TaskScheduledId=task_id, Reason=reason, Details=details
        )

    def timer_created(self, fire_at: datetime, *, event_id: int | None = None) -> History:
        event_id = self._allocate(event_id)
        return self._event(EventType.TIMER_CREATED, event_id, FireAt=format_time(fire_at))

    def timer_fired(self, timer_id: int, fire_at: datetime | None = None) -> History:
        fire_at = self.clock if fire_at is None else fire_at
        return self._event(EventType.TIMER_FIRED, TimerId=timer_id, FireAt=format_time(fire_at))

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
            "parentInstanceId": self.parent_instance_id,
            "upperSchemaVersion": self.upper_schema_version,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def __len__(self) -> int:
        return len(self.events)
