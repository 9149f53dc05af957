"""The durable watch through the Durable SDK's real replay engine (tests/fakes/durable/ plays
the host), its HTTP routes through the SDK's real client against a loopback stub, and the
whole flow end to end as ADF's Web activity sees it."""

from __future__ import annotations

import datetime as dt
import json
import time
from urllib.parse import urlsplit

import azure.functions as func
import pytest

import poll_aml_durable
from poll_aml_durable import names, pipeline_runs_watch
from shared import runtime
from shared.aml.status import TERMINAL, normalise
from shared.watch import policy as watch
from shared.watch import reads
from tests.fakes.durable.client import call_http_function
from tests.fakes.durable.history import EventType, History
from tests.fakes.durable.host import DurableHost
from tests.fakes.durable.replay import activities_of, find_function, orchestrators_of, replay
from tests.fakes.durable.rpc import DurableRpcStub

T0 = dt.datetime(2026, 11, 26, 6, 0, tzinfo=dt.UTC)
ORCH = find_function(poll_aml_durable.bp, "watch_pipeline_runs")


class ScriptedAML:
    """Activities answering from per-run status scripts (the last status sticks)."""

    def __init__(self, scripts=None, default=("Running", "Completed"), metrics=None, errors=None):
        self.scripts = {k: list(v) for k, v in (scripts or {}).items()}
        self.default = list(default)
        self.metrics = metrics or {}
        self.errors = errors or {}
        self.canceled: list[str] = []
        self.submitted: list[dict] = []
        self.status_calls = 0

    def submit(self, request):
        self.submitted.append(request)
        run_id = f"run-{request['idempotency_key']}"
        return {
            "run_id": run_id,
            "pipeline": request["pipeline"],
            "status": "queued",
            "portal_url": f"https://ml/{run_id}",
        }

    def status(self, run_id):
        self.status_calls += 1
        if run_id in self.errors:
            raise RuntimeError(json.dumps({"run_id": run_id, "message": self.errors[run_id]}))
        seq = self.scripts.setdefault(run_id, list(self.default))
        aml_status = seq.pop(0) if len(seq) > 1 else seq[0]
        if run_id in self.canceled:
            aml_status = "Canceled"
        error = {"step": "train", "message": "MAPE exploded", "code": "step_failed"} if aml_status == "Failed" else None
        metrics = self.metrics.get(run_id, {}) if aml_status == "Completed" else {}
        return {
            "run_id": run_id,
            "aml_status": aml_status,
            "status": normalise(aml_status),
            "terminal": aml_status in TERMINAL,
            "error": error,
            "metrics": metrics,
            "portal_url": f"https://ml/{run_id}",
        }

    def cancel(self, run_id):
        self.canceled.append(run_id)
        return {"run_id": run_id, "aml_status": "CancelRequested"}

    def activities(self):
        return {
            names.SUBMIT: batched_submit(self.submit),
            names.STATUS: batched_status(self.status),
            names.CANCEL: self.cancel,
        }


def batched_status(read_one):
    """The batched status activity over a per-run script, through the product's own batching."""
    return lambda items: reads.read_all(items, lambda run_id, known: read_one(run_id))


def batched_submit(submit_one):
    """The chunked submit activity over a per-run script: each run's own outcome."""

    def submit(requests):
        outcomes = []
        for request in requests:
            try:
                outcomes.append({"ok": True, "answer": submit_one(request)})
            except Exception as e:
                outcomes.append({"ok": False, "answer": watch.activity_failure(str(e))})
        return outcomes

    return submit


def watch_input(run_ids=None, batch=None, **options):
    if batch is not None:
        runs = [watch.RunState(index=i, pipeline="smoke", parameters={"region": f"r{i}"}) for i in range(batch)]
    else:
        runs = [watch.RunState(index=i, run_id=r) for i, r in enumerate(run_ids)]
    return {"state": watch.start(runs, watch.WatchOptions(**options), T0).model_dump(mode="json")}


def host_for(aml, **kw):
    return DurableHost(ORCH, aml.activities(), start_time=T0, **kw)


def timers(state):
    return [e["FireAt"] for e in state.events if e["EventType"] == EventType.TIMER_CREATED]


