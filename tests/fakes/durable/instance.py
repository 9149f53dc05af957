"""What the fake durable host keeps per orchestration instance: ``InstanceState`` (the status the HTTP API
reports, the current generation's history and pending work, its parent and children, counters tests read),
``Work`` (one piece of pending work), and ``TERMINAL``, the runtime statuses that end an instance."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tests.fakes.durable.history import History
from tests.fakes.durable.replay import ReplayResult
from tests.fakes.durable.wire import DEFAULT_START_TIME, from_json

__all__ = ["TERMINAL", "InstanceState", "Work"]

TERMINAL = ("Completed", "Failed", "Terminated")


@dataclass
class Work:
    """One piece of pending work: an activity to run, a timer to fire, a sub-orchestration running
    ("sub_orchestration") or its outcome waiting to be delivered to the parent ("child")."""

    kind: str  # "activity" | "timer" | "sub_orchestration" | "child"
    event_id: int
    name: str = ""
    input_json: str | None = None
    fire_at: datetime | None = None
    # {"options": {...}, "attempt": n, "name":, "input_json":, "kind": "activity" | "sub_orchestration",
    #  "instance_id": (sub-orchestrations: the id the orchestrator asked for, or None), "version":}
    retry: dict[str, Any] | None = None
    retry_timer: bool = False
    instance_id: str | None = None  # sub-orchestrations: the child's instance id
    result_json: str | None = None  # "child": the child's output (SubOrchestrationInstanceCompleted.Result)
    failure: tuple[str, str] | None = None  # "child": (Reason, Details) of SubOrchestrationInstanceFailed


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
    paused_timer: tuple[str, int] | None = None  # (instance id, timer id) advance() stopped in front of (roots)
    # sub-orchestrations: the parent (instance, execution, TaskScheduledId) and the children this instance created
    parent_instance_id: str | None = None
    parent_execution_id: str | None = None
    parent_task_id: int | None = None
    children: list[str] = field(default_factory=list)  # every child instance id, all generations, in creation order
    # current generation
    execution_id: str = ""
    history: History | None = None
    known_actions: list[dict[str, Any]] = field(default_factory=list)
    action_ids: list[int | None] = field(default_factory=list)
    activities: deque[Work] = field(default_factory=deque)
    timers: dict[int, Work] = field(default_factory=dict)
    waiters: dict[str, int] = field(default_factory=dict)
    pending_events: deque[tuple[str, str | None]] = field(default_factory=deque)
    sub_orchestrations: dict[int, Work] = field(default_factory=dict)  # running children by TaskScheduledId
    child_results: deque[Work] = field(default_factory=deque)  # children's outcomes not yet delivered
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
