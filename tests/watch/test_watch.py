"""The watch policy (shared.watch.policy) and the status route's mapping (shared.watch.routes)."""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace

import pytest

from shared.aml.catalog import load_catalog
from shared.watch import loop
from shared.watch import policy as watch
from shared.watch import routes as watch_api

T0 = dt.datetime(2026, 11, 26, 6, 0, tzinfo=dt.UTC)


def status(aml_status, **kw):
    from shared.aml.status import normalise

    return {"aml_status": aml_status, "status": normalise(aml_status), "metrics": {}, "error": None, **kw}


def new_state(n=1, **options):
    return watch.start([watch.RunState(index=i, run_id=f"r{i}") for i in range(n)], watch.WatchOptions(**options), T0)


def test_polling_backs_off_exponentially_up_to_the_maximum():
    state = new_state(polling={"first_s": 10, "factor": 2, "max_s": 50})
    fires = []
    now = T0
    for _ in range(5):
        fire = watch.next_poll(state, now)
        fires.append((fire - now).total_seconds())
        now = fire
    assert fires == [10, 20, 40, 50, 50]


def test_completed_runs_pass_or_fail_the_gates():
    state = new_state(2)
    fresh = T0.timestamp() - 10 * 86400
    watch.observe(
        state,
        0,
        status("Completed", metrics={"evaluate": {"ne.large.fast.mape": 0.30, "ne.large.fast.trained_at": fresh}}),
        T0,
    )
    watch.observe(
        state,
        1,
        status("Completed", metrics={"evaluate": {"mape": 0.52, "trained_at": T0.timestamp() - 75 * 86400}}),
        T0,
    )
    assert state.runs[0].outcome == "completed"
    assert state.runs[1].outcome == "gate_failed"
    assert [(g["gate"], g["value"], g["by"]) for g in state.runs[1].gate_failures] == [
        ("max_mape", 0.52, 0.07),
        ("max_age_days", 75.0, 15.0),
    ]
    assert watch.after_poll(state, T0) == "done"
    watch.finish(state)
    assert state.outcome == "failed" and [r["run_id"] for r in watch.result(state)["failed"]] == ["r1"]


def test_not_responding_is_waited_out_up_to_the_limit():
    state = new_state(stuck_limit_s=600)
    watch.observe(state, 0, status("NotResponding"), T0)
    assert not state.runs[0].done
    watch.observe(state, 0, status("Running"), T0 + dt.timedelta(seconds=300))
    assert state.runs[0].stuck_since is None  # it recovered: the clock starts again next time
    watch.observe(state, 0, status("Paused"), T0 + dt.timedelta(seconds=400))
    watch.observe(state, 0, status("Paused"), T0 + dt.timedelta(seconds=999))
    assert not state.runs[0].done
    watch.observe(state, 0, status("Paused"), T0 + dt.timedelta(seconds=1100))
    assert state.runs[0].done and state.runs[0].outcome == "stuck"


def test_past_the_deadline_the_watch_times_out():
    state = new_state(timeout_s=100)
    watch.observe(state, 0, status("Running"), T0)
    assert watch.after_poll(state, T0 + dt.timedelta(seconds=50)) == "wait"
    assert watch.next_poll(state, T0 + dt.timedelta(seconds=95)) == T0 + dt.timedelta(seconds=100)  # never past it
    assert watch.after_poll(state, T0 + dt.timedelta(seconds=100)) == "timed_out"
    watch.time_out(state)
    assert state.outcome == "timed_out" and state.runs[0].outcome == "timed_out"


def test_custom_status_stays_under_16_kb_for_any_batch():
    for n in (1, 28, 500):
        state = new_state(n)
        for i in range(n):
            watch.observe(state, i, status("Running"), T0)
        size = len(json.dumps(watch.progress(state)))
        assert size < 16 * 1024, (n, size)
    assert watch.progress(state)["per_run_truncated"] > 0