def test_every_durable_name_is_the_python_name_of_the_function_it_calls():
    # the SDK schedules an activity or a sub-orchestration by its Python function name
    activities = {name: fn.__name__ for name, fn in activities_of(poll_aml_durable.bp).items()}
    assert activities == {n: n for n in (names.SUBMIT, names.STATUS, names.CANCEL, names.BATCH_STEP)}
    orchestrators = {
        name: fn.get_user_function().__name__ for name, fn in orchestrators_of(poll_aml_durable.bp).items()
    }
    assert orchestrators == {n: n for n in (names.WATCH, names.WEEKLY_BATCH)}


def test_a_run_that_completes_after_several_polls_with_backoff_timers():
    aml = ScriptedAML({"r1": ["Queued", "Running", "Running", "Running", "Completed"]})
    host = host_for(aml)
    iid = host.start(watch_input(["r1"], polling={"first_s": 30, "factor": 2, "max_s": 100}))
    state = host.status(iid)
    assert state.runtime_status == "Completed", state.error
    assert state.output["outcome"] == "succeeded" and state.output["polls"] == 5
    fired = [dt.datetime.fromisoformat(t.replace("Z", "+00:00")) for t in timers(state)]
    gaps = [(b - a).total_seconds() for a, b in zip([T0, *fired], fired, strict=False)]
    assert gaps == [30, 60, 100, 100]
    assert state.custom_status["counts"] == {"completed": 1}


def test_a_run_that_fails_ends_the_watch_failed_with_its_step():
    aml = ScriptedAML({"r1": ["Running", "Failed"]})
    host = host_for(aml)
    state = host.status(host.start(watch_input(["r1"])))
    out = state.output
    assert out["outcome"] == "failed" and out["failed"][0]["failed_step"] == "train"
    assert out["failed"][0]["error"]["message"] == "MAPE exploded" and out["failed"][0]["portal_url"] == "https://ml/r1"


def test_a_batch_of_28_in_which_one_fails():
    aml = ScriptedAML(default=("Queued", "Running", "Completed"))
    host = host_for(aml)
    iid = host.start(watch_input(batch=28))
    assert len(aml.submitted) == 28 and aml.submitted[13]["idempotency_key"] == f"{iid}-13"
    state = host.status(iid)
    assert state.runtime_status == "Completed" and state.output["outcome"] == "succeeded"
    # every run's status was read in one fan-out per poll: 28 runs x 3 polls
    assert aml.status_calls == 28 * 3
    aml2 = ScriptedAML(default=("Queued", "Running", "Completed"))
    aml2.scripts = {f"run-x-{i}": ["Queued", "Running", "Completed"] for i in range(28)}
    aml2.scripts["run-x-13"] = ["Queued", "Failed"]
    host2 = host_for(aml2)
    iid2 = host2.start(watch_input([f"run-x-{i}" for i in range(28)]))
    out = host2.status(iid2).output
    assert out["outcome"] == "failed" and out["runs_completed"] == 27
    assert [r["run_id"] for r in out["failed"]] == ["run-x-13"]


def test_timeout_schedules_cancel_activities_for_the_unfinished_runs():
    aml = ScriptedAML({"r1": ["Running"], "r2": ["Completed"]})
    host = host_for(aml)
    state = host.status(host.start(watch_input(["r1", "r2"], timeout_s=600, polling={"first_s": 120, "factor": 1})))
    assert state.output["outcome"] == "timed_out"
    assert aml.canceled == ["r1"]
    assert [r["outcome"] for r in state.output["runs"]] == ["timed_out", "completed"]


def test_no_cancel_on_timeout_when_asked_not_to():
    aml = ScriptedAML({"r1": ["Running"]})
    host = host_for(aml)
    state = host.status(host.start(watch_input(["r1"], timeout_s=300, cancel_on_timeout=False)))
    assert state.output["outcome"] == "timed_out" and aml.canceled == []


def test_not_responding_that_recovers_is_waited_out():
    aml = ScriptedAML({"r1": ["Running", "NotResponding", "NotResponding", "Running", "Completed"]})
    host = host_for(aml)
    state = host.status(host.start(watch_input(["r1"], stuck_limit_s=3600)))
    assert state.output["outcome"] == "succeeded"
    aml = ScriptedAML({"r1": ["NotResponding"]})
    host = host_for(aml)
    state = host.status(host.start(watch_input(["r1"], stuck_limit_s=100, polling={"first_s": 60, "factor": 1})))
    assert state.output["failed"][0]["outcome"] == "stuck"


