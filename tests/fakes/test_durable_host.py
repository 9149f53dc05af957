"""Proves tests/fakes/durable/: History + replay through the SDK, DurableHost, DurableRpcStub + the real client."""

from __future__ import annotations

import json
import uuid
import warnings
from collections.abc import Iterator
from datetime import timedelta

import azure.durable_functions as df
import azure.functions as func
import pytest
from azure.functions._durable_functions import OrchestrationContext

from tests.fakes.durable.client import call_http_function, run_async
from tests.fakes.durable.history import EventType, History
from tests.fakes.durable.host import DurableHost
from tests.fakes.durable.replay import activities_of, find_function, replay
from tests.fakes.durable.rpc import DurableRpcStub
from tests.fakes.durable.wire import DEFAULT_START_TIME

# ------------------------------------------------------------------------------------------------
# The sample app: fan-out with retry, a durable timer raced against a "cancel" event, custom status,
# continue_as_new after 2 loops, an HTTP starter and a status route.
# ------------------------------------------------------------------------------------------------

bp = df.Blueprint()

ITEMS = ["north", "south", "west"]
RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=5_000, max_number_of_attempts=3)
WAIT = timedelta(minutes=30)
LOOPS_PER_GENERATION = 2

FAILURES: dict[str, int] = {}  # item -> how many more score_item calls fail for it
CALLS: list[dict] = []  # every score_item execution
LIVE_LOG: list[str] = []  # written only when the orchestrator is not replaying


@bp.activity_trigger(input_name="payload")
def score_item(payload: dict) -> dict:
    CALLS.append(payload)
    item = payload["item"]
    if FAILURES.get(item, 0) > 0:
        FAILURES[item] -= 1
        raise RuntimeError(f"scoring backend unavailable for {item}")
    return {"item": item, "score": len(item) * 10 + payload["loop"]}


@bp.orchestration_trigger(context_name="context", input_type=dict)
def forecast_loop(context: df.DurableOrchestrationContext):
    cfg = context.get_input()
    generation = cfg.get("generation", 0)
    scored = list(cfg.get("scored", []))
    run_id = cfg.get("run_id") or context.new_uuid()
    if not context.is_replaying:
        LIVE_LOG.append(f"generation {generation} started")
    for loop in range(LOOPS_PER_GENERATION):
        tag = {"generation": generation, "loop": loop}
        try:
            results = yield context.task_all(
                [context.call_activity_with_retry(score_item, RETRY, {"item": item, **tag}) for item in cfg["items"]]
            )
        except Exception as exc:
            context.set_custom_status({"phase": "failed", **tag})
            return {"status": "failed", "error": str(exc), "run_id": run_id, **tag}
        scored.append(sum(r["score"] for r in results))
        deadline = context.current_utc_datetime + WAIT
        context.set_custom_status({"phase": "waiting", "until": deadline.isoformat(), "total": sum(scored), **tag})
        timer = context.create_timer(deadline)
        cancel = context.wait_for_external_event("cancel", expected_type=str)
        winner = yield context.task_any([timer, cancel])
        if winner is cancel:
            timer.cancel()
            context.set_custom_status({"phase": "cancelled", **tag})
            return {"status": "cancelled", "reason": cancel.result, "scored": scored, "run_id": run_id, **tag}
        if not context.is_replaying:
            LIVE_LOG.append(f"generation {generation} loop {loop} woke at {context.current_utc_datetime.isoformat()}")
    if generation + 1 < cfg.get("max_generations", 2):
        context.continue_as_new({**cfg, "generation": generation + 1, "scored": scored, "run_id": run_id})
        return None
    context.set_custom_status({"phase": "done", "total": sum(scored)})
    return {
        "status": "done",
        "scored": scored,
        "total": sum(scored),
        "run_id": run_id,
        "generations": generation + 1,
        "finished_at": context.current_utc_datetime.isoformat(),
    }