def test_watch_here_drives_the_same_policy_with_real_waits_replaced():
    script = {"r0": ["Queued", "Running", "Completed"], "r1": ["Running", "Failed"]}
    sleeps, canceled = [], []

    def get_status(run_id):
        seq = script[run_id]
        return status(
            seq.pop(0) if len(seq) > 1 else seq[0],
            error={"step": "train", "message": "boom"} if seq[0] == "Failed" else None,
        )

    clock = [T0]

    def sleep(s):
        sleeps.append(s)
        clock[0] += dt.timedelta(seconds=s)

    state = loop.watch_here(
        get_status,
        canceled.append,
        new_state(2, polling={"first_s": 5, "factor": 2, "max_s": 60}),
        sleep=sleep,
        now=lambda: clock[0],
    )
    assert state.outcome == "failed" and canceled == []
    assert [r.outcome for r in state.runs] == ["completed", "failed"]
    assert state.runs[1].failed_step == "train"
    assert sleeps == [5, 10]


def test_watch_here_cancels_on_timeout():
    canceled = []
    clock = [T0]

    def sleep(s):
        clock[0] += dt.timedelta(seconds=s)

    state = loop.watch_here(
        lambda r: status("Running"),
        canceled.append,
        new_state(1, timeout_s=60, polling={"first_s": 30}),
        sleep=sleep,
        now=lambda: clock[0],
    )
    assert state.outcome == "timed_out" and canceled == ["r0"]


# the starter's request ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, ["(body)"]),
        ({"run_id": "a", "pipeline": "smoke"}, ["(body)"]),
        (
            {"pipeline": "smoke", "runs": [{"parameters": {"fail_step": "x"}}, {"parameters": {"zzz": 1}}]},
            ["runs.0.parameters.fail_step", "runs.1.parameters.zzz"],
        ),
        ({"run_id": "r", "timeout_s": -1, "polling": {"first_s": 0}}, ["timeout_s", "polling.first_s"]),
    ],
)
def test_a_bad_start_request_lists_every_problem(body, fields):
    plan, problems = watch_api.plan_start(json.dumps(body).encode(), load_catalog(), T0)
    assert plan is None
    assert [p["field"] for p in problems] == fields


def test_an_unknown_pipeline_is_told_apart_for_a_404():
    plan, problem = watch_api.plan_start(b'{"pipeline": "nope"}', load_catalog(), T0)
    assert plan is None and "no pipeline 'nope'" in problem["unknown_pipeline"]


def test_a_batch_plans_one_run_per_entry_with_options():
    body = {
        "pipeline": "smoke",
        "runs": [{"parameters": {"region": f"r{i}"}} for i in range(28)],
        "timeout_s": 3600,
        "gates": {"max_mape": 0.4},
        "idempotency_key": "adf-1",
    }
    plan, problems = watch_api.plan_start(json.dumps(body).encode(), load_catalog(), T0)
    assert problems is None
    state = watch.WatchState.model_validate(plan["state"])
    assert len(state.runs) == 28 and state.runs[5].parameters["region"] == "r5" and state.runs[5].run_id is None
    assert state.options.gates.max_mape == 0.4 and state.options.gates.max_age_days == 60
    assert state.deadline == "2026-11-26T07:00:00Z"
    assert (
        watch_api.instance_id_for("adf-1") == watch_api.instance_id_for("adf-1") != watch_api.instance_id_for("adf-2")
    )


# the status route's mapping ---------------------------------------------------------------------
def durable_status(runtime, output=None, custom=None):
    return SimpleNamespace(
        runtime_status=SimpleNamespace(value=runtime) if runtime else None, output=output, custom_status=custom
    )


def finished(outcome, failed=()):
    return {"outcome": outcome, "runs_total": 2, "runs_completed": 2 - len(failed), "failed": list(failed), "runs": []}