def test_continue_as_new_every_n_polls_carries_the_state():
    aml = ScriptedAML({"r1": ["Running"] * 9 + ["Completed"]})
    host = host_for(aml)
    state = host.status(
        host.start(watch_input(["r1"], polls_per_generation=3, polling={"first_s": 10, "factor": 2, "max_s": 1000}))
    )
    assert state.runtime_status == "Completed"
    assert state.generations == 4 and state.output["generation"] == 3 and state.output["polls"] == 10
    # the backoff went on across generations: the third one waited 640 s then the capped 1000 s,
    # not first_s again
    third = [
        dt.datetime.fromisoformat(e["FireAt"].replace("Z", "+00:00"))
        for e in state.past_histories[2]
        if e["EventType"] == EventType.TIMER_CREATED
    ]
    # (the timer due at once before continue_as_new lets a cancel of the same episode in: not a poll)
    gaps = [(b - a).total_seconds() for a, b in zip(third, third[1:], strict=False)]
    assert [g for g in gaps if g] == [1000, 1000]
    assert max(state.history_lengths) < 60  # bounded per generation


def test_an_activity_failure_is_a_structured_failure_of_its_run():
    aml = ScriptedAML({"r2": ["Completed"]}, errors={"r1": "AML answered 503 four times"})
    host = host_for(aml)
    state = host.status(host.start(watch_input(["r1", "r2"], stuck_limit_s=100, polling={"first_s": 60, "factor": 1})))
    out = state.output
    assert state.runtime_status == "Completed" and out["outcome"] == "failed"
    (failed,) = out["failed"]
    assert failed["run_id"] == "r1" and failed["error"]["code"] == "status_unavailable"
    assert "AML answered 503 four times" in failed["error"]["message"]
    assert [r["outcome"] for r in out["runs"]] == ["failed", "completed"]


def test_a_status_outage_shorter_than_the_stuck_limit_is_waited_out():
    aml = ScriptedAML({"r1": ["Running", "Running", "Completed"]}, errors={"r1": "AML answered 503"})
    host = host_for(aml)
    calls = {"n": 0}
    real = aml.status

    def flaky(run_id):
        calls["n"] += 1
        if calls["n"] <= 4:  # the first poll's attempts all fail
            raise RuntimeError(json.dumps({"run_id": run_id, "message": "AML answered 503"}))
        return real(run_id)

    aml.errors = {}
    host.activities[names.STATUS] = batched_status(flaky)
    state = host.status(host.start(watch_input(["r1"])))
    assert state.output["outcome"] == "succeeded" and calls["n"] > 4


def test_one_failed_submit_does_not_lose_the_runs_that_started():
    aml = ScriptedAML(default=("Running", "Completed"))
    real = aml.submit

    def submit(request):
        if request["idempotency_key"].endswith("-1"):
            raise RuntimeError("the catalog refused it")
        return real(request)

    host = host_for(aml)
    host.activities[names.SUBMIT] = batched_submit(submit)
    iid = host.start(watch_input(batch=3))
    out = host.status(iid).output
    assert [r["outcome"] for r in out["runs"]] == ["completed", "failed", "completed"]
    assert out["runs"][0]["run_id"] == f"run-{iid}-0" and out["runs"][1]["error"]["code"] == "submit_failed"


def test_a_cancel_raised_while_a_later_poll_runs_is_not_lost():
    aml = ScriptedAML({"r1": ["Running"]})
    host = host_for(aml)
    iid = host.start(watch_input(["r1"]), run=False)
    host.advance(iid, max_steps=3)  # three polls in: stale waiters would swallow the event
    host.raise_event(iid, "cancel", {"requested": True}, run=True)
    state = host.status(iid)
    assert state.output["outcome"] == "canceled" and aml.canceled == ["r1"]
    assert all("df_loads" in w for w in state.warnings)  # the SDK's own notice, nothing else


