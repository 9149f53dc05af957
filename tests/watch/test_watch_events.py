"""The watch at batch scale: one status activity per tick for the whole batch, and AML's own
job events (Event Grid) waking it at once, with polling as the safety net. Through the
Durable SDK's replay engine (tests/fakes/durable/) and the app's Event Grid function."""

from __future__ import annotations

import datetime as dt
import json

import azure.functions as func
import pytest

import poll_aml_durable
from poll_aml_durable import names
from shared.aml.status import normalise
from shared.watch import events, reads
from tests.app.test_poll_aml_durable import T0, ScriptedAML, batched_status, host_for, watch_input
from tests.fakes.durable.client import call_http_function, run_async
from tests.fakes.durable.rpc import DurableRpcStub
from tests.fakes.durable.wire import to_json

SAFETY = {"first_s": 900, "factor": 1, "max_s": 900}


def aml_event(run_id, status="Completed", watch="i1", event_type="Microsoft.MachineLearningServices.RunStatusChanged"):
    """An Event Grid event exactly as AML documents it (Event Grid schema)."""
    data = {
        "experimentId": "7ddb2d4e-6e21-4d8f-a7bb-0c1d2e3f4a5b",
        "experimentName": "forecastops-forecast",
        "runId": run_id,
        "runType": "azureml.PipelineRun",
        "runTags": {"forecastops.pipeline": "forecast", events.TAG_WATCH: watch} if watch else {},
        "runProperties": {"azureml.runsource": "azureml.PipelineRun"},
    }
    if event_type.endswith("RunStatusChanged"):
        data["runStatus"] = status
    return {
        "topic": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws",
        "subject": f"experiments/7ddb2d4e-6e21-4d8f-a7bb-0c1d2e3f4a5b/runs/{run_id}",
        "eventType": event_type,
        "eventTime": "2026-11-26T07:00:00Z",
        "id": "0c5f8e6a-2a4e-4f5e-9b7a-1f2e3d4c5b6a",
        "data": data,
        "dataVersion": "2",
        "metadataVersion": "1",
    }


class Switchable(ScriptedAML):
    """A job that runs until the test says it completed."""

    def __init__(self, run_ids):
        super().__init__()
        self.done: set[str] = set()
        self.run_ids = run_ids

    def status(self, run_id):
        self.status_calls += 1
        aml_status = "Completed" if run_id in self.done else "Running"
        return {"run_id": run_id, "aml_status": aml_status, "status": normalise(aml_status), "metrics": {}}


def started(aml, run_ids, **options):
    host = host_for(aml)
    iid = host.start(watch_input(run_ids, polling=SAFETY, **options), run=False)
    host.advance(iid)  # the first poll, answered: the watch now sleeps on its safety timer
    return host, iid


# one tick for the batch -------------------------------------------------------------------------
def test_one_tick_reads_every_pending_run_and_finished_runs_drop_out():
    aml = ScriptedAML(
        {
            "r1": ["Running", "Completed"],
            "r2": ["Completed"],
            "r3": ["Failed"],
            "r4": ["Running", "Running", "Completed"],
        }
    )
    aml.errors = {"r5": "AML answered 503"}
    host = host_for(aml)
    iid = host.start(
        watch_input(["r1", "r2", "r3", "r4", "r5"], stuck_limit_s=100, polling={"first_s": 60, "factor": 1})
    )
    state = host.status(iid)
    statuses = [a for a in state.events if a.get("Name") == names.STATUS and a["EventType"] == 4]
    polled = [[i["run_id"] for i in json.loads(e["Input"])] for e in statuses]
    assert polled[0] == ["r1", "r2", "r3", "r4", "r5"]  # one activity for the whole batch
    assert polled[1] == ["r1", "r4", "r5"]  # the finished ones dropped out
    assert all(len(p) <= 3 for p in polled[1:])
    out = state.output
    assert {r["run_id"]: r["outcome"] for r in out["runs"]} == {
        "r1": "completed",
        "r2": "completed",
        "r3": "failed",
        "r4": "completed",
        "r5": "failed",
    }
    assert state.activity_executions == len(polled) + 1  # + the cancel of r5, given up on


