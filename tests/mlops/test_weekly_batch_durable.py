"""The weekly batch as the Functions host runs it: the ``weekly_batch`` orchestrator through the
Durable SDK's real replay engine (tests/fakes/durable/ plays the host), its pipeline runs as
sub-orchestrations of the watch, its steps as the real ``batch_step`` activity over a real lake;
its three entry points (the data-complete queue message, the weekly schedule, ADF's HTTP call)
through the SDK's durable client against a loopback stub, and their one idempotent start,
raced by a hundred starters on Azurite."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import azure.functions as func
import pytest
from azure.durable_functions import DurableOrchestrationClient

import poll_aml_durable
from poll_aml_durable import names, weekly_batch
from shared import clock, runtime
from shared.aml.lakeuri import lake_path
from shared.aml.status import TERMINAL, normalise
from shared.mlops import start, steps
from shared.mlops.batch import BatchInput
from tests.fakes.durable.client import call_http_function, run_async
from tests.fakes.durable.host import DurableHost
from tests.fakes.durable.replay import activities_of, find_function
from tests.fakes.durable.rpc import DurableRpcStub
from tests.mlops.test_mlops_batch import NE, NOW, WEST, W, context, world

ORCH = find_function(poll_aml_durable.bp, "weekly_batch")
WATCH = find_function(poll_aml_durable.bp, "watch_pipeline_runs")


@pytest.fixture(autouse=True)
def clock_at_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """The world of these tests (W's data, ingested by :func:`world`) is at NOW, and so is the
    clock: W's days are not dated beyond today (``future_date``), whatever today is."""
    monkeypatch.setattr(clock, "now", lambda: NOW)


class FakeAML:
    """AML for the batch: a forecast run writes a model per group it was asked for, a score run
    a forecast file per production model; both complete at the second poll."""

    def __init__(self, lake, mape=0.3, fail=()):
        self.lake, self.mape, self.fail = lake, mape, set(fail)
        self.submitted: list[dict] = []
        self.polls: dict[str, int] = {}
        self.runs: dict[str, dict] = {}

    def submit(self, requests):
        out = []
        for r in requests:
            self.submitted.append(r)
            run_id = f"{r['pipeline']}-{len(self.submitted)}"
            self.runs[run_id] = r
            if r["pipeline"] == "forecast":
                groups = r["parameters"]["groups"]
                names = [*NE, *WEST] if groups == "all" else groups.split(",")
                for g in names:
                    self.lake.write_bytes(f"runs/{run_id}/outputs/train/models/{g}.pkl", f"{g} {run_id}".encode())
            else:
                folder = lake_path(r["inputs"]["production"])
                models = json.loads(self.lake.read_bytes(f"{folder}/production.json"))["models"]
                for g, m in models.items():
                    row = f"store_id,sku,week_start,forecast,model,model_version\nS1,SKU-1,2026-12-28,4.0,{g},{m['version']}\n"
                    self.lake.write_bytes(f"runs/{run_id}/outputs/score_production/forecasts/{g}.csv", row.encode())
            out.append({"ok": True, "answer": {"run_id": run_id, "pipeline": r["pipeline"], "status": "queued"}})
        return out

    def status(self, items):
        answers = {}
        for item in items:
            run_id = item["run_id"]
            self.polls[run_id] = self.polls.get(run_id, 0) + 1
            r = self.runs[run_id]
            aml = "Running" if self.polls[run_id] < 2 else ("Failed" if r["pipeline"] in self.fail else "Completed")
            metrics = {}
            if aml == "Completed" and r["pipeline"] == "forecast":
                groups = r["parameters"]["groups"]
                names = [*NE, *WEST] if groups == "all" else groups.split(",")
                evaluate = {
                    f"{g}.{k}": v
                    for g in names
                    # a model is promoted only when it beats its baseline (issue 20): the baseline's MAPE is above
                    for k, v in (("mape", self.mape), ("baseline_mape", 0.9), ("trained_at", NOW.timestamp()))
                }
                metrics = {"evaluate": evaluate}
            answers[run_id] = {
                "run_id": run_id,
                "aml_status": aml,
                "status": normalise(aml),
                "terminal": aml in TERMINAL,
                "error": {"step": "train", "message": "boom"} if aml == "Failed" else None,
                "metrics": metrics,
                "steps": [],
            }
        return answers

    def activities(self):
        step = activities_of(poll_aml_durable.bp)[names.BATCH_STEP]
        return {
            names.BATCH_STEP: step,
            names.SUBMIT: self.submit,
            names.STATUS: self.status,
            names.CANCEL: lambda run_id: {"run_id": run_id},
        }


@pytest.fixture
def batch_lake(local_lake, monkeypatch):
    ctx = context(local_lake, watch=steps.watch_options(runtime.catalog(), None))
    monkeypatch.setattr(runtime, "batch_context", lambda settings=None: ctx)
    monkeypatch.setattr(runtime, "lake", lambda: local_lake)  # the HTTP routes' lake, too
    return local_lake


def host_for(aml):
    return DurableHost(ORCH, aml.activities(), orchestrators={"watch_pipeline_runs": WATCH}, start_time=NOW)


def test_a_week_runs_train_register_promote_score_publish_through_the_durable_host(batch_lake):
    world(batch_lake)
    aml = FakeAML(batch_lake)
    host = host_for(aml)
    iid = host.start(BatchInput(week=W, by="data_complete").model_dump(mode="json"), instance_id=f"weekly-batch-{W}")
    state = host.status(iid)
    assert state.runtime_status == "Completed", state.error
    summary = state.output
    assert summary["outcome"] == "succeeded", summary
    assert [r["pipeline"] for r in aml.submitted] == ["forecast", "score"]
    assert aml.submitted[0]["inputs"] == {"curated": f"azureml:forecastops-curated:{W}"}
    children = host.children(iid)
    assert [c.rsplit("-", 1)[0] for c in children] == [f"{iid}-train", f"{iid}-score"]
    assert {g: (line["training"], line["decision"], line["scored_with"]) for g, line in summary["groups"].items()} == {
        g: ("retrained", "promoted", 1) for g in (*NE, *WEST)
    }
    assert sorted(p.rsplit("/", 1)[-1] for p in batch_lake.list(f"curated/forecasts/v1/week={W}")) == sorted(
        f"{g}.csv" for g in (*NE, *WEST)
    )

    # the same week again (a retried message, the schedule): nothing changed, nothing retrains,
    # every group is scored with the version in production
    aml2 = FakeAML(batch_lake)
    host2 = host_for(aml2)
    again = host2.status(host2.start(BatchInput(week=W, by="schedule").model_dump(mode="json")))
    assert again.output["outcome"] == "succeeded"
    assert [r["pipeline"] for r in aml2.submitted] == ["score"]
    assert {line["training"] for line in again.output["groups"].values()} == {"skipped"}


def test_a_failed_training_run_fails_the_batch_and_production_stays(batch_lake):
    world(batch_lake)
    host = host_for(FakeAML(batch_lake, fail={"forecast"}))
    state = host.status(host.start(BatchInput(week=W).model_dump(mode="json")))
    assert state.runtime_status == "Completed", state.error
    summary = state.output
    assert summary["outcome"] == "failed" and "ended failed" in summary["problems"][0]
    assert {line["training"] for line in summary["groups"].values()} <= {"failed"}
    assert not list(batch_lake.list("curated/forecasts"))


def test_replaying_a_finished_batch_gives_the_same_actions(batch_lake):
    world(batch_lake)
    host = host_for(FakeAML(batch_lake))
    iid = host.start(BatchInput(week=W).model_dump(mode="json"))
    state = host.status(iid)
    from tests.fakes.durable.replay import replay

    first = replay(ORCH, state.history)
    second = replay(ORCH, state.history)
    assert first.actions == second.actions and first.output == state.output


# the entry points ---------------------------------------------------------------------------------
@pytest.fixture
def bridge(monkeypatch, tmp_path):
    monkeypatch.setenv("FORECASTOPS_LAKE_ROOT", str(tmp_path / "lake"))
    runtime.lake.cache_clear()
    yield runtime.lake()
    runtime.lake.cache_clear()


def idle_host():
    return DurableHost(ORCH, {}, orchestrators={"watch_pipeline_runs": WATCH}, start_time=NOW)


def http(stub, method, week, body=None, code=None):
    url = f"http://localhost:7071/api/batches/{week}" + (f"?code={code}" if code else "")
    raw = b"" if body is None else json.dumps(body).encode()
    params = {"code": code} if code else {}
    req = func.HttpRequest(method=method, url=url, body=raw, route_params={"week": week}, params=params, headers={})
    resp = call_http_function("weekly_batch_http", req, stub.client_binding_json(), app=poll_aml_durable.bp)
    return resp.status_code, json.loads(resp.get_body()), dict(resp.headers)


def test_adf_starts_a_week_once_and_reads_its_state(bridge):
    world(bridge)
    host = idle_host()
    with DurableRpcStub(host, on_start="none") as stub:
        status, body, headers = http(stub, "POST", W, code="k")
        assert status == 202 and body["instance_id"] == f"weekly-batch-{W}" and body["started"] is True
        assert headers["Location"] == f"http://localhost:7071/api/batches/{W}?code=k"
        again = http(stub, "POST", W)  # running: ADF waits for the batch the week already has
        assert again[0] == 202 and again[1]["started"] is False and again[2]["Location"].endswith(W)
        assert len(host.instances) == 1
        assert http(stub, "GET", W)[0] == 202
        assert http(stub, "GET", "2026-12-22")[0] == 400
        assert http(stub, "GET", "2026-12-14")[0] == 404
        bad = http(stub, "POST", "2026-12-28", {"partial": "maybe", "extra": 1})
        assert bad[0] == 400 and {p["field"] for p in bad[1]["problems"]} == {"partial", "extra"}


def test_adf_is_told_which_sources_are_missing_and_may_start_on_what_is_there(bridge):
    world(bridge, weather=False)
    host = idle_host()
    with DurableRpcStub(host, on_start="none") as stub:
        status, body, _ = http(stub, "POST", W)
        assert status == 409 and body["error"] == "data_incomplete" and body["missing"] == ["weather_daily"]
        assert not host.instances
        status, body, _ = http(stub, "POST", W, {"partial": True})
        assert status == 202 and body["missing"] == ["weather_daily"]


def test_the_schedule_waits_for_a_missing_source_and_the_batch_says_which(bridge):
    world(bridge, weather=False)
    host = idle_host()
    monday = dt.datetime(2026, 12, 28, 9, 0, tzinfo=dt.UTC)  # the week of W has ended
    with DurableRpcStub(host, on_start="none") as stub:

        async def tick(partial):
            client = DurableOrchestrationClient(stub.client_binding_json())
            return await start.schedule_batch(client, bridge, partial, monday)

        status, body, _ = run_async(tick(False))
        assert status == 409 and not host.instances
        waiting = json.loads(bridge.read_bytes(f"batches/week={W}/waiting.json"))
        assert waiting["missing"] == ["weather_daily"] and waiting["by"] == "schedule"
        got = http(stub, "GET", W)
        assert got[0] == 200 and got[1]["outcome"] == "waiting_for_data" and got[1]["missing"] == ["weather_daily"]
        status, body, _ = run_async(tick(True))  # FORECASTOPS_BATCH_INCOMPLETE=partial
        assert status == 202 and body["missing"] == ["weather_daily"]


def test_the_queue_message_of_a_complete_week_starts_its_batch_and_a_bad_one_raises(bridge):
    world(bridge)
    host = idle_host()
    fn = find_function(poll_aml_durable.bp, "weekly_batch_queue")
    with DurableRpcStub(host, on_start="none") as stub:
        msg = func.QueueMessage(body=json.dumps({"week": W, "by": "data_complete", "at": "x", "raw": "raw/x"}).encode())
        run_async(fn.get_user_function()(msg=msg, client=stub.client_binding_json()))
        assert list(host.instances) == [f"weekly-batch-{W}"]
        for bad in (b"not json", json.dumps({"week": "2026-12-22"}).encode(), json.dumps([1]).encode()):
            with pytest.raises(ValueError):
                run_async(fn.get_user_function()(msg=func.QueueMessage(body=bad), client=stub.client_binding_json()))


def test_a_queue_message_nested_too_deep_is_refused_with_a_log_line_not_a_recursion_error(bridge, caplog):
    fn = find_function(poll_aml_durable.bp, "weekly_batch_queue")
    deep = ("[" * 100_000 + "]" * 100_000).encode()
    with DurableRpcStub(idle_host(), on_start="none") as stub, pytest.raises(ValueError) as e:
        run_async(fn.get_user_function()(msg=func.QueueMessage(body=deep), client=stub.client_binding_json()))
    assert not isinstance(e.value, RecursionError)
    assert any("nested too deep" in r.getMessage() for r in caplog.records)


def test_a_hundred_concurrent_starters_of_one_week_start_one_batch(blob_lake):
    """A hundred starts of the same week at once (data-complete messages, the schedule, ADF),
    each with its own client: every one checks before any starts, so the claim on Azurite is
    what lets exactly one ``start_new`` through."""
    world(blob_lake)
    host = idle_host()
    with DurableRpcStub(host, on_start="none") as stub:

        async def everyone():
            async def one(i: int):
                client = DurableOrchestrationClient(stub.client_binding_json())
                by = ("data_complete", "schedule", "http")[i % 3]
                return await start.start_batch(client, blob_lake, BatchInput(week=W, by=by), "http://x", NOW)

            return await asyncio.gather(*(one(i) for i in range(100)))

        answered = run_async(everyone())
        answers = [status for status, _, _ in answered]
        started = [body["started"] for _, body, _ in answered]
        starts = [r for r in stub.requests if r[0] == "POST" and "orchestrators/weekly_batch" in r[1]]
        looks = [r for r in stub.requests if r[0] == "GET"]
    assert len(looks) >= 100  # every starter looked for the instance before one started it
    assert len(host.instances) == 1 and len(starts) == 1
    assert answers.count(202) == 100 and started.count(True) == 1  # all wait on the one batch


def test_a_claim_whose_starter_died_is_taken_over_after_its_timeout(bridge):
    world(bridge)
    host = idle_host()
    bridge.create(
        f"batches/week={W}/started-weekly-batch-{W}.json", json.dumps({"claimed_at": "2026-12-28T08:00:00Z"}).encode()
    )
    with DurableRpcStub(host, on_start="none") as stub:

        async def go(now):
            client = DurableOrchestrationClient(stub.client_binding_json())
            return await start.start_batch(client, bridge, BatchInput(week=W), "http://x", now)

        being_started = run_async(go(dt.datetime(2026, 12, 28, 8, 1, tzinfo=dt.UTC)))
        assert being_started[0] == 202 and being_started[1]["started"] is False
        assert not host.instances
        assert run_async(go(dt.datetime(2026, 12, 28, 8, 10, tzinfo=dt.UTC)))[0] == 202
        assert list(host.instances) == [f"weekly-batch-{W}"]


def test_a_failed_week_is_started_again_only_when_asked_and_then_gets_runs_of_its_own(batch_lake):
    """The week's batch failed (its training run did): the next start answers that batch (502),
    a start with rerun=true plans anew, and its runs are new AML jobs, not the failed ones."""
    world(batch_lake)
    aml = FakeAML(batch_lake, fail={"forecast"})
    host = DurableHost(ORCH, aml.activities(), orchestrators={"watch_pipeline_runs": WATCH}, start_time=NOW)
    with DurableRpcStub(host, on_start="run") as stub:
        first = http(stub, "POST", W)
        assert first[0] == 202 and first[1]["started"] is True
        failed = http(stub, "GET", W)
        assert failed[0] == 502 and failed[1]["error"] == "batch_failed" and "ended failed" in failed[1]["message"]
        again = http(stub, "POST", W)
        assert again[0] == 502 and again[1]["started"] is False  # the week has its batch: a failed one
        aml.fail.clear()
        rerun = http(stub, "POST", W, {"rerun": True})
        assert rerun[0] == 202 and rerun[1]["started"] is True, rerun
        done = http(stub, "GET", W)
        assert done[0] == 200 and done[1]["outcome"] == "succeeded", done
    keys = [r["idempotency_key"] for r in aml.submitted if r["pipeline"] == "forecast"]
    assert len(keys) == 2 and keys[0] != keys[1]


def test_a_step_that_fails_on_every_attempt_ends_the_batch_failed_without_its_error_text(batch_lake):
    world(batch_lake)
    aml = FakeAML(batch_lake)

    real = aml.activities()[names.BATCH_STEP]
    tried = []

    def broken(request):
        tried.append(request["step"])
        if request["step"] == "record":  # the lake is back: the failure is recorded
            return real(request)
        raise RuntimeError('Traceback (most recent call last):\n  File "/home/me/secret.py", line 1\nKeyError: x')

    activities = aml.activities() | {names.BATCH_STEP: broken}
    host = DurableHost(ORCH, activities, orchestrators={"watch_pipeline_runs": WATCH}, start_time=NOW)
    state = host.status(host.start(BatchInput(week=W).model_dump(mode="json")))
    assert state.runtime_status == "Completed", state.error
    assert state.output["outcome"] == "failed"
    assert state.output["problems"] == ["the plan step failed; the app's logs have the details"]
    text = json.dumps(state.output)
    assert "Traceback" not in text and "/home/me" not in text
    # tried as often as BATCH_RETRY says, then recorded in the lake (and the telemetry) once
    assert tried == ["plan"] * weekly_batch.BATCH_RETRY.max_number_of_attempts + ["record"]
    recorded = json.loads(batch_lake.read_bytes(f"batches/week={W}/summary.json"))
    assert recorded["outcome"] == "failed" and recorded["problems"] == state.output["problems"]


def test_a_retrain_at_once_waits_while_the_weeks_batch_runs(bridge):
    world(bridge)
    host = idle_host()
    with DurableRpcStub(host, on_start="none") as stub:

        async def go(inp):
            client = DurableOrchestrationClient(stub.client_binding_json())
            return await start.start_batch(client, bridge, inp, "http://x", NOW)

        assert run_async(go(BatchInput(week=W)))[0] == 202  # the week's batch, still running
        stale = BatchInput(week=W, by="staleness", groups=[NE[0]])
        status, body, _ = run_async(go(stale))
        assert status == 409 and body["error"] == "batch_running"
        assert list(host.instances) == [f"weekly-batch-{W}"]


def test_a_partial_start_of_a_week_with_no_data_at_all_is_refused(bridge):
    host = idle_host()
    with DurableRpcStub(host, on_start="none") as stub:
        status, body, _ = http(stub, "POST", W, {"partial": True})
    assert status == 409 and body["error"] == "data_incomplete" and "nothing to train on" in body["message"]
    assert not host.instances


def test_adf_is_told_which_regions_a_source_lacks(bridge):
    """One region's shipments have not arrived: the week is not complete, and the answer says
    which region, not only which source."""
    assert world(bridge, west_shipments=False) == []
    host = idle_host()
    with DurableRpcStub(host, on_start="none") as stub:
        status, body, _ = http(stub, "POST", W)
    assert status == 409 and body["missing"] == ["shipments_weekly"] and body["gaps"] == {"shipments_weekly": ["west"]}
    assert body["message"].startswith(f"shipments_weekly lacks region west for the week of {W}")
    assert not host.instances


@pytest.mark.parametrize(
    "body",
    [
        {"partial": "true"},
        {"partial": 1},
        {"rerun": "yes"},
        {"groups": ["../../x"]},
        {"groups": ["a\nb"]},
        {"groups": [""]},
        {"groups": ["northeast.large.fast\n"]},
        {"groups": "northeast.large.fast"},
        {"retrain": "ALL"},
    ],
    ids=[
        "partial-text",
        "partial-int",
        "rerun-text",
        "group-dotdot",
        "group-newline",
        "group-empty",
        "group-trailing-nl",
    ]
    + ["groups-string", "retrain-case"],
)
def test_a_batch_start_is_strict(bridge, body):
    world(bridge)
    host = idle_host()
    with DurableRpcStub(host, on_start="none") as stub:
        status, answer, _ = http(stub, "POST", W, body)
    assert status == 400 and answer["problems"] and not host.instances
    assert "Traceback" not in json.dumps(answer)


@pytest.mark.parametrize("week", ["9999-12-27", "0001-01-01", "2031-01-06", "1990-01-01"])
def test_a_week_far_from_the_clock_is_refused(bridge, week):
    world(bridge)
    host = idle_host()
    with DurableRpcStub(host, on_start="none") as stub:
        status, answer, _ = http(stub, "POST", week, {"partial": True})
    assert status in (400, 409) and not host.instances
    assert [p["field"] for p in answer.get("problems", [])] == ["week"]


def test_a_partial_start_of_a_week_with_no_weekly_data_is_refused_though_the_store_master_is_there(bridge):
    world(bridge)  # data for W, and the store master; none for the week before
    host = idle_host()
    with DurableRpcStub(host, on_start="none") as stub:
        status, body, _ = http(stub, "POST", "2026-11-30", {"partial": True})
    assert status == 409 and body["error"] == "data_incomplete" and "nothing to train on" in body["message"]
    assert not host.instances


def test_a_valid_group_list_is_accepted():
    inp = BatchInput(week=W, by="staleness", groups=[NE[0], "west.small.slow"])
    assert inp.groups == [NE[0], "west.small.slow"]