def test_a_cancel_event_cancels_the_runs_and_ends_the_watch():
    aml = ScriptedAML({"r1": ["Running"]})
    host = host_for(aml)
    iid = host.start(watch_input(["r1"]), run=False)
    host.advance(iid)
    assert host.status(iid).runtime_status == "Running"
    host.raise_event(iid, "cancel", {"requested": True}, run=True)
    state = host.status(iid)
    assert state.output["outcome"] == "canceled" and aml.canceled == ["r1"]


def test_replaying_the_same_history_yields_the_same_actions():
    aml = ScriptedAML({"r1": ["Running", "Running", "Completed"]})
    host = host_for(aml)
    iid = host.start(watch_input(["r1"]), run=False)
    host.advance(iid, max_steps=2)
    events = host.status(iid).events
    payload = {
        "history": events,
        "input": json.dumps(watch_input(["r1"])),
        "instanceId": iid,
        "isReplaying": False,
        "parentInstanceId": None,
        "upperSchemaVersion": 2,
    }
    first, second = replay(ORCH, payload), replay(ORCH, payload)
    assert first.actions == second.actions and first.custom_status == second.custom_status
    assert [a["type"] for a in first.actions if a["type"] != "CallActivityWithRetry"][:1] == ["CreateTimer"]


def test_the_first_episode_schedules_one_status_activity_for_all_the_runs():
    history = History(watch_input(["a", "b", "c"]), instance_id="i1", start_time=T0)
    result = replay(ORCH, history)
    calls = [a for a in result.actions if a["type"] == "CallActivityWithRetry"]
    assert [c["functionName"] for c in calls] == [names.STATUS]
    assert [i["run_id"] for i in calls[0]["inputValue"]] == ["a", "b", "c"]
    assert calls[0]["retryOptions"]["maxNumberOfAttempts"] == 4


def test_one_status_activity_per_tick_keeps_a_generations_history_small():
    """A batch of 28 runs for an hour through the replay engine: one status activity per poll
    for all of them (not one per run), and a generation's history a few events per poll.
    (``make bench-watch`` runs the whole 6-hour batch, and 500 runs, with these figures.)"""
    n_runs, defaults = 28, watch.WatchOptions()
    one_hour = T0 + dt.timedelta(hours=1)
    aml = ScriptedAML()
    host = host_for(aml, max_steps=5_000)

    def status(run_id):
        aml.status_calls += 1
        aml_status = "Completed" if host.clock >= one_hour else "Running"
        return {"run_id": run_id, "aml_status": aml_status, "status": normalise(aml_status), "metrics": {}}

    host.activities[names.STATUS] = batched_status(status)
    state = host.status(host.start(watch_input([f"r{i}" for i in range(n_runs)])))
    hour_polls = state.output["polls"]
    assert state.output["outcome"] == "succeeded" and state.generations == 1
    assert state.activity_executions == hour_polls < defaults.polls_per_generation
    assert aml.status_calls == n_runs * hour_polls
    per_poll = (state.history_lengths[-1] - 2) / hour_polls
    # per poll: TaskScheduled + TaskCompleted + TimerCreated + TimerFired, plus this harness's
    # OrchestratorStarted/Completed pair per delivered event (the real host batches them)
    assert per_poll == pytest.approx(4 + 4, abs=2)
    assert 2 + per_poll * defaults.polls_per_generation <= 400


# the HTTP routes, through the SDK's durable client and a loopback stub -------------------------------
@pytest.fixture
def local_api(monkeypatch, tmp_path):
    monkeypatch.setenv("FORECASTOPS_LAKE_ROOT", str(tmp_path / "lake"))
    runtime.lake.cache_clear()
    runtime.aml_backend.cache_clear()
    yield
    runtime.lake.cache_clear()
    runtime.aml_backend.cache_clear()


def request(method, path, body=None):
    raw = b"" if body is None else json.dumps(body).encode()
    route = {}
    parts = path.strip("/").split("/")
    if len(parts) >= 4:
        route["instance_id"] = parts[3]
    return func.HttpRequest(method=method, url=f"http://localhost:7071{path}", body=raw, route_params=route, headers={})


def call(stub, name, req):
    resp = call_http_function(name, req, stub.client_binding_json(), app=poll_aml_durable.bp)
    return resp.status_code, json.loads(resp.get_body()), dict(resp.headers)