def test_the_tick_tells_the_backend_the_status_it_last_saw():
    seen = []

    def read_one(run_id, known):
        seen.append((run_id, known))
        return {"aml_status": "Running", "status": "running"}

    reads.read_all([{"run_id": "a", "known": "Queued"}, {"run_id": "b", "known": None}], read_one)
    assert sorted(seen) == [("a", "Queued"), ("b", None)]


def test_a_tick_answer_is_compact_and_carries_metrics_only_at_the_end():
    running = reads.compact({"aml_status": "Running", "status": "running", "steps": [{"x": 1}], "portal_url": "u"})
    assert running == {"aml_status": "Running", "status": "running"}
    done = reads.compact(
        {"aml_status": "Completed", "status": "completed", "metrics": {"e": {"mape": float("nan")}}, "portal_url": "u"}
    )
    assert done == {
        "aml_status": "Completed",
        "status": "completed",
        "metrics": {"e": {"mape": None}},
        "portal_url": "u",
    }


# job events wake the watch ---------------------------------------------------------------------
def test_a_completion_event_while_the_watch_sleeps_answers_at_once():
    aml = Switchable(["r1"])
    host, iid = started(aml, ["r1"])
    slept_from = host.clock
    aml.done.add("r1")
    host.raise_event(iid, events.JOB_EVENT, {"run_id": "r1", "aml_status": "Completed"})
    host.advance(iid)  # the event's episode polls; the next one has the answer
    state = host.status(iid)
    assert state.runtime_status == "Completed" and state.output["outcome"] == "succeeded"
    assert host.clock == slept_from  # no safety-poll timer had to fire (it was 900 s away)


def test_a_completion_event_that_arrives_during_a_tick_is_not_lost():
    aml = Switchable(["r1"])
    host = host_for(aml)
    iid = host.start(watch_input(["r1"], polling=SAFETY), run=False)
    real = aml.status

    def status_then_event(run_id):
        answer = real(run_id)  # this poll sees Running...
        if not aml.done:  # ...and the job ends, its event arriving, before the poll's answer does
            aml.done.add(run_id)
            # queued as the host queues a raised event (the activity runs on a worker thread
            # while the host holds its lock, so not through raise_event)
            event = to_json({"run_id": run_id, "aml_status": "Completed"})
            host.status(iid).pending_events.append((events.JOB_EVENT, event))
        return answer

    aml.status = status_then_event
    host.activities[names.STATUS] = batched_status(status_then_event)
    state = host.run(iid, max_steps=8)
    assert state.runtime_status == "Completed" and state.output["outcome"] == "succeeded"
    assert host.clock == T0  # answered without waiting for the safety poll


def test_a_completion_event_before_the_first_tick_wakes_the_watch_too():
    aml = Switchable(["r1"])
    host = host_for(aml)
    iid = host.start(watch_input(["r1"], polling=SAFETY), run=False)
    host.raise_event(iid, events.JOB_EVENT, {"run_id": "r1", "aml_status": "Completed"})
    aml.done.add("r1")
    state = host.run(iid, max_steps=8)
    assert state.output["outcome"] == "succeeded" and host.clock == T0


def test_duplicated_and_out_of_order_events_change_only_the_time_of_a_poll():
    aml = Switchable(["r1", "r2"])
    host, iid = started(aml, ["r1", "r2"])
    for payload in ({"run_id": "r1", "aml_status": "Completed"}, {"run_id": "r1", "aml_status": "Running"}):
        host.raise_event(iid, events.JOB_EVENT, payload)  # a "Completed" then a late "Running", twice
        host.raise_event(iid, events.JOB_EVENT, payload)
    aml.done.add("r1")
    host.advance(iid)
    state = host.status(iid)
    assert state.runtime_status == "Running"  # r2 still runs: events are wake-ups, AML's status decides
    assert [r["outcome"] for r in state.custom_status["per_run"]] == [None, "completed"]
    aml.done.add("r2")
    final = host.run(iid)
    assert final.output["outcome"] == "succeeded"


