"""trigger_aml's HTTP routes, called as the worker calls them, over the local backend."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import azure.functions as func
import pytest

from shared import runtime
from tests.drivers import indexed_functions


@pytest.fixture
def api(monkeypatch, tmp_path):
    monkeypatch.setenv("FORECASTOPS_LAKE_ROOT", str(tmp_path / "lake"))
    monkeypatch.setenv("FORECASTOPS_AML_BACKEND", "local")
    runtime.lake.cache_clear()
    runtime.aml_backend.cache_clear()
    fns = {name: fn.get_user_function() for name, fn in indexed_functions().items()}

    def call(name, method, route, body=None, **route_params):
        raw = body if isinstance(body, bytes) else (b"" if body is None else json.dumps(body).encode())
        req = func.HttpRequest(
            method=method, url=f"http://localhost:7071/api/{route}", body=raw, route_params=route_params, headers={}
        )
        resp = fns[name](req)
        assert resp.mimetype == "application/json"
        payload = json.loads(resp.get_body())
        assert isinstance(payload, dict)  # ADF's Azure Function activity needs an object
        return resp.status_code, payload, dict(resp.headers)

    yield call
    runtime.lake.cache_clear()
    runtime.aml_backend.cache_clear()


def submit(api, body, pipeline="smoke"):
    return api("pipeline_runs_submit", "POST", f"pipelines/{pipeline}/runs", body, pipeline=pipeline)


def wait(api, run_id, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body, _ = api("pipeline_runs_get", "GET", f"pipelines/runs/{run_id}", run_id=run_id)
        assert status == 200
        if body["terminal"]:
            return body
        time.sleep(0.05)
    raise AssertionError("run did not end")


def test_submit_answers_202_with_location_then_the_run_completes(api):
    t0 = time.monotonic()
    status, body, headers = submit(api, {"parameters": {"seconds": 0.05}, "idempotency_key": "adf-1"})
    assert time.monotonic() - t0 < 5
    assert status == 202 and body["created"] is True and body["backend"] == "local" and body["pipeline"] == "smoke"
    assert body["status"] == "queued" and headers["Location"] == body["status_url"]
    assert body["status_url"] == f"http://localhost:7071/api/pipelines/runs/{body['run_id']}"
    final = wait(api, body["run_id"])
    assert final["aml_status"] == "Completed" and final["status"] == "completed"
    assert [s["name"] for s in final["steps"]] == ["prepare", "train", "evaluate"]
    assert final["metrics"]["train"] == {"train_seconds": 0.05}


def test_resubmitting_the_same_key_answers_200_with_the_same_run(api):
    _, first, _ = submit(api, {"idempotency_key": "adf-2", "parameters": {"seconds": 0.05}})
    status, again, headers = submit(api, {"idempotency_key": "adf-2", "parameters": {"seconds": 0.05}})
    assert status == 200 and again["run_id"] == first["run_id"] and again["created"] is False
    assert headers["Location"] == first["status_url"]
    wait(api, first["run_id"])


def test_two_identical_requests_racing_start_one_run(api):
    body = {"idempotency_key": "adf-race", "parameters": {"seconds": 0.05}}
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: submit(api, body), range(6)))
    assert sorted(a[0] for a in answers) == [200] * 5 + [202]
    assert len({a[1]["run_id"] for a in answers}) == 1
    wait(api, answers[0][1]["run_id"])


def test_the_adf_execute_pipeline_activity_body_is_accepted(api):
    status, body, _ = submit(
        api,
        {
            "experimentName": "weekly",
            "mlPipelineParameters": {"seconds": "0.05", "region": "west"},
            "dataPathAssignments": {},
            "continueOnStepFailure": False,
        },
    )
    assert status == 202
    final = wait(api, body["run_id"])
    assert final["experiment"] == "weekly" and final["aml_status"] == "Completed"


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (b"{broken", ["(body)"]),
        ({"parameters": {"seconds": "x"}}, ["parameters.seconds"]),
        ({"parameters": {"nope": 1}, "inputs": {"nope": "a"}}, ["parameters.nope", "inputs.nope"]),
        ({"idempotency_key": "has spaces", "experiment": "!"}, ["experiment", "idempotency_key"]),
    ],
    ids=["not-json", "wrong-type", "unknown-names", "bad-key-and-experiment"],
)
def test_a_bad_request_is_400_listing_every_problem(api, body, fields):
    status, answer, _ = submit(api, body)
    assert status == 400 and answer["error"] == "invalid_request"
    assert [p["field"] for p in answer["problems"]] == fields


def test_unknown_pipeline_and_run_are_404(api):
    status, body, _ = submit(api, {}, pipeline="nope")
    assert status == 404 and "smoke" in body["message"]
    assert api("pipeline_runs_get", "GET", "pipelines/runs/nope", run_id="nope")[0] == 404
    assert api("pipeline_runs_get", "GET", "pipelines/runs/..", run_id="..")[0] == 404
    assert api("pipeline_runs_cancel", "POST", "pipelines/runs/nope/cancel", run_id="nope")[0] == 404


def test_a_failed_run_reports_the_step_and_message(api):
    _, body, _ = submit(api, {"parameters": {"seconds": 0.05, "fail_step": "evaluate"}})
    final = wait(api, body["run_id"])
    assert final["status"] == "failed" and final["error"]["step"] == "evaluate"
    assert "failing as asked" in final["error"]["message"]


def test_cancel_answers_202_and_is_idempotent(api):
    _, body, _ = submit(api, {"parameters": {"seconds": 30}})
    run_id = body["run_id"]
    first = api("pipeline_runs_cancel", "POST", f"pipelines/runs/{run_id}/cancel", run_id=run_id)
    second = api("pipeline_runs_cancel", "POST", f"pipelines/runs/{run_id}/cancel", run_id=run_id)
    assert first[0] == second[0] == 202
    assert wait(api, run_id, timeout=30)["aml_status"] == "Canceled"


def test_the_catalog_is_listed(api):
    status, body, _ = api("pipelines_list", "GET", "pipelines")
    assert status == 200 and body["pipelines"]["smoke"]["parameters"]["fail_step"]["allowed"][0] == "none"


def test_a_backend_that_cannot_be_built_is_a_json_answer_not_a_500_page(monkeypatch, tmp_path):
    monkeypatch.setenv("FORECASTOPS_AML_BACKEND", "azureml")  # and no AML_* settings
    runtime.aml_backend.cache_clear()
    fns = {name: fn.get_user_function() for name, fn in indexed_functions().items()}
    req = func.HttpRequest(
        method="POST",
        url="http://localhost:7071/api/pipelines/smoke/runs",
        body=b"{}",
        route_params={"pipeline": "smoke"},
        headers={},
    )
    resp = fns["pipeline_runs_submit"](req)
    body = json.loads(resp.get_body())
    assert resp.status_code == 500 and body["error"] == "config"
    assert "AML_SUBSCRIPTION_ID, AML_RESOURCE_GROUP, AML_WORKSPACE" in body["message"]
    runtime.aml_backend.cache_clear()


def test_an_unexpected_error_is_logged_and_answered_without_a_stack_trace(api, monkeypatch):
    def broken(*a, **k):
        raise KeyError("the internals")

    monkeypatch.setattr("shared.aml.runs.validate_request", broken)
    status, body, _ = submit(api, {})
    assert status == 500 and body == {
        "error": "internal_error",
        "message": "an unexpected error; the app's logs have the details",
    }


def test_the_same_key_with_another_request_is_409_naming_the_key(api):
    _, first, _ = submit(api, {"idempotency_key": "adf-9", "parameters": {"seconds": 0.05, "region": "west"}})
    same = submit(api, {"parameters": {"region": "west", "seconds": 0.05}, "idempotency_key": "adf-9"})
    other = submit(api, {"idempotency_key": "adf-9", "parameters": {"seconds": 0.05, "region": "east"}})
    assert same[0] == 200 and same[1]["run_id"] == first["run_id"]
    assert other[0] == 409 and other[1]["error"] == "idempotency_conflict" and "adf-9" in other[1]["message"]
    wait(api, first["run_id"])


def test_adfs_execute_pipeline_body_is_taken_whole_and_its_v1_fields_kept_as_tags(api):
    body = {
        "mlPipelineId": "7b5c1b9e-2f0e-4c62-9d2c-6e7d4c0a9f11",
        "mlPipelineEndpointId": "endpoint-1",
        "version": "3",
        "experimentName": "weekly",
        "mlPipelineParameters": {"seconds": "0.05"},
        "dataPathAssignments": {},
        "mlParentRunId": "adf-parent",
        "continueOnStepFailure": False,
    }
    status, answer, _ = submit(api, body)
    assert status == 202
    final = wait(api, answer["run_id"])
    assert final["aml_status"] == "Completed" and final["experiment"] == "weekly"
    assert (
        final["tags"]["adf.mlPipelineId"] == body["mlPipelineId"] and final["tags"]["adf.mlParentRunId"] == "adf-parent"
    )


def test_no_answer_carries_nan_or_infinity():
    from shared import http

    fields = http.response_fields((200, {"metrics": {"evaluate": {"mape": float("nan"), "x": float("-inf")}}}, {}))
    assert json.loads(fields["body"]) == {"metrics": {"evaluate": {"mape": None, "x": None}}}