def test_starter_answers_202_with_location_and_the_same_key_reattaches(local_api):
    aml = ScriptedAML({"r1": ["Running"]})
    host = host_for(aml)
    with DurableRpcStub(host, on_start="advance") as stub:
        status, body, headers = call(
            stub,
            "pipeline_runs_watch_start",
            request("POST", "/api/orchestrations/pipeline-runs", {"run_id": "r1", "idempotency_key": "adf-1"}),
        )
        assert status == 202 and body["attached"] is False
        assert headers["Location"] == f"http://localhost:7071/api/orchestrations/pipeline-runs/{body['instance_id']}"
        # only the app's own routes: the extension's management URLs carry its system key
        assert headers["Retry-After"] == "30" and "management" not in body
        assert body["cancel_url"] == headers["Location"] + "/cancel"
        again = call(
            stub,
            "pipeline_runs_watch_start",
            request("POST", "/api/orchestrations/pipeline-runs", {"run_id": "r1", "idempotency_key": "adf-1"}),
        )
        assert again[0] == 202 and again[1]["attached"] is True and again[1]["instance_id"] == body["instance_id"]
        assert len(host.instances) == 1
        bad = call(
            stub,
            "pipeline_runs_watch_start",
            request("POST", "/api/orchestrations/pipeline-runs", {"pipeline": "smoke", "run_id": "x"}),
        )
        assert bad[0] == 400 and bad[1]["problems"]
        got = call(
            stub,
            "pipeline_runs_watch_status",
            request("GET", f"/api/orchestrations/pipeline-runs/{body['instance_id']}"),
        )
        assert (
            got[0] == 202 and got[1]["runtime_status"] == "Running" and got[1]["progress"]["counts"] == {"running": 1}
        )
        assert got[2]["Location"].endswith(body["instance_id"]) and int(got[2]["Retry-After"]) >= 5
        assert (
            call(stub, "pipeline_runs_watch_status", request("GET", "/api/orchestrations/pipeline-runs/nope"))[0] == 404
        )


def test_delete_cancels_the_watch_and_its_runs(local_api):
    aml = ScriptedAML({"r1": ["Running"]})
    host = host_for(aml)
    with DurableRpcStub(host, on_start="advance", on_event="run") as stub:
        _, body, _ = call(
            stub, "pipeline_runs_watch_start", request("POST", "/api/orchestrations/pipeline-runs", {"run_id": "r1"})
        )
        iid = body["instance_id"]
        assert (
            call(stub, "pipeline_runs_watch_status", request("DELETE", f"/api/orchestrations/pipeline-runs/{iid}"))[0]
            == 202
        )
        status, final, _ = call(
            stub, "pipeline_runs_watch_status", request("GET", f"/api/orchestrations/pipeline-runs/{iid}")
        )
        assert status == 409 and final["error"] == "canceled" and aml.canceled == ["r1"]


def adf_web_activity(stub, host, body, max_calls=200):
    """What ADF's Web activity does: POST, then follow Location while 202, honouring
    Retry-After (virtual time here: the host's clock advances to the next timer)."""
    status, answer, headers = call(
        stub, "pipeline_runs_watch_start", request("POST", "/api/orchestrations/pipeline-runs", body)
    )
    calls = 1
    while status == 202 and calls < max_calls:
        assert int(headers["Retry-After"]) >= 1
        time.sleep(0.05)  # real runs (local backend) progress in real time
        iid = urlsplit(headers["Location"]).path.rsplit("/", 1)[1]
        if host.status(iid).runtime_status in ("Pending", "Running"):
            host.advance(iid)
        status, answer, headers = call(
            stub, "pipeline_runs_watch_status", request("GET", urlsplit(headers["Location"]).path)
        )
        calls += 1
    return status, answer


