"""The watch policy (shared.watch.policy) and the status route's mapping (shared.watch.http)."""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace

import pytest

from shared.aml.catalog import load_catalog
from shared.watch import http as watch_api
from shared.watch import loop
from shared.watch import policy as watch

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
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    body = re.search(r'^(\{"pipeline": "smoke", "runs".+?\})\n```', text, re.M | re.S).group(1)
    plan, problems = watch_api.plan_start(body.replace("@{pipeline().RunId}", "adf-1").encode(), load_catalog(), T0)
    assert problems is None and len(plan["state"]["runs"]) == 2
