"""One replay through the SDK: ``replay(orchestrator, history)`` runs an orchestrator over a history with the
SDK's own engine and returns a ``ReplayResult``; ``find_function`` / ``activities_of`` / ``orchestrators_of``
find functions on a DFApp or Blueprint, ``resolve_orchestrator`` the user generator behind any form an
orchestrator takes."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from azure.durable_functions.models.DurableOrchestrationContext import DurableOrchestrationContext
from azure.durable_functions.orchestrator import Orchestrator

from tests.fakes.durable.history import History
from tests.fakes.durable.wire import from_json

__all__ = [
    "ACTION_TYPES",
    "OUT_OF_PROC_MARKER",
    "ReplayResult",
    "activities_of",
    "find_function",
    "orchestrators_of",
    "replay",
    "resolve_orchestrator",
]

OUT_OF_PROC_MARKER = "\n\n$OutOfProcData$:"

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


def resolve_orchestrator(orchestrator: Any) -> tuple[Callable[..., Any], type | None, str]:
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
    fn, input_type, _ = resolve_orchestrator(orchestrator)
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


# -- function discovery on a DFApp / Blueprint ------------------------------------------------------
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


def orchestrators_of(app: Any) -> dict[str, Any]:
    """{orchestrator name: indexed function} for every ``orchestration_trigger`` function of a DFApp or Blueprint
    (the form ``replay`` and ``DurableHost`` take, decorator ``input_type`` included)."""
    found: dict[str, Any] = {}
    for function in _functions_of(app):
        trigger = function.get_trigger()
        if trigger is not None and trigger.get_binding_name() == "orchestrationTrigger":
            found[function.get_function_name()] = function
    return found