@pytest.mark.parametrize(("fail_step", "expected"), [("none", 200), ("train", 502)])
def test_end_to_end_a_fanned_out_batch_on_the_local_backend_as_adf_sees_it(local_api, fail_step, expected):
    host = DurableHost(
        ORCH,
        {
            names.SUBMIT: pipeline_runs_watch.aml_submit_runs,
            names.STATUS: pipeline_runs_watch.aml_runs_status,
            names.CANCEL: pipeline_runs_watch.aml_cancel_run,
        },
        start_time=T0,
    )
    runs = [
        {"parameters": {"seconds": 0.05, "region": f"r{i}", "fail_step": fail_step if i == 1 else "none"}}
        for i in range(3)
    ]
    with DurableRpcStub(host, on_start="advance") as stub:
        status, answer = adf_web_activity(
            stub,
            host,
            {
                "pipeline": "smoke",
                "runs": runs,
                "polling": {"first_s": 1, "factor": 1, "max_s": 1},
                "idempotency_key": f"adf-e2e-{fail_step}",
            },
        )
    assert status == expected, answer
    if expected == 200:
        assert answer["outcome"] == "succeeded" and answer["runs_completed"] == 3
        assert all(r["metrics"]["train"] == {"train_seconds": 0.05} for r in answer["runs"])
    else:
        assert answer["error"] == "failed" and [r["failed_step"] for r in answer["failed"]] == ["train"]
        assert "run " in answer["message"] and "at step train" in answer["message"]


def test_a_cancel_that_arrives_while_the_second_poll_is_in_flight_cancels_the_runs():
    running = {"r1": {"aml_status": "Running", "status": "running"}}
    h = History(
        watch_input(["r1"], polling={"first_s": 30, "factor": 1}),
        instance_id="i1",
        name="watch_pipeline_runs",
        start_time=T0,
    )
    h.task_scheduled(names.STATUS, [{"run_id": "r1", "known": "NotStarted"}]).episode().task_completed(
        0, running
    )  # poll 1
    fire = T0 + dt.timedelta(seconds=30)
    h.timer_created(fire).episode(fire).timer_fired(1, fire)
    h.task_scheduled(names.STATUS, [{"run_id": "r1", "known": "NotStarted"}]).episode()  # poll 2 scheduled...
    h.event_raised("cancel", {"requested": True}).task_completed(2, running)  # ...the cancel comes before its answer
    result = replay(ORCH, h)
    new = result.actions[-1]
    assert new["type"] == "CallActivityWithRetry" and new["functionName"] == names.CANCEL
    assert new["inputValue"] == "r1"


# the bridge fails closed -----------------------------------------------------------------------
@pytest.mark.parametrize("event_first", [False, True], ids=["timer-then-event", "event-then-timer"])
def test_a_cancel_with_the_timer_that_ends_a_generation_is_not_lost(event_first):
    """The timer that ends a generation and the cancel arrive in one episode: the watch ends
    canceled (its run asked to stop), instead of continuing as new without the cancel."""
    running = {"r1": {"aml_status": "Running", "status": "running"}}
    h = History(
        watch_input(["r1"], polling={"first_s": 30, "factor": 1}, polls_per_generation=1),
        instance_id="i1",
        name="watch_pipeline_runs",
        start_time=T0,
    )
    h.task_scheduled(names.STATUS, [{"run_id": "r1", "known": "NotStarted"}]).episode().task_completed(0, running)
    fire = T0 + dt.timedelta(seconds=30)
    h.timer_created(fire).episode(fire)
    if event_first:
        h.event_raised("cancel", {"requested": True}).timer_fired(1, fire)
    else:
        h.timer_fired(1, fire).event_raised("cancel", {"requested": True})
    result = replay(ORCH, h)
    kinds = [a["type"] for a in result.actions]
    assert "ContinueAsNew" not in kinds
    new = result.actions[-1]
    assert new["type"] == "CallActivityWithRetry" and new["functionName"] == names.CANCEL
    assert new["inputValue"] == "r1"


def test_runs_given_up_on_are_cancelled_in_aml():
    aml = ScriptedAML({"r1": ["NotResponding"], "r2": ["Completed"]})
    host = host_for(aml)
    state = host.status(host.start(watch_input(["r1", "r2"], stuck_limit_s=100, polling={"first_s": 60, "factor": 1})))
    out = state.output
    assert [r["outcome"] for r in out["runs"]] == ["stuck", "completed"]
    assert aml.canceled == ["r1"] and out["runs"][0]["cancel_requested"] is True