@pytest.mark.parametrize(
    ("runtime", "output", "code"),
    [
        ("Pending", None, 202),
        ("Running", None, 202),
        ("Completed", finished("succeeded"), 200),
        (
            "Completed",
            finished("failed", [{"run_id": "r1", "outcome": "failed", "aml_status": "Failed", "failed_step": "train"}]),
            502,
        ),
        (
            "Completed",
            finished(
                "failed",
                [
                    {
                        "run_id": "r1",
                        "outcome": "gate_failed",
                        "gate_failures": [
                            {"gate": "max_mape", "metric": "mape", "value": 0.5, "limit": 0.45, "by": 0.05}
                        ],
                    }
                ],
            ),
            422,
        ),
        ("Completed", finished("timed_out", [{"run_id": "r1", "outcome": "timed_out"}]), 504),
        ("Completed", finished("canceled", [{"run_id": "r1", "outcome": "canceled"}]), 409),
        ("Failed", "Orchestrator function 'watch_pipeline_runs' failed: boom", 500),
        ("Terminated", None, 409),
        (None, None, 404),
    ],
)
def test_every_runtime_status_maps_to_an_answer_adf_acts_on(runtime, output, code):
    custom = {"next_poll_at": "2026-11-26T06:00:40Z", "counts": {"running": 2}}
    status_code, body, headers = watch_api.answer_status(durable_status(runtime, output, custom), "w1", "http://h", T0)
    assert status_code == code
    assert isinstance(body, dict)
    if code == 202:
        assert headers == {"Location": "http://h/api/orchestrations/pipeline-runs/w1", "Retry-After": "40"}
        assert body["progress"]["counts"] == {"running": 2}
    if code in (502, 422):
        assert "run r1" in body["message"]
    if code == 422:
        assert "max_mape" in body["message"] and "over by 0.05" in body["message"]


def test_the_readme_start_body_is_a_valid_request():
    import re

    from tests.drivers import docs_text

    text = docs_text()
    body = re.search(r'^(\{"pipeline": "smoke", "runs".+?\})\n```', text, re.M | re.S).group(1)
    plan, problems = watch_api.plan_start(body.replace("@{pipeline().RunId}", "adf-1").encode(), load_catalog(), T0)
    assert problems is None and len(plan["state"]["runs"]) == 2


# the gates fail closed ------------------------------------------------------------------------
FORECAST_GATES = load_catalog()["forecast"].gates
FRESH = T0.timestamp() - 86400


def forecast_state(**options):
    return watch.start(
        [watch.RunState(index=0, run_id="r0", pipeline="forecast")], watch.WatchOptions(gates=FORECAST_GATES), T0
    )


@pytest.mark.parametrize(
    ("metrics", "failed_metric"),
    [
        ({"evaluate": {"ne.large.fast.mape": float("nan"), "ne.large.fast.trained_at": FRESH}}, "ne.large.fast.mape"),
        ({"evaluate": {"ne.large.fast.mape": float("inf"), "ne.large.fast.trained_at": FRESH}}, "ne.large.fast.mape"),
        ({"evaluate": {"ne.large.fast.mape": None, "ne.large.fast.trained_at": FRESH}}, "ne.large.fast.mape"),
        ({"evaluate": {"ne.large.fast.mape": 0.2}}, "ne.large.fast.trained_at"),
        ({"evaluate": {"ne.large.fast.trained_at": FRESH}}, "ne.large.fast.mape"),
        ({}, None),
        ({"evaluate": {"models": 56}}, None),
    ],
    ids=["nan", "infinity", "null", "no-trained_at", "no-mape", "no-metrics", "other-metrics-only"],
)
def test_a_missing_or_non_finite_metric_fails_the_gates_naming_it(metrics, failed_metric):
    state = forecast_state()
    watch.observe(state, 0, status("Completed", metrics=metrics), T0)
    run = state.runs[0]
    assert run.outcome == "gate_failed"
    assert all(g["gate"] == "metrics" and g["message"] for g in run.gate_failures)
    if failed_metric:
        assert failed_metric in [g["metric"] for g in run.gate_failures]
        assert "ne.large.fast" in [g["model"] for g in run.gate_failures]
    # JSON never carries NaN: the value is null in the state and in the answer
    json.dumps(watch.result(state), allow_nan=False)


