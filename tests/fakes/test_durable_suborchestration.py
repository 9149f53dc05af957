"""Sub-orchestrations in the fake durable host (tests/fakes/durable/): call_sub_orchestrator(_with_retry) replayed by
the SDK's real engine, the child run as an instance of its own, its end delivered to the parent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import azure.durable_functions as df
import pytest

import poll_aml_durable
from tests.fakes.durable.client import run_async
from tests.fakes.durable.history import EventType, History
from tests.fakes.durable.host import DurableHost, DurableHostError
from tests.fakes.durable.replay import orchestrators_of, replay
from tests.fakes.durable.rpc import DurableRpcStub
from tests.fakes.durable.wire import DEFAULT_START_TIME

T0 = DEFAULT_START_TIME
RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=10_000, max_number_of_attempts=3)

FAILURES: dict[str, int] = {}  # child key -> how many more attempts of flaky_child fail


@pytest.fixture(autouse=True)
def reset_failures() -> Iterator[None]:
    FAILURES.clear()
    yield
    FAILURES.clear()


# ------------------------------------------------------------------------------------------------
# Small orchestrators (generators on the SDK's real context) and activities
# ------------------------------------------------------------------------------------------------


def double(n: int) -> int:
    return n * 2


def scorer(context: df.DurableOrchestrationContext):
    """Child: one activity, its result returned (with who called it)."""
    n = context.get_input()
    doubled = yield context.call_activity("double", n)
    return {"doubled": doubled, "parent": context.parent_instance_id, "me": context.instance_id}


def scoring_parent(context: df.DurableOrchestrationContext):
    cfg = context.get_input()
    child = yield context.call_sub_orchestrator("scorer", cfg["n"], cfg.get("child_id"))
    return {"child": child}


def broken_child(context: df.DurableOrchestrationContext):
    yield context.call_activity("double", 1)
    raise ValueError(f"child cannot cope with {context.get_input()!r}")


def forgiving_parent(context: df.DurableOrchestrationContext):
    try:
        result = yield context.call_sub_orchestrator("broken_child", "bad input")
    except Exception as exc:
        return {"fallback": True, "error": str(exc)}
    return {"fallback": False, "result": result}


def flaky_child(context: df.DurableOrchestrationContext):
    key = context.get_input()
    doubled = yield context.call_activity("flaky_double", key)
    return doubled


def flaky_double(key: str) -> int:
    if FAILURES.get(key, 0) > 0:
        FAILURES[key] -= 1
        raise RuntimeError(f"backend unavailable for {key}")
    return len(key) * 2


def retrying_parent(context: df.DurableOrchestrationContext):
    cfg = context.get_input()
    try:
        result = yield context.call_sub_orchestrator_with_retry("flaky_child", RETRY, cfg["key"], cfg.get("child_id"))
    except Exception as exc:
        return {"gave_up": str(exc)}
    return {"result": result}


def sleepy_child(context: df.DurableOrchestrationContext):
    """Child: waits an hour per generation, continues as new until it has slept ``total`` times."""
    cfg = context.get_input()
    yield context.create_timer(context.current_utc_datetime + timedelta(hours=1))
    slept = cfg["slept"] + 1
    if slept < cfg["total"]:
        context.continue_as_new({**cfg, "slept": slept})
        return None
    return {"slept": slept, "woke_at": context.current_utc_datetime.isoformat()}


def sleepy_parent(context: df.DurableOrchestrationContext):
    result = yield context.call_sub_orchestrator("sleepy_child", {"slept": 0, "total": context.get_input()})
    return {"child": result, "now": context.current_utc_datetime.isoformat()}


def fan_out_parent(context: df.DurableOrchestrationContext):
    ns = context.get_input()
    results = yield context.task_all([context.call_sub_orchestrator("scorer", n) for n in ns])
    return [r["doubled"] for r in results]


def waiting_child(context: df.DurableOrchestrationContext):
    approval = yield context.wait_for_external_event("approve")
    return {"approved_by": approval}


def approving_parent(context: df.DurableOrchestrationContext):
    answer = yield context.call_sub_orchestrator("waiting_child", None, "approval-1")
    return answer


def racing_parent(context: df.DurableOrchestrationContext):
    """The parent's own 30-minute timer runs alongside a child sleeping an hour (the SDK schedules a task
    only when it is yielded: task_any schedules both at once)."""
    child = context.call_sub_orchestrator("sleepy_child", {"slept": 0, "total": 1}, "sleeper")
    mine = context.create_timer(context.current_utc_datetime + timedelta(minutes=30))
    first = yield context.task_any([child, mine])
    assert first is mine
    woke = context.current_utc_datetime.isoformat()
    result = yield child
    return {"parent_woke_at": woke, "child": result}


def events(state, event_type: int) -> list[dict]:
    return [e for e in state.events if e["EventType"] == event_type]


def scoring_host() -> DurableHost:
    return DurableHost(scoring_parent, {"double": double}, orchestrators={"scorer": scorer})


# ------------------------------------------------------------------------------------------------
# A child's result reaches the parent
# ------------------------------------------------------------------------------------------------


def test_parent_gets_the_result_of_a_child_that_calls_an_activity() -> None:
    host = scoring_host()
    iid = host.start({"n": 21}, instance_id="parent")
    parent = host.status(iid)
    assert parent.runtime_status == "Completed", parent.error
    (child_id,) = host.children(iid)
    assert parent.output == {"child": {"doubled": 42, "parent": "parent", "me": child_id}}

    created = events(parent, EventType.SUB_ORCHESTRATION_INSTANCE_CREATED)
    completed = events(parent, EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED)
    assert len(created) == 1 and len(completed) == 1
    assert created[0]["EventId"] == 0 and created[0]["Name"] == "scorer" and created[0]["Input"] == "21"
    assert created[0]["InstanceId"] == child_id
    assert completed[0]["TaskScheduledId"] == 0 and json.loads(completed[0]["Result"])["doubled"] == 42

    # no id given: the extension's (DTFx's) "<parent ExecutionId>:<event id>"
    execution_id = parent.events[1]["OrchestrationInstance"]["ExecutionId"]
    assert child_id == f"{execution_id}:0"

    child = host.status(child_id)
    assert child.runtime_status == "Completed" and child.name == "scorer" and child.input == 21
    assert child.activity_executions == 1 and child.parent_instance_id == "parent"
    assert child.history.to_dict()["parentInstanceId"] == "parent"
    started = child.events[1]
    assert started["ParentInstance"]["OrchestrationInstance"] == {"InstanceId": "parent", "ExecutionId": execution_id}
    assert started["ParentInstance"]["TaskScheduleId"] == 0
    assert set(host.instances) == {"parent", child_id}


def test_the_child_instance_id_as_given() -> None:
    host = scoring_host()
    iid = host.start({"n": 5, "child_id": "scorer-for-5"})
    assert host.children(iid) == ["scorer-for-5"]
    assert host.status("scorer-for-5").output == {"doubled": 10, "parent": iid, "me": "scorer-for-5"}
    created = events(host.status(iid), EventType.SUB_ORCHESTRATION_INSTANCE_CREATED)
    assert created[0]["InstanceId"] == "scorer-for-5"


def test_derived_child_ids_are_deterministic_across_hosts() -> None:
    first, second = scoring_host(), scoring_host()
    first.start({"n": 1}, instance_id="p")
    second.start({"n": 1}, instance_id="p")
    assert first.children("p") == second.children("p")
    assert first.status("p").events[1]["OrchestrationInstance"] == second.status("p").events[1]["OrchestrationInstance"]


# ------------------------------------------------------------------------------------------------
# Failures and retries
# ------------------------------------------------------------------------------------------------


def test_a_failed_child_raises_in_the_parent_which_falls_back() -> None:
    host = DurableHost(forgiving_parent, {"double": double}, orchestrators={"broken_child": broken_child})
    iid = host.start()
    parent = host.status(iid)
    assert parent.runtime_status == "Completed", parent.error
    assert parent.output["fallback"] is True
    assert "Orchestrator function 'broken_child' failed" in parent.output["error"]
    assert "child cannot cope with 'bad input'" in parent.output["error"]

    (failed,) = events(parent, EventType.SUB_ORCHESTRATION_INSTANCE_FAILED)
    assert failed["TaskScheduledId"] == 0
    assert failed["Reason"] == "Orchestrator function 'broken_child' failed: child cannot cope with 'bad input'"
    assert "child cannot cope" in failed["Details"]
    child = host.status(host.children(iid)[0])
    assert child.runtime_status == "Failed" and "child cannot cope" in child.error
    assert events(child, EventType.EXECUTION_FAILED)


def test_an_unhandled_child_failure_fails_the_parent() -> None:
    def strict_parent(context: df.DurableOrchestrationContext):
        return (yield context.call_sub_orchestrator("broken_child", 1))

    host = DurableHost(strict_parent, {"double": double}, orchestrators={"broken_child": broken_child})
    parent = host.status(host.start())
    assert parent.runtime_status == "Failed"
    assert "Orchestrator function 'broken_child' failed: child cannot cope with 1" in parent.error


def test_an_unknown_sub_orchestrator_fails_the_call_like_an_unknown_activity() -> None:
    def parent(context: df.DurableOrchestrationContext):
        try:
            yield context.call_sub_orchestrator("nobody_home")
        except Exception as exc:
            return str(exc)

    host = DurableHost(parent)
    state = host.status(host.start())
    assert state.runtime_status == "Completed"
    assert "The function 'nobody_home' doesn't exist" in state.output
    assert host.children(state.instance_id) == [] and len(host.instances) == 1


@pytest.mark.parametrize("child_id", [None, "flaky-1"])
def test_with_retry_retries_a_child_that_fails_once(child_id: str | None) -> None:
    FAILURES["abc"] = 1
    host = DurableHost(retrying_parent, {"flaky_double": flaky_double}, orchestrators={"flaky_child": flaky_child})
    iid = host.start({"key": "abc", "child_id": child_id})
    parent = host.status(iid)
    assert parent.runtime_status == "Completed", parent.error
    assert parent.output == {"result": 6}

    types = [
        e["EventType"]
        for e in parent.events
        if e["EventType"] not in (EventType.ORCHESTRATOR_STARTED, EventType.ORCHESTRATOR_COMPLETED)
    ]
    assert types == [
        EventType.EXECUTION_STARTED,
        EventType.SUB_ORCHESTRATION_INSTANCE_CREATED,
        EventType.SUB_ORCHESTRATION_INSTANCE_FAILED,
        EventType.TIMER_CREATED,
        EventType.TIMER_FIRED,
        EventType.SUB_ORCHESTRATION_INSTANCE_CREATED,
        EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED,
        EventType.EXECUTION_COMPLETED,
    ]
    first, second = events(parent, EventType.SUB_ORCHESTRATION_INSTANCE_CREATED)
    (retry_timer,) = events(parent, EventType.TIMER_CREATED)
    assert (first["EventId"], retry_timer["EventId"], second["EventId"]) == (0, 1, 2)
    assert retry_timer["FireAt"] == "2025-01-06T06:00:10.000000Z"  # firstRetryIntervalInMilliseconds
    assert events(parent, EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED)[0]["TaskScheduledId"] == 2
    if child_id is None:  # a new derived id per attempt; both attempts stay visible
        assert host.children(iid) == [first["InstanceId"], second["InstanceId"]]
        assert [host.status(c).runtime_status for c in host.children(iid)] == ["Failed", "Completed"]
    else:  # the id given is reused: the second attempt replaces the failed instance
        assert first["InstanceId"] == second["InstanceId"] == child_id
        assert host.children(iid) == [child_id] and host.status(child_id).runtime_status == "Completed"
    assert host.clock == T0 + timedelta(seconds=10)


def test_with_retry_gives_up_after_max_attempts() -> None:
    FAILURES["xyz"] = 99
    host = DurableHost(retrying_parent, {"flaky_double": flaky_double}, orchestrators={"flaky_child": flaky_child})
    parent = host.status(host.start({"key": "xyz"}))
    assert parent.runtime_status == "Completed"
    assert "backend unavailable for xyz" in parent.output["gave_up"]
    assert len(events(parent, EventType.SUB_ORCHESTRATION_INSTANCE_FAILED)) == RETRY.max_number_of_attempts
    assert len(host.children(parent.instance_id)) == RETRY.max_number_of_attempts


# ------------------------------------------------------------------------------------------------
# Timers, continue_as_new, parallel children, events, the clock
# ------------------------------------------------------------------------------------------------


def test_a_child_with_timers_and_continue_as_new() -> None:
    host = DurableHost(sleepy_parent, orchestrators={"sleepy_child": sleepy_child})
    iid = host.start(3)
    parent = host.status(iid)
    assert parent.runtime_status == "Completed", parent.error
    end = (T0 + timedelta(hours=3)).isoformat()
    assert parent.output == {"child": {"slept": 3, "woke_at": end}, "now": end}
    child = host.status(host.children(iid)[0])
    assert child.generations == 3 and child.runtime_status == "Completed"
    assert [h[1]["EventType"] for h in child.past_histories] == [EventType.EXECUTION_STARTED] * 2
    assert all(h[1]["ParentInstance"]["TaskScheduleId"] == 0 for h in child.past_histories)
    assert host.clock == T0 + timedelta(hours=3)
    # the parent was resumed when the child ended: its last episode starts at the child's last wake-up
    completed = events(parent, EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED)[0]
    assert completed["Timestamp"] == "2025-01-06T09:00:00.000000Z"


def test_two_children_in_parallel_with_task_all() -> None:
    host = DurableHost(fan_out_parent, {"double": double}, orchestrators={"scorer": scorer})
    iid = host.start([3, 4])
    parent = host.status(iid)
    assert parent.runtime_status == "Completed", parent.error
    assert parent.output == [6, 8]
    created = events(parent, EventType.SUB_ORCHESTRATION_INSTANCE_CREATED)
    assert [e["EventId"] for e in created] == [0, 1] and [e["Input"] for e in created] == ["3", "4"]
    assert sorted(e["TaskScheduledId"] for e in events(parent, EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED)) == [
        0,
        1,
    ]
    assert [host.status(c).input for c in host.children(iid)] == [3, 4]
    assert all(host.status(c).runtime_status == "Completed" for c in host.children(iid))


def test_timers_of_parent_and_child_fire_in_time_order_on_one_clock() -> None:
    host = DurableHost(racing_parent, orchestrators={"sleepy_child": sleepy_child})
    iid = host.start()
    parent = host.status(iid)
    assert parent.runtime_status == "Completed", parent.error
    assert parent.output["parent_woke_at"] == (T0 + timedelta(minutes=30)).isoformat()
    assert parent.output["child"]["woke_at"] == (T0 + timedelta(hours=1)).isoformat()
    assert host.clock == T0 + timedelta(hours=1)
    fired = events(parent, EventType.TIMER_FIRED)[0]
    completed = events(parent, EventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED)[0]
    assert (fired["Timestamp"], completed["Timestamp"]) == (
        "2025-01-06T06:30:00.000000Z",
        "2025-01-06T07:00:00.000000Z",
    )


def test_advance_stops_in_front_of_a_childs_timer() -> None:
    host = DurableHost(sleepy_parent, orchestrators={"sleepy_child": sleepy_child})
    iid = host.start(2, run=False)
    host.advance(iid)
    child = host.status(host.children(iid)[0])
    assert host.status(iid).runtime_status == "Running" and child.runtime_status == "Running"
    assert events(child, EventType.TIMER_CREATED)[0]["FireAt"] == "2025-01-06T07:00:00.000000Z"
    assert host.clock == T0
    host.advance(child.instance_id)  # any instance of the tree: fires that timer, stops before the next
    assert host.clock == T0 + timedelta(hours=1) and child.generations == 2
    assert host.run(iid).runtime_status == "Completed"


def test_an_external_event_raised_to_the_child_reaches_it() -> None:
    host = DurableHost(approving_parent, orchestrators={"waiting_child": waiting_child})
    iid = host.start()
    assert host.status(iid).runtime_status == "Running"
    assert host.status("approval-1").runtime_status == "Running"  # idle: waits for "approve"
    host.raise_event("approval-1", "approve", "ops", run=True)
    assert host.status("approval-1").output == {"approved_by": "ops"}
    parent = host.status(iid)
    assert parent.runtime_status == "Completed" and parent.output == {"approved_by": "ops"}


def test_terminating_a_child_fails_the_call_in_the_parent() -> None:
    host = DurableHost(approving_parent, orchestrators={"waiting_child": waiting_child})
    iid = host.start()
    host.terminate("approval-1", "not needed")
    parent = host.run(iid)
    assert parent.runtime_status == "Failed" and "not needed" in parent.error
    assert host.status("approval-1").runtime_status == "Terminated"


def test_a_child_id_equal_to_the_parents_is_refused() -> None:
    def selfish(context: df.DurableOrchestrationContext):
        return (yield context.call_sub_orchestrator("scorer", 1, context.instance_id))

    host = DurableHost(selfish, {"double": double}, orchestrators={"scorer": scorer})
    with pytest.raises(DurableHostError, match="must be different than the instance ID of a parent"):
        host.start(instance_id="me")


# ------------------------------------------------------------------------------------------------
# Replay determinism and the history builder
# ------------------------------------------------------------------------------------------------


def test_replaying_the_same_parent_history_twice_gives_the_same_actions() -> None:
    host = DurableHost(fan_out_parent, {"double": double}, orchestrators={"scorer": scorer})
    iid = host.start([1, 2], run=False)
    host.run(iid, max_steps=6)  # part way: children created, one or none delivered yet
    payload = host.status(iid).history.to_dict()
    first, second = replay(fan_out_parent, payload), replay(fan_out_parent, payload)
    assert first.state == second.state
    assert [a["type"] for a in first.actions] == ["CallSubOrchestrator"] * 2
    assert [a["functionName"] for a in first.actions] == ["scorer", "scorer"]
    assert [a["inputValue"] for a in first.actions] == [1, 2]
    assert host.run(iid).output == [2, 4]
    final = host.status(iid).history.to_dict()
    assert replay(fan_out_parent, final).state == replay(fan_out_parent, final).state
    assert replay(fan_out_parent, final).output == [2, 4]


def test_history_builder_sub_orchestration_events_through_the_sdk() -> None:
    h = History({"n": 7}, name="scoring_parent", instance_id="p")
    h.sub_orchestration_created("scorer", "c-1", 7).orchestrator_completed()
    h.orchestrator_started().sub_orchestration_completed(0, {"doubled": 14})
    assert replay(scoring_parent, h).output == {"child": {"doubled": 14}}

    failing = History({"n": 7}, name="scoring_parent", instance_id="p")
    failing.sub_orchestration_created("scorer", "c-1", 7).orchestrator_completed()
    failing.orchestrator_started().sub_orchestration_failed(0, "Orchestrator function 'scorer' failed: nope", "nope")
    result = replay(scoring_parent, failing)
    assert not result.is_done and result.error.startswith("Orchestrator function 'scorer' failed: nope")

    child = History(3, name="scorer", instance_id="c-1", parent_instance_id="p")
    assert child.to_dict()["parentInstanceId"] == "p"
    child.task_scheduled("double", 3).orchestrator_completed().orchestrator_started().task_completed(0, 6)
    assert replay(scorer, child).output == {"doubled": 6, "parent": "p", "me": "c-1"}


# ------------------------------------------------------------------------------------------------
# Apps, blueprints and the RPC stub
# ------------------------------------------------------------------------------------------------

bp = df.Blueprint()


@bp.activity_trigger(input_name="n")
def triple(n: int) -> int:
    return n * 3


@bp.orchestration_trigger(context_name="context")
def bp_child(context: df.DurableOrchestrationContext):
    return (yield context.call_activity(triple, context.get_input()))


@bp.orchestration_trigger(context_name="context")
def bp_parent(context: df.DurableOrchestrationContext):
    first = yield context.call_sub_orchestrator(bp_child, context.get_input(), "bp-child-1")
    second = yield context.call_sub_orchestrator_with_retry(bp_child, RETRY, first)
    return [first, second]


def test_from_app_registers_every_orchestrator_of_the_blueprint() -> None:
    host = DurableHost.from_app(bp, "bp_parent")
    assert set(host.orchestrators) == {"bp_parent", "bp_child"}
    iid = host.start(2)
    assert host.status(iid).output == [6, 18]
    assert host.status("bp-child-1").output == 6
    assert len(host.children(iid)) == 2


def test_the_products_blueprint_orchestrators_are_found() -> None:
    found = orchestrators_of(poll_aml_durable.bp)
    assert "watch_pipeline_runs" in found
    host = DurableHost.from_app(poll_aml_durable.bp, "watch_pipeline_runs")
    assert set(found) <= set(host.orchestrators)


def test_the_rpc_stub_reports_a_childs_status_and_starts_any_known_orchestrator() -> None:
    host = DurableHost(approving_parent, orchestrators={"waiting_child": waiting_child})
    with DurableRpcStub(host) as stub:
        client = df.DurableOrchestrationClient(stub.client_binding_json())
        iid = run_async(client.start_new("approving_parent"))
        status = run_async(client.get_status("approval-1"))
        assert status.runtime_status == df.OrchestrationRuntimeStatus.Running and status.name == "waiting_child"
        run_async(client.raise_event("approval-1", "approve", "rpc"))
        assert run_async(client.get_status("approval-1")).output == {"approved_by": "rpc"}
        parent = run_async(client.get_status(iid))
        assert parent.runtime_status == df.OrchestrationRuntimeStatus.Completed
        assert parent.output == {"approved_by": "rpc"}
        # a registered sub-orchestrator can be started on its own too
        alone = run_async(client.start_new("waiting_child", "solo"))
        assert alone == "solo" and host.status("solo").parent_instance_id is None