def test_no_traceback_or_file_path_reaches_the_answer_of_a_failed_activity():
    aml = ScriptedAML({"r1": ["Running"]})

    def broken(run_id):
        raise KeyError("/home/site/wwwroot/shared/aml/azureml.py: AccountKey=abc123==")

    aml_activities = aml.activities()
    aml_activities[names.STATUS] = batched_status(broken)
    host = DurableHost(ORCH, aml_activities, start_time=T0)
    state = host.status(host.start(watch_input(["r1"], stuck_limit_s=30, polling={"first_s": 60, "factor": 1})))
    code, body, _ = watch_api_answer(state)
    text = json.dumps(body)
    assert code == 502 and body["failed"][0]["error"]["code"] == "status_unavailable"
    for leak in ("Traceback", 'File "', "/home/site", ".py", "AccountKey"):
        assert leak not in text


def watch_api_answer(state):
    from types import SimpleNamespace

    from shared.watch import routes as watch_api

    status = SimpleNamespace(runtime_status=state.runtime_status, custom_status=None, output=state.output)
    return watch_api.answer_status(status, "i1", "https://app", T0)


def request_with_code(method, path, body=None, code="the-callers-key"):
    raw = b"" if body is None else json.dumps(body).encode()
    parts = path.strip("/").split("/")
    route = {"instance_id": parts[3]} if len(parts) >= 4 else {}
    return func.HttpRequest(
        method=method,
        url=f"http://localhost:7071{path}",
        body=raw,
        route_params=route,
        params={"code": code},
        headers={},
    )


def test_the_start_answer_carries_no_system_key_and_location_keeps_the_callers_code(local_api):
    host = host_for(ScriptedAML({"r1": ["Running"]}))
    with DurableRpcStub(host, on_start="advance") as stub:
        status, body, headers = call(
            stub,
            "pipeline_runs_watch_start",
            request_with_code("POST", "/api/orchestrations/pipeline-runs", {"run_id": "r1"}),
        )
        assert status == 202
        system_key = json.loads(stub.client_binding_json()).get("managementUrls", {}).get("statusQueryGetUri", "")
        assert "management" not in body and "the-callers-key" in headers["Location"]
        assert headers["Location"].endswith(
            f"/api/orchestrations/pipeline-runs/{body['instance_id']}?code=the-callers-key"
        )
        assert system_key == "" or system_key not in json.dumps(body)
        path = urlsplit(headers["Location"]).path
        got = call(stub, "pipeline_runs_watch_status", request_with_code("GET", path))
        assert got[0] == 202 and got[2]["Location"] == headers["Location"]


def test_the_same_key_with_another_request_is_409_and_with_the_same_one_reattaches(local_api):
    host = host_for(ScriptedAML(default=("Running",)))
    first = {"pipeline": "smoke", "parameters": {"region": "west"}, "idempotency_key": "adf-7"}
    with DurableRpcStub(host, on_start="none") as stub:

        def start(body):
            return call(stub, "pipeline_runs_watch_start", request("POST", "/api/orchestrations/pipeline-runs", body))

        created = start(first)
        same = start({"idempotency_key": "adf-7", "parameters": {"region": "west"}, "pipeline": "smoke"})
        other = start({**first, "parameters": {"region": "east"}})
    assert created[0] == 202 and created[1]["attached"] is False
    assert same[0] == 202 and same[1]["attached"] is True and same[1]["instance_id"] == created[1]["instance_id"]
    assert other[0] == 409 and other[1]["error"] == "idempotency_conflict" and "adf-7" in other[1]["message"]
    assert len(host.instances) == 1


def test_two_starts_with_one_key_racing_start_one_instance(local_api):
    """Both starters check before either starts (check-then-start); the extension refuses the
    second start of a live instance (host.json: NonRunningStates) and it re-attaches."""
    import asyncio

    from azure.durable_functions import DurableOrchestrationClient

    from shared.aml.catalog import load_catalog
    from shared.watch import routes as watch_api
    from tests.fakes.durable.client import run_async

    host = host_for(ScriptedAML(default=("Running",)))
    body = json.dumps({"pipeline": "smoke", "idempotency_key": "adf-race"}).encode()
    with DurableRpcStub(host, on_start="none") as stub:

        async def both():
            client = DurableOrchestrationClient(stub.client_binding_json())
            starts = [watch_api.start_watch(client, body, load_catalog(), "http://x", T0) for _ in range(2)]
            return await asyncio.gather(*starts)

        answers = run_async(both())
    assert sorted(a[0] for a in answers) == [202, 202]
    assert sorted(a[1]["attached"] for a in answers) == [False, True]
    assert len(host.instances) == 1 and stub.overridable == "NonRunningStates"