def test_complete_finite_metrics_pass_and_the_overall_row_needs_no_age():
    state = forecast_state()
    metrics = {
        "evaluate": {"a.mape": 0.3, "a.trained_at": FRESH, "b.mape": 0.2, "b.trained_at": FRESH, "overall.mape": 0.25}
    }
    watch.observe(state, 0, status("Completed", metrics=metrics), T0)
    assert state.runs[0].outcome == "completed" and state.runs[0].gate_failures == []


def test_a_pipeline_that_requires_no_metrics_passes_without_any():
    state = new_state(1, gates=load_catalog()["smoke"].gates)
    watch.observe(state, 0, status("Completed"), T0)
    assert state.runs[0].outcome == "completed"


def test_a_followed_run_is_held_to_its_own_pipelines_gates(monkeypatch):
    plan, problems = watch_api.plan_start(b'{"run_id": "forecast-1"}', load_catalog(), T0)
    assert problems is None
    state = watch.WatchState.model_validate(plan["state"])
    watch.observe(state, 0, status("Completed", pipeline="forecast", metrics={}), T0)
    assert state.runs[0].outcome == "gate_failed"  # the forecast pipeline requires MAPE and trained_at
    smoke = watch.WatchState.model_validate(plan["state"])
    watch.observe(smoke, 0, status("Completed", pipeline="smoke", metrics={}), T0)
    assert smoke.runs[0].outcome == "completed"


@pytest.mark.parametrize(
    ("gates", "field"),
    [
        ({"max_mape": None}, "gates"),
        ({"max_age_days": None}, "gates"),
        ({"max_mape": 0.9}, "gates"),
        ({"x": 1}, "gates.x"),
    ],
    ids=["switch-off-mape", "switch-off-age", "looser", "unknown"],
)
def test_a_caller_cannot_loosen_or_switch_off_the_gates(gates, field):
    body = {"pipeline": "forecast", "gates": gates}
    plan, problems = watch_api.plan_start(json.dumps(body).encode(), load_catalog(), T0)
    assert plan is None and [p["field"] for p in problems] == [field]
    assert "catalog" in problems[0]["message"] or field == "gates.x"


def test_a_caller_may_make_the_gates_stricter():
    plan, _ = watch_api.plan_start(b'{"pipeline": "forecast", "gates": {"max_mape": 0.3}}', load_catalog(), T0)
    gates = watch.WatchState.model_validate(plan["state"]).options.gates
    assert gates.max_mape == 0.3 and gates.max_age_days == 60 and gates.required == ("mape", "trained_at")


def test_an_unknown_pipeline_is_404_even_when_the_rest_is_wrong_too():
    body = {"pipeline": "nope", "timeout_s": -1, "parameters": {"x": 1}, "extra": True}
    plan, problem = watch_api.plan_start(json.dumps(body).encode(), load_catalog(), T0)
    assert plan is None and "no pipeline 'nope'" in problem["unknown_pipeline"]


def test_option_and_parameter_problems_are_listed_together():
    body = {"pipeline": "smoke", "timeout_s": -1, "parameters": {"fail_step": "deploy"}}
    plan, problems = watch_api.plan_start(json.dumps(body).encode(), load_catalog(), T0)
    assert plan is None and [p["field"] for p in problems] == ["timeout_s", "parameters.fail_step"]


def test_the_same_request_has_the_same_fingerprint_whatever_its_layout():
    a = b'{"pipeline": "smoke", "parameters": {"region": "west", "seconds": 1}, "idempotency_key": "k"}'
    b = b'{"idempotency_key":"k","parameters":{"seconds":1,"region":"west"},"pipeline":"smoke"}'
    c = b'{"pipeline": "smoke", "parameters": {"region": "east", "seconds": 1}, "idempotency_key": "k"}'
    fp = [watch_api.plan_start(x, load_catalog(), T0)[0]["state"]["request"] for x in (a, b, c)]
    assert fp[0] == fp[1] != fp[2]