@bp.route(route="forecast/start", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def start_forecast(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    instance_id = await client.start_new("forecast_loop", client_input=req.get_json())
    return client.create_check_status_response(req, instance_id)


@bp.route(route="forecast/status/{instance_id}", methods=["GET"])
@bp.durable_client_input(client_name="client")
async def forecast_status(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    status = await client.get_status(req.route_params["instance_id"])
    if not status:
        return func.HttpResponse(json.dumps({"found": False}), status_code=404, mimetype="application/json")
    body = {"runtimeStatus": status.runtime_status.name, "customStatus": status.custom_status, "output": status.output}
    return func.HttpResponse(json.dumps(body), status_code=200, mimetype="application/json")


app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(bp)

INPUT = {"items": ITEMS, "max_generations": 2}
PER_LOOP = sum(len(i) * 10 for i in ITEMS)  # 150 (+ loop number per item)


def wait_ready_history(**kwargs) -> History:
    """Episode 1 scheduled the fan-out; episode 2..4 completed it (3 attempts ids 0..2)."""
    h = History({"items": ITEMS}, name="forecast_loop", **kwargs)
    for item in ITEMS:
        h.task_scheduled("score_item", {"item": item, "generation": 0, "loop": 0})
    h.orchestrator_completed()
    for task_id, item in enumerate(ITEMS):
        h.orchestrator_started().task_completed(task_id, {"item": item, "score": len(item) * 10})
    return h


@pytest.fixture(autouse=True)
def reset_sample_state() -> Iterator[None]:
    FAILURES.clear()
    CALLS.clear()
    LIVE_LOG.clear()
    yield
    FAILURES.clear()


@pytest.fixture
def host() -> DurableHost:
    return DurableHost.from_app(app, "forecast_loop")


@pytest.fixture
def stub(host: DurableHost) -> Iterator[DurableRpcStub]:
    with DurableRpcStub(host) as server:
        yield server


# ------------------------------------------------------------------------------------------------
# History + replay
# ------------------------------------------------------------------------------------------------


def test_history_payload_has_the_shape_the_host_sends() -> None:
    h = History({"a": 1}, instance_id="abc").task_scheduled("act", 5).orchestrator_completed()
    h.orchestrator_started(DEFAULT_START_TIME + timedelta(minutes=1)).task_completed(0, "ok")
    payload = h.to_dict()
    assert set(payload) == {"history", "input", "instanceId", "isReplaying", "parentInstanceId", "upperSchemaVersion"}
    assert payload["input"] == '{"a": 1}' and payload["instanceId"] == "abc" and payload["parentInstanceId"] is None
    types = [e["EventType"] for e in payload["history"]]
    assert types == [
        EventType.ORCHESTRATOR_STARTED,
        EventType.EXECUTION_STARTED,
        EventType.TASK_SCHEDULED,
        EventType.ORCHESTRATOR_COMPLETED,
        EventType.ORCHESTRATOR_STARTED,
        EventType.TASK_COMPLETED,
    ]
    scheduled, completed = payload["history"][2], payload["history"][5]
    assert scheduled["EventId"] == 0 and scheduled["Name"] == "act" and scheduled["Input"] == "5"
    assert completed["TaskScheduledId"] == 0 and completed["Result"] == '"ok"'
    assert [e["IsPlayed"] for e in payload["history"]] == [True, True, True, True, False, False]
    assert payload["history"][4]["Timestamp"] == "2025-01-06T06:01:00.000000Z"


def test_replay_first_episode_schedules_the_retry_fan_out() -> None:
    result = replay(forecast_loop, History({"items": ITEMS}, name="forecast_loop"))
    assert not result.is_done and result.error is None
    assert [a["type"] for a in result.actions] == ["CallActivityWithRetry"] * 3
    first = result.actions[0]
    assert first["functionName"] == "score_item"
    assert first["retryOptions"] == {"firstRetryIntervalInMilliseconds": 5000, "maxNumberOfAttempts": 3}
    assert [a["inputValue"]["item"] for a in result.actions] == ITEMS
    assert json.loads(first["input"]) == {"item": "north", "generation": 0, "loop": 0}


def test_replay_is_deterministic_and_the_timer_follows_the_history_clock() -> None:
    h = wait_ready_history()
    first, second = replay(forecast_loop, h), replay(forecast_loop, h)
    assert first.state == second.state
    assert [a["type"] for a in first.actions] == ["CallActivityWithRetry"] * 3 + ["CreateTimer", "WaitForExternalEvent"]
    # OrchestratorStarted timestamps drive current_utc_datetime; move the last one and the timer moves too
    later = wait_ready_history()
    later.events[-2]["Timestamp"] = "2025-01-06T07:00:00.000000Z"
    assert first.of_type("CreateTimer")[0]["fireAt"] == "2025-01-06T06:30:00.000000Z"
    assert replay(forecast_loop, later).of_type("CreateTimer")[0]["fireAt"] == "2025-01-06T07:30:00.000000Z"
    assert first.custom_status["phase"] == "waiting" and first.custom_status["total"] == PER_LOOP


def test_replay_matches_the_workers_orchestrator_handle() -> None:
    """replay() does what Orchestrator.create's handle (the indexed function) does with the same payload."""
    h = wait_ready_history()
    handle = find_function(app, "forecast_loop").get_user_function()
    worker_state = json.loads(handle(OrchestrationContext(h.to_json())))
    assert replay(forecast_loop, h).state == worker_state


def test_replay_reports_a_failed_activity_as_an_exception_in_the_orchestrator() -> None:
    def orchestrator(context: df.DurableOrchestrationContext):
        yield context.call_activity("explode", None, expected_type=dict)
        return "unreachable"

    h = History(name="orchestrator").task_scheduled("explode").orchestrator_completed()
    h.orchestrator_started().task_failed(0, "boom", "Traceback ...")
    result = replay(orchestrator, h)
    assert not result.is_done and result.output is None
    assert result.error.startswith("boom")


def test_replay_records_the_sdk_deprecation_warning_for_retried_activity_results(monkeypatch) -> None:
    """call_activity_with_retry loses expected_type: the retried inner task decodes its result with
    df_loads(expected_type=None), which warns once per process (azure.functions._durable_functions)."""
    import azure.functions._durable_functions as codec

    monkeypatch.setattr(codec, "_no_expected_type_notice_emitted", False)
    result = replay(forecast_loop, wait_ready_history())
    assert result.error is None
    assert any(
        "DeprecationWarning: azure.functions df_loads was called without expected_type" in w
        and "_durable_functions.py" in w
        for w in result.warnings
    )

    # warnings_mode="error" leaves the runner's filters in charge: under -W error the notice becomes an
    # exception inside the replay and the orchestration fails, which production (warning only logged) would not do
    monkeypatch.setattr(codec, "_no_expected_type_notice_emitted", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        strict = replay(forecast_loop, wait_ready_history(), warnings_mode="error")
    assert strict.error.startswith("DeprecationWarning: azure.functions df_loads was called without expected_type")


# ------------------------------------------------------------------------------------------------
# DurableHost
# ------------------------------------------------------------------------------------------------


def test_host_runs_fan_out_timers_and_continue_as_new_to_completion(host: DurableHost) -> None:
    iid = host.start(INPUT)
    state = host.status(iid)
    assert state.runtime_status == "Completed", state.error
    assert state.generations == 2 and len(state.history_lengths) == 2
    assert state.activity_executions == len(CALLS) == 12
    out = state.output
    assert out["status"] == "done" and out["generations"] == 2
    assert out["scored"] == [PER_LOOP, PER_LOOP + 3, PER_LOOP, PER_LOOP + 3]
    # four 30-minute timers fired on the virtual clock
    assert out["finished_at"] == (DEFAULT_START_TIME + 4 * WAIT).isoformat()
    assert host.clock == DEFAULT_START_TIME + 4 * WAIT
    assert state.custom_status == {"phase": "done", "total": sum(out["scored"])}
    assert uuid.UUID(out["run_id"])
    # is_replaying: each live log line was written once although every episode replays from the start
    assert LIVE_LOG == [
        "generation 0 started",
        "generation 0 loop 0 woke at 2025-01-06T06:30:00+00:00",
        "generation 0 loop 1 woke at 2025-01-06T07:00:00+00:00",
        "generation 1 started",
        "generation 1 loop 0 woke at 2025-01-06T07:30:00+00:00",
        "generation 1 loop 1 woke at 2025-01-06T08:00:00+00:00",
    ]
    assert state.replays > 10


def test_continue_as_new_restarts_with_a_fresh_history_and_the_new_input(host: DurableHost) -> None:
    iid = host.start(INPUT)
    state = host.status(iid)
    first_gen = state.past_histories[0]
    assert first_gen[1]["EventType"] == EventType.EXECUTION_STARTED
    assert json.loads(first_gen[1]["Input"]) == INPUT
    assert first_gen[-2]["EventType"] == EventType.CONTINUE_AS_NEW
    assert state.history_lengths[0] == len(first_gen)
    current = state.events
    assert current[1]["EventType"] == EventType.EXECUTION_STARTED
    assert json.loads(current[1]["Input"])["generation"] == 1
    assert state.input["generation"] == 1 and state.input["scored"] == [PER_LOOP, PER_LOOP + 3]
    assert state.history_lengths[1] == len(current)
    # the uuid made in generation 0 was carried over, and is stable across hosts (deterministic)
    again = DurableHost.from_app(app, "forecast_loop")
    assert again.status(again.start(INPUT, instance_id=iid)).output["run_id"] == state.output["run_id"]


def test_advance_stops_at_each_timer_so_running_state_is_visible(host: DurableHost) -> None:
    iid = host.start(INPUT, run=False)
    assert host.status(iid).runtime_status == "Pending"
    state = host.advance(iid)
    assert state.runtime_status == "Running"
    assert state.custom_status["phase"] == "waiting" and state.custom_status["loop"] == 0
    assert state.custom_status["until"] == (DEFAULT_START_TIME + WAIT).isoformat()
    timer = [e for e in state.events if e["EventType"] == EventType.TIMER_CREATED][-1]
    assert timer["FireAt"] == "2025-01-06T06:30:00.000000Z"
    assert host.clock == DEFAULT_START_TIME
    state = host.advance(iid)  # fires the first timer, stops before the second
    assert state.runtime_status == "Running" and state.custom_status["loop"] == 1
    assert host.clock == DEFAULT_START_TIME + WAIT
    timer = [e for e in state.events if e["EventType"] == EventType.TIMER_CREATED][-1]
    assert timer["FireAt"] == "2025-01-06T07:00:00.000000Z"
    assert state.last_updated_time == DEFAULT_START_TIME + WAIT and state.created_time == DEFAULT_START_TIME
    assert host.run(iid).runtime_status == "Completed"


def test_retry_reschedules_a_failed_attempt_after_a_retry_timer(host: DurableHost) -> None:
    FAILURES["south"] = 1
    iid = host.start({"items": ITEMS, "max_generations": 1})
    state = host.status(iid)
    assert state.runtime_status == "Completed", state.error
    assert state.activity_executions == 7  # 2 loops x 3 items + 1 retry
    failed = [e for e in state.events if e["EventType"] == EventType.TASK_FAILED]
    assert len(failed) == 1 and failed[0]["Reason"] == "scoring backend unavailable for south"
    assert "RuntimeError" in failed[0]["Details"]
    retry_timer = [e for e in state.events if e["EventType"] == EventType.TIMER_CREATED][0]
    assert retry_timer["FireAt"] == "2025-01-06T06:00:05.000000Z"  # firstRetryIntervalInMilliseconds
    rescheduled = [e for e in state.events if e["EventType"] == EventType.TASK_SCHEDULED]
    assert [e["EventId"] for e in rescheduled[:3]] == [0, 1, 2] and rescheduled[3]["EventId"] == 4


def test_exhausted_retries_surface_as_an_exception_in_the_orchestrator(host: DurableHost) -> None:
    FAILURES["west"] = 99
    iid = host.start(INPUT)
    state = host.status(iid)
    assert state.runtime_status == "Completed"
    assert state.output["status"] == "failed" and "scoring backend unavailable for west" in state.output["error"]
    assert state.custom_status == {"phase": "failed", "generation": 0, "loop": 0}
    failed = [e for e in state.events if e["EventType"] == EventType.TASK_FAILED]
    assert len(failed) == RETRY.max_number_of_attempts
    assert sum(1 for c in CALLS if c["item"] == "west") == 3


def test_an_unhandled_activity_failure_fails_the_orchestration() -> None:
    def orchestrator(context: df.DurableOrchestrationContext):
        value = yield context.call_activity("double", context.get_input(expected_type=int), expected_type=int)
        yield context.call_activity("explode", value, expected_type=int)
        return value

    def explode(value: int) -> int:
        raise ValueError(f"cannot explode {value}")

    host = DurableHost(orchestrator, {"double": lambda n: n * 2, "explode": explode})
    state = host.status(host.start(21))
    assert state.runtime_status == "Failed"
    assert "cannot explode 42" in state.error
    assert state.activity_executions == 2
    assert [e["EventType"] for e in state.events][-3:] == [
        EventType.TASK_FAILED,
        EventType.EXECUTION_FAILED,
        EventType.ORCHESTRATOR_COMPLETED,
    ]


def test_external_event_wins_the_race_against_the_timer(host: DurableHost) -> None:
    iid = host.start(INPUT, run=False)
    host.advance(iid)
    host.raise_event(iid, "cancel", "operator asked")
    state = host.run(iid)
    assert state.runtime_status == "Completed"
    assert state.output["status"] == "cancelled" and state.output["reason"] == "operator asked"
    assert state.output["loop"] == 0 and state.custom_status["phase"] == "cancelled"
    raised = [e for e in state.events if e["EventType"] == EventType.EVENT_RAISED]
    assert raised[0]["Name"] == "cancel" and json.loads(raised[0]["Input"]) == "operator asked"
    assert not any(e["EventType"] == EventType.TIMER_FIRED for e in state.events)
    assert host.clock == DEFAULT_START_TIME  # the cancelled timer never fired


def test_events_raised_early_are_held_until_the_orchestrator_waits(host: DurableHost) -> None:
    iid = host.start(INPUT, run=False)
    host.raise_event(iid, "cancel", "before anything ran")
    state = host.run(iid)
    assert state.output["status"] == "cancelled" and state.output["reason"] == "before anything ran"
    assert state.activity_executions == 3  # the fan-out still ran first


def test_step_limit_stops_an_endless_orchestration() -> None:
    def eternal(context: df.DurableOrchestrationContext):
        yield context.create_timer(context.current_utc_datetime + timedelta(hours=1))
        context.continue_as_new(None)

    host = DurableHost(eternal, max_steps=20)
    state = host.status(host.start())
    assert state.step_limit_hit and state.runtime_status == "Running"
    assert state.generations > 5


# ------------------------------------------------------------------------------------------------
# DurableRpcStub + the SDK's real DurableOrchestrationClient
# ------------------------------------------------------------------------------------------------


def test_client_binding_json_is_what_the_sdk_client_parses(stub: DurableRpcStub) -> None:
    binding = json.loads(stub.client_binding_json())
    assert binding["rpcBaseUrl"] == f"http://127.0.0.1:{stub.port}/durabletask/"
    assert binding["taskHubName"] == "TestHubName" and binding["managementUrls"]["id"] == "INSTANCEID"
    client = df.DurableOrchestrationClient(stub.client_binding_json())
    links = client.create_http_management_payload("abc")
    assert links["statusQueryGetUri"].startswith(f"{stub.base_url}/instances/abc?")


def test_client_start_new_then_status_running_then_completed(stub: DurableRpcStub, host: DurableHost) -> None:
    stub.on_start = "advance"
    client = df.DurableOrchestrationClient(stub.client_binding_json())
    iid = run_async(client.start_new("forecast_loop", client_input=INPUT))
    assert iid in host.instances
    status = run_async(client.get_status(iid))
    assert status.runtime_status == df.OrchestrationRuntimeStatus.Running
    assert status.custom_status["phase"] == "waiting" and status.input_ == INPUT
    assert status.name == "forecast_loop" and status.instance_id == iid and status.output is None
    assert status.created_time is not None
    host.run(iid)
    status = run_async(client.get_status(iid))
    assert status.runtime_status == df.OrchestrationRuntimeStatus.Completed
    assert status.output["status"] == "done" and status.custom_status["phase"] == "done"
    assert status.last_updated_time > status.created_time
    assert ("POST", "/durabletask/orchestrators/forecast_loop") in stub.requests
    assert ("GET", f"/durabletask/instances/{iid}") in stub.requests


def test_client_start_new_with_instance_id_and_run_to_completion(stub: DurableRpcStub) -> None:
    client = df.DurableOrchestrationClient(stub.client_binding_json())
    assert run_async(client.start_new("forecast_loop", "fixed-id", INPUT)) == "fixed-id"
    status = run_async(client.get_status("fixed-id"))
    assert status.runtime_status == df.OrchestrationRuntimeStatus.Completed
    assert stub.host.status("fixed-id").generations == 2


def test_client_raise_event_reaches_the_orchestrator(stub: DurableRpcStub) -> None:
    stub.on_start = "advance"
    client = df.DurableOrchestrationClient(stub.client_binding_json())

    async def scenario():
        iid = await client.start_new("forecast_loop", client_input=INPUT)
        await client.raise_event(iid, "cancel", {"by": "ops"})
        return await client.get_status(iid)

    status = run_async(scenario())
    assert status.runtime_status == df.OrchestrationRuntimeStatus.Completed
    assert status.output["status"] == "cancelled" and status.output["reason"] == {"by": "ops"}
    with pytest.raises(Exception, match="is gone"):
        run_async(client.raise_event(status.instance_id, "cancel", "again"))


def test_client_terminate_ends_a_running_instance(stub: DurableRpcStub) -> None:
    stub.on_start = "advance"
    client = df.DurableOrchestrationClient(stub.client_binding_json())
    iid = run_async(client.start_new("forecast_loop", client_input=INPUT))
    run_async(client.terminate(iid, "no longer needed"))
    status = run_async(client.get_status(iid))
    assert status.runtime_status == df.OrchestrationRuntimeStatus.Terminated
    assert status.output == "no longer needed"
    assert ("POST", f"/durabletask/instances/{iid}/terminate?reason=no%20longer%20needed") in stub.requests
    run_async(client.terminate(iid, "again"))  # 410: the SDK accepts it silently
    assert stub.host.run(iid).runtime_status == "Terminated"


def test_unknown_instance_and_unknown_orchestrator(stub: DurableRpcStub) -> None:
    client = df.DurableOrchestrationClient(stub.client_binding_json())
    status = run_async(client.get_status("no-such-instance"))
    assert not status and status.runtime_status is None and status.created_time is None
    with pytest.raises(Exception, match="No instance with ID 'no-such-instance' found"):
        run_async(client.terminate("no-such-instance", "x"))
    with pytest.raises(Exception, match="No instance with ID no-such-instance found"):
        run_async(client.raise_event("no-such-instance", "cancel"))
    with pytest.raises(Exception, match="doesn't exist"):
        run_async(client.start_new("not_an_orchestrator"))


# ------------------------------------------------------------------------------------------------
# Indexed HTTP functions called the way the worker calls them
# ------------------------------------------------------------------------------------------------


def test_http_starter_and_status_route(stub: DurableRpcStub) -> None:
    stub.on_start = "advance"
    req = func.HttpRequest("POST", "http://localhost:7071/api/forecast/start", body=json.dumps(INPUT).encode())
    resp = call_http_function("start_forecast", req, stub.client_binding_json(), app=app)
    assert resp.status_code == 202
    payload = json.loads(resp.get_body())
    iid = payload["id"]
    assert stub.host.status(iid).runtime_status == "Running"
    assert resp.headers["Location"] == payload["statusQueryGetUri"]
    assert payload["statusQueryGetUri"].startswith(
        f"http://localhost:7071/runtime/webhooks/durabletask/instances/{iid}?"
    )

    status_fn = find_function(app, "forecast_status")
    get = func.HttpRequest(
        "GET", f"http://localhost:7071/api/forecast/status/{iid}", body=b"", route_params={"instance_id": iid}
    )
    body = json.loads(call_http_function(status_fn, get, stub.client_binding_json()).get_body())
    assert body["runtimeStatus"] == "Running" and body["customStatus"]["phase"] == "waiting"

    stub.host.run(iid)
    body = json.loads(call_http_function(status_fn, get, stub.client_binding_json()).get_body())
    assert body["runtimeStatus"] == "Completed" and body["output"]["status"] == "done"

    missing = func.HttpRequest(
        "GET", "http://localhost:7071/api/forecast/status/nope", body=b"", route_params={"instance_id": "nope"}
    )
    assert call_http_function(status_fn, missing, stub.client_binding_json()).status_code == 404


def test_activities_of_collects_the_apps_activity_functions() -> None:
    found = activities_of(app)
    assert set(found) == {"score_item"}
    assert found["score_item"]({"item": "ab", "loop": 1}) == {"item": "ab", "score": 21}