def test_when_events_are_lost_the_safety_poll_still_ends_the_watch():
    aml = Switchable(["r1"])
    host, iid = started(aml, ["r1"])
    aml.done.add("r1")  # no event comes
    state = host.run(iid)
    assert state.output["outcome"] == "succeeded"
    assert host.clock == T0 + dt.timedelta(seconds=900)


# the Event Grid function --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("event", "woken"),
    [
        (aml_event("r1"), True),
        (aml_event("r1", event_type="Microsoft.MachineLearningServices.RunCompleted"), True),
        (aml_event("step-run-uuid", watch=None), False),  # a step's own run, or a job no watch follows
        (aml_event("r1", watch="../../etc"), False),
        (aml_event("r1", event_type="Microsoft.MachineLearningServices.ModelRegistered"), False),
    ],
    ids=["status-changed", "completed", "unknown-job", "bad-instance-id", "other-event-type"],
)
def test_the_event_function_wakes_only_the_watch_its_job_names(event, woken):
    aml = Switchable(["r1"])
    host = host_for(aml)
    host.start(watch_input(["r1"], polling=SAFETY), instance_id="i1", run=False)
    host.advance("i1")
    aml.done.add("r1")
    grid = func.EventGridEvent(
        id=event["id"],
        data=event["data"],
        topic=event["topic"],
        subject=event["subject"],
        event_type=event["eventType"],
        event_time=dt.datetime(2026, 11, 26, 7, tzinfo=dt.UTC),
        data_version=event["dataVersion"],
    )
    with DurableRpcStub(host, on_event="run") as stub:
        call_http_function("aml_job_event", grid, stub.client_binding_json(), app=poll_aml_durable.bp)
    state = host.status("i1")
    assert (state.runtime_status == "Completed") is woken
    assert host.clock == T0


def test_an_event_for_a_watch_that_has_ended_is_ignored():
    aml = Switchable(["r1"])
    aml.done.add("r1")
    host = host_for(aml)
    host.start(watch_input(["r1"]), instance_id="i1")
    assert host.status("i1").runtime_status == "Completed"
    with DurableRpcStub(host) as stub:
        from azure.durable_functions import DurableOrchestrationClient

        client = DurableOrchestrationClient(stub.client_binding_json())
        woken = run_async(events.wake(client, aml_event("r1")["eventType"], aml_event("r1")["data"]))
    assert woken is False


def test_submitted_jobs_carry_the_watch_that_follows_them():
    aml = ScriptedAML(default=("Completed",))
    host = host_for(aml)
    iid = host.start(watch_input(batch=3))
    assert host.status(iid).output["outcome"] == "succeeded"
    assert [r["watch"] for r in aml.submitted] == [iid] * 3


def test_with_job_events_the_watch_polls_only_as_a_safety_net():
    from shared.aml.catalog import load_catalog
    from shared.settings import Settings
    from shared.watch import routes as watch_api

    polling = Settings(watch_events=True, watch_safety_poll_s=600).watch_polling()
    plan, _ = watch_api.plan_start(b'{"pipeline": "smoke"}', load_catalog(), T0, polling)
    assert plan["state"]["options"]["polling"] == {"first_s": 600, "factor": 1.0, "max_s": 600}
    asked, _ = watch_api.plan_start(b'{"pipeline": "smoke", "polling": {"first_s": 5}}', load_catalog(), T0, polling)
    assert asked["state"]["options"]["polling"]["first_s"] == 5  # the caller's own polling wins
    assert Settings().watch_polling() is None  # without events, the policy's backoff