def test_suspended_is_not_a_failure_but_a_202_with_its_state():
    status_ = SimpleNamespace(runtime_status="Suspended", custom_status={"runs": 1}, output=None)
    code, body, headers = watch_api.answer_status(status_, "i1", "https://app", T0, code="my-key")
    assert code == 202 and body["runtime_status"] == "Suspended" and body["progress"] == {"runs": 1}
    assert headers["Location"] == "https://app/api/orchestrations/pipeline-runs/i1?code=my-key"


def test_an_activity_failure_keeps_one_line_and_never_a_traceback_or_a_path():
    ours = json.dumps(
        {"run_id": "r1", "what": "status", "status": 503, "error": "aml_unavailable", "message": "AML busy"}
    )
    text = f'ActivityError: {ours} \n Traceback (most recent call last):\n  File "/home/site/wwwroot/x.py", line 3'
    assert watch.activity_failure(text) == "status answered 503 (aml_unavailable): AML busy"
    foreign = "KeyError: '/home/site/wwwroot/shared/secret.py' \n Traceback:\n  File \"/home/x.py\""
    assert watch.activity_failure(foreign) == watch.ACTIVITY_FAILED


def test_a_stuck_run_is_cancelled_in_aml_and_the_outcome_says_so():
    state = new_state(1, stuck_limit_s=60, polling={"first_s": 30, "factor": 1})
    clock = [T0]
    canceled = []

    def sleep(s):
        clock[0] += dt.timedelta(seconds=s)

    final = loop.watch_here(
        lambda r: status("NotResponding"), canceled.append, state, sleep=sleep, now=lambda: clock[0]
    )
    assert final.runs[0].outcome == "stuck" and canceled == ["r0"]
    assert watch.result(final)["runs"][0]["cancel_requested"] is True


def test_a_run_whose_status_stays_unavailable_is_cancelled_best_effort():
    state = new_state(1, stuck_limit_s=60, polling={"first_s": 30, "factor": 1})
    clock = [T0]

    def unreachable(run_id):
        raise RuntimeError("AML answered 503")

    def cancel(run_id):
        raise RuntimeError("AML answered 503 again")

    def sleep(s):
        clock[0] += dt.timedelta(seconds=s)

    final = loop.watch_here(unreachable, cancel, state, sleep=sleep, now=lambda: clock[0])
    run = watch.result(final)["runs"][0]
    assert run["outcome"] == "failed" and run["error"]["code"] == "status_unavailable"
    assert run["cancel_requested"] is False and "AML answered 503 again" in run["cancel_error"]


def test_the_command_line_holds_a_run_to_its_pipelines_gates():
    """``loop.follow`` (the CLI's watch, the main job) knows the catalog's gates: a forecast
    run that completes without its models' metrics fails them, as in Azure."""
    from shared.aml.backend import Backend
    from shared.aml.status import RunStatus

    class Completed(Backend):
        name = "stub"

        def submit(self, pipeline, request, run_id):
            raise NotImplementedError

        def get(self, run_id, known_status=None):
            return RunStatus.of(run_id, "Completed", pipeline="forecast", backend=self.name)

        def cancel(self, run_id):
            raise NotImplementedError

    final = loop.follow(Completed(), ["forecast-1"], watch.WatchOptions())
    assert final.runs[0].outcome == "gate_failed"
    assert {g["gate"] for g in final.runs[0].gate_failures} == {"metrics"}