def test_jobs_of_a_submit_that_gave_up_are_cancelled_in_aml():
    """The submit activity failed after its retries: some of its jobs may exist all the same
    (the answer was lost, not the job); each expected job is asked to stop."""
    from shared.aml.request import job_name_for

    aml = ScriptedAML()

    def unreachable(requests):
        raise RuntimeError("AML answered 503 every time")

    host = host_for(aml)
    host.activities[names.SUBMIT] = unreachable
    iid = host.start(watch_input(batch=2))
    out = host.status(iid).output
    assert [r["outcome"] for r in out["runs"]] == ["failed", "failed"]
    assert sorted(aml.canceled) == sorted(job_name_for("smoke", f"{iid}-{i}") for i in range(2))


# cancels on the azureml backend: the app's own activities, the real MLClient, AML's fake --------------
def azureml_backend(fake):
    """The azureml backend as the worker builds it, its MLClient answered by AML's fake."""
    return fake.backend()


@pytest.fixture
def aml_fake(monkeypatch):
    """AML's fake behind the worker's backend: every activity of the app talks to it."""
    from tests.fakes.aml.fake import FakeAML

    fake = FakeAML()
    backend = azureml_backend(fake)
    monkeypatch.setattr(runtime, "aml_backend", lambda: backend)
    return fake


def app_host():
    """The watch with every activity the app registers."""
    return DurableHost.from_app(poll_aml_durable.bp, names.WATCH, start_time=T0)


def cancels(fake):
    """The job of each cancel POST AML received, in order."""
    return [r.path.split("/")[-2] for r in fake.requests_to("POST", r"/cancel$")]


def test_the_jobs_of_a_submit_that_gave_up_are_asked_once_and_one_aml_does_not_know_is_done(aml_fake):
    """The submit activity gave up: each job it may have started is asked to stop. AML never
    created them (404): each cancel is done at the first answer (one POST per job, not one per
    attempt of the activity), and each run says why nothing was canceled."""
    from shared.aml.request import job_name_for

    def unreachable(requests):
        raise RuntimeError("AML answered 503 every time")

    host = app_host()
    host.activities[names.SUBMIT] = unreachable
    iid = host.start(watch_input(batch=2))
    out = host.status(iid).output
    jobs = [job_name_for("smoke", f"{iid}-{i}") for i in range(2)]
    assert sorted(cancels(aml_fake)) == sorted(jobs)
    for run, job in zip(out["runs"], jobs, strict=True):
        assert run["outcome"] == "failed" and run["error"]["code"] == "submit_failed"
        assert run["cancel_requested"] is False and run["cancel_error"] is None
        assert job in run["cancel_note"] and "nothing to cancel" in run["cancel_note"]


def test_a_run_aml_does_not_know_is_given_up_and_its_cancel_is_done_at_once(aml_fake):
    host = app_host()
    options = {"stuck_limit_s": 100, "polling": {"first_s": 60, "factor": 1}}
    out = host.status(host.start(watch_input(["ghost"], **options))).output
    (run,) = out["runs"]
    assert run["outcome"] == "failed" and run["error"]["code"] == "status_unavailable"
    assert cancels(aml_fake) == ["ghost"]
    assert run["cancel_requested"] is False and run["cancel_error"] is None and "ghost" in run["cancel_note"]


def test_a_cancel_aml_refuses_is_retried_and_its_error_kept(aml_fake):
    aml_fake.inject("POST", r"/cancel$", 403, forever=True)
    host = app_host()
    options = {"stuck_limit_s": 100, "polling": {"first_s": 60, "factor": 1}}
    out = host.status(host.start(watch_input(["ghost"], **options))).output
    (run,) = out["runs"]
    assert cancels(aml_fake) == ["ghost"] * pipeline_runs_watch.RETRY.max_number_of_attempts
    assert run["cancel_requested"] is False and run["cancel_note"] is None
    assert "403" in run["cancel_error"] and "no rights" in run["cancel_error"]