def follow_on_azureml(fake, run_ids):
    """``loop.follow`` (the command line's watch) on the azureml backend over AML's fake, on a
    clock of its own: a run whose status cannot be read is given up after a minute."""
    from tests.app.test_poll_aml_durable import azureml_backend

    clock = [T0]

    def sleep(s):
        clock[0] += dt.timedelta(seconds=s)

    options = watch.WatchOptions(stuck_limit_s=60, polling={"first_s": 30, "factor": 1})
    return loop.follow(azureml_backend(fake), run_ids, options, sleep=sleep, now=lambda: clock[0])


def test_the_command_line_counts_a_cancel_of_a_run_aml_does_not_know_as_done():
    from tests.fakes.aml.fake import FakeAML

    fake = FakeAML()
    final = follow_on_azureml(fake, ["ghost"])
    run = watch.result(final)["runs"][0]
    assert run["error"]["code"] == "status_unavailable"
    assert len(fake.requests_to("POST", r"/jobs/ghost/cancel$")) == 1
    assert run["cancel_requested"] is False and run["cancel_error"] is None and "ghost" in run["cancel_note"]


def test_the_command_line_records_a_cancel_aml_refuses_as_its_error():
    from tests.fakes.aml.fake import FakeAML

    fake = FakeAML()
    fake.inject("POST", r"/cancel$", 403, forever=True)
    run = watch.result(follow_on_azureml(fake, ["ghost"]))["runs"][0]
    assert len(fake.requests_to("POST", r"/jobs/ghost/cancel$")) == 1
    assert run["cancel_requested"] is False and run["cancel_note"] is None
    assert run["cancel_error"].startswith("cancel failed: cancel job: the app's identity has no rights")


def test_the_apps_default_polling_does_not_change_the_requests_fingerprint():
    body = b'{"pipeline": "smoke", "idempotency_key": "adf-1"}'
    plain, _ = watch_api.plan_start(body, load_catalog(), T0)
    safety, _ = watch_api.plan_start(body, load_catalog(), T0, {"first_s": 900, "factor": 1.0, "max_s": 900})
    assert plain["state"]["request"] == safety["state"]["request"]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"polling": {"first_s": 1e-9}}, "polling.first_s"),
        ({"polling": {"max_s": 0.001}}, "polling.max_s"),
        ({"stuck_limit_s": "Infinity"}, "stuck_limit_s"),
        ({"stuck_limit_s": 1e999}, "stuck_limit_s"),
        ({"timeout_s": float("nan")}, "timeout_s"),
        ({"polling": {"first_s": float("inf")}}, "polling.first_s"),
        ({"cancel_on_timeout": "false"}, "cancel_on_timeout"),
        ({"polls_per_generation": 2.5}, "polls_per_generation"),
        ({"timeout_s": "60"}, "timeout_s"),
    ],
    ids=["tiny-poll", "tiny-cap", "text-infinity", "overflow", "nan", "inf-poll", "bool-text", "float-int", "text-num"],
)
def test_the_watchs_options_are_strict_finite_and_bounded(options, field):
    body = {"run_id": "r1", **options}
    plan, problems = watch_api.plan_start(json.dumps(body).encode(), load_catalog(), T0)
    assert plan is None and [p["field"] for p in problems] == [field]
    assert all("Traceback" not in p["message"] for p in problems)


def test_the_watch_has_a_minimum_poll_interval():
    with pytest.raises(ValueError):
        watch.Polling(first_s=0.01)
    with pytest.raises(ValueError):
        watch.WatchOptions(stuck_limit_s=float("inf"))
    assert watch.Polling(first_s=watch.MIN_POLL_S).first_s == watch.MIN_POLL_S


@pytest.mark.parametrize("gates", [{"max_mape": "0.3"}, {"max_mape": 1e999}, {"max_age_days": True}], ids=str)
def test_a_callers_gates_are_strict_and_finite(gates):
    plan, problems = watch_api.plan_start(json.dumps({"run_id": "r1", "gates": gates}).encode(), load_catalog(), T0)
    assert plan is None and [p["field"].split(".")[0] for p in problems] == ["gates"]
