"""The azureml backend with the real azure-ai-ml MLClient, answered by an in-process fake
of AML's REST API (tests/fakes/aml/)."""

from __future__ import annotations

import json

import pytest
from azure.ai.ml import MLClient

from shared import clock
from shared.aml import runs
from shared.aml.assets import components
from shared.aml.azureml import AzureMLBackend
from shared.aml.backend import BackendError, RunNotFound
from shared.aml.catalog import load_catalog
from tests.fakes.aml.credential import FakeCredential
from tests.fakes.aml.fake import FakeAML

SUB = "00000000-0000-0000-0000-000000000001"
WS = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
STEPS = ["prepare", "train", "evaluate"]
SMOKE = components()["forecastops_smoke_step"].version


@pytest.fixture
def fake():
    fake = FakeAML()
    fake.register_repo_components()  # as python -m shared aml-assets leaves the workspace
    return fake


@pytest.fixture
def backend(fake):
    return fake.backend()


def submit(backend, body, pipeline="smoke"):
    return runs.submit(backend, load_catalog(), pipeline, json.dumps(body).encode(), "https://app.example")


def test_submit_puts_the_pipeline_job_aml_expects(fake, backend):
    status, body, headers = submit(
        backend,
        {"parameters": {"seconds": 2, "region": "west"}, "idempotency_key": "adf-run-1", "tags": {"week": "2026-W48"}},
    )
    assert status == 202 and body["backend"] == "azureml" and body["status"] == "queued"
    run_id = body["run_id"]
    assert headers["Location"] == f"https://app.example/api/pipelines/runs/{run_id}"
    assert body["portal_url"].startswith(f"https://ml.azure.com/runs/{run_id}?wsid=")
    (put,) = fake.requests_to("PUT", r"/jobs/")
    assert put.path == f"{WS}/jobs/{run_id}"
    props = put.json["properties"]
    assert props["jobType"] == "Pipeline" and props["experimentName"] == "forecastops-smoke"
    fingerprint = props["tags"].pop("forecastops.request")  # what the key asked for (same key, other body: 409)
    assert len(fingerprint) == 64 and int(fingerprint, 16) >= 0
    assert props["tags"] == {
        "product": "forecastops",
        "purpose": "smoke",
        "week": "2026-W48",
        "forecastops.pipeline": "smoke",
        "forecastops.idempotency_key": "adf-run-1",
        "forecastops.components": f"forecastops_smoke_step:{SMOKE}",
    }
    assert props["inputs"]["region"] == {"jobInputType": "literal", "value": "west"}
    assert props["inputs"]["seconds"]["value"] in ("2", 2)
    assert props["settings"]["default_compute"] == f"{WS}/computes/cpu-cluster"
    assert {n: j["componentId"] for n, j in props["jobs"].items()} == {
        s: f"{WS}/components/forecastops_smoke_step/versions/{SMOKE}" for s in STEPS
    }
    # the steps read the lake as the compute's managed identity (infra/ gives it the roles)
    assert props["identity"] == {"identityType": "Managed"}
    assert fake.unhandled == []


def test_the_same_key_reattaches_without_a_second_put(fake, backend):
    first = submit(backend, {"idempotency_key": "adf-run-2"})
    again = submit(backend, {"idempotency_key": "adf-run-2"})
    assert first[0] == 202 and again[0] == 200 and again[1]["run_id"] == first[1]["run_id"]
    assert len(fake.requests_to("PUT", r"/jobs/")) == 1


def test_losing_a_race_to_an_identical_request_reattaches(fake, backend):
    first = submit(backend, {"idempotency_key": "adf-race"})
    run_id = first[1]["run_id"]
    # the second request's GET comes before the first PUT lands, and its PUT then conflicts
    fake.inject("GET", rf"/jobs/{run_id}$", [404])
    fake.inject("PUT", rf"/jobs/{run_id}$", [409])
    status, body, _ = submit(backend, {"idempotency_key": "adf-race"})
    assert status == 200 and body["run_id"] == run_id and body["created"] is False


def test_status_follows_the_run_with_steps_and_metrics(fake, backend):
    _, body, _ = submit(backend, {"idempotency_key": "k3"})
    run_id = body["run_id"]
    seen = []
    for aml_status in ("Queued", "Running", "Completed"):
        fake.set_status(run_id, aml_status)
        seen.append(runs.get(backend, run_id)[1]["aml_status"])
    assert seen == ["Queued", "Running", "Completed"]
    fake.set_metrics(fake.child_run(run_id, "evaluate")["runId"], {"mape": 0.31, "rmse_all": 4.2})
    _, final, _ = runs.get(backend, run_id)
    assert final["terminal"] is True and final["status"] == "completed"
    assert [(s["name"], s["aml_status"]) for s in final["steps"]] == [(s, "Completed") for s in STEPS]
    assert final["metrics"] == {"evaluate": {"mape": 0.31, "rmse_all": 4.2}}


def test_a_failed_run_names_the_failed_step_and_amls_message(fake, backend):
    _, body, _ = submit(backend, {"idempotency_key": "k4"})
    run_id = body["run_id"]
    fake.fail(run_id, step="train", message="MAPE 0.61 is above the gate")
    _, final, _ = runs.get(backend, run_id)
    assert final["status"] == "failed" and final["terminal"] is True
    assert final["error"]["step"] == "train" and "MAPE 0.61 is above the gate" in final["error"]["message"]
    assert [s["aml_status"] for s in final["steps"]] == ["Completed", "Failed", "Canceled"]


def test_cancel_asks_without_polling_and_answers_202(fake, backend):
    _, body, _ = submit(backend, {"idempotency_key": "k5"})
    run_id = body["run_id"]
    status, answer, _ = runs.cancel(backend, run_id)
    assert status == 202 and answer["aml_status"] == "CancelRequested" and answer["terminal"] is False
    assert len(fake.requests_to("POST", rf"/jobs/{run_id}/cancel$")) == 1
    assert runs.cancel(backend, run_id)[0] == 202


def test_throttling_is_retried_then_answers(fake, backend):
    _, body, _ = submit(backend, {"idempotency_key": "k6"})
    run_id = body["run_id"]
    fake.inject("GET", rf"/jobs/{run_id}$", [429], headers={"Retry-After": "0"})
    assert runs.get(backend, run_id)[0] == 200
    assert len(fake.requests_to("GET", rf"/jobs/{run_id}$")) >= 2


def test_unavailable_after_retries_is_503_with_retry_after(fake, backend):
    fake.inject("*", r"/jobs/", [503], forever=True)
    status, body, headers = submit(backend, {"idempotency_key": "k7"})
    assert status == 503 and body["error"] == "aml_unavailable" and "Retry-After" in headers
    assert len(fake.requests_to("GET", r"/jobs/")) == 3  # one try and two retries


def test_no_rights_on_the_workspace_is_a_clear_502(fake, backend):
    fake.inject("*", r"/jobs/", [403], forever=True)
    status, body, _ = submit(backend, {"idempotency_key": "k8"})
    assert status == 502 and body["error"] == "forbidden"
    assert "no rights on workspace ws" in body["message"]


def test_an_unknown_run_is_404(backend):
    assert runs.get(backend, "no-such-job")[0] == 404
    with pytest.raises(RunNotFound):
        backend.cancel("no-such-job")


def test_settings_without_a_workspace_say_which_are_missing():
    from shared.aml.backend import BackendError
    from shared.settings import Settings

    with pytest.raises(BackendError, match="AML_RESOURCE_GROUP, AML_WORKSPACE"):
        AzureMLBackend.from_settings(Settings(aml_backend="azureml", aml_subscription_id="x"))


def test_a_registered_pipeline_component_is_submitted_as_a_pipeline_job(fake, backend):
    from shared.aml.catalog import Pipeline
    from shared.aml.request import validate_request

    fake.register_component(
        "forecastops_smoke_pipeline",
        "1",
        {
            "type": "pipeline",
            "name": "forecastops_smoke_pipeline",
            "version": "1",
            "jobs": {},
            "inputs": {"seconds": {"type": "number", "default": 0.2}, "region": {"type": "string", "default": "all"}},
        },
    )
    pipeline = Pipeline(
        name="smoke_component",
        description="the smoke pipeline, registered as a pipeline component",
        experiment="forecastops-smoke",
        compute="cpu-cluster",
        definition={"kind": "component", "component": "azureml:forecastops_smoke_pipeline:1"},
        parameters={
            "seconds": {"type": "number", "default": 0.2, "minimum": 0, "maximum": 60},
            "region": {"type": "string", "default": "all"},
        },
    )
    request, problems = validate_request(pipeline, {"parameters": {"region": "west"}, "idempotency_key": "c1"})
    status, created = backend.submit(pipeline, request, request.job_name())
    assert created and status.aml_status == "NotStarted"
    (put,) = fake.requests_to("PUT", r"/jobs/")
    props = put.json["properties"]
    assert props["jobType"] == "Pipeline"
    assert props["componentId"] == f"{WS}/components/forecastops_smoke_pipeline/versions/1"
    assert props["inputs"]["region"] == {"value": "west", "jobInputType": "literal"}
    assert props["settings"]["default_compute"] == f"{WS}/computes/cpu-cluster"


def test_unreadable_metrics_fail_the_gates_instead_of_passing_them(fake, backend):

    from shared.watch import policy as watch

    _, body, _ = submit(backend, {"idempotency_key": "k9"})
    run_id = body["run_id"]
    fake.set_status(run_id, "Completed")
    fake.inject("GET", r"/mlflow/", [500], forever=True)
    _, status, _ = runs.get(backend, run_id)
    assert status["aml_status"] == "Completed" and "MLflow" in status["metrics_error"]
    state = watch.start([watch.RunState(index=0, run_id=run_id)], watch.WatchOptions(), clock.now())
    watch.observe(state, 0, status, clock.now())
    assert state.runs[0].outcome == "gate_failed" and state.runs[0].gate_failures[0]["gate"] == "metrics"


def test_steps_carry_their_start_and_end_times_from_run_history(fake, backend):
    _, body, _ = submit(backend, {"idempotency_key": "k-times"})
    run_id = body["run_id"]
    fake.set_status(run_id, "Running")
    fake.set_status(run_id, "Completed")
    _, final, _ = runs.get(backend, run_id)
    assert all(s["started_at"] and s["ended_at"] for s in final["steps"])
    assert final["started_at"] and final["ended_at"] and final["started_at"] <= final["ended_at"]


def test_a_running_job_costs_two_aml_calls_and_metrics_are_read_once_it_ended(fake, backend):
    _, body, _ = submit(backend, {"idempotency_key": "k-calls"})
    run_id = body["run_id"]
    fake.set_status(run_id, "Running")
    runs.get(backend, run_id)  # the first read also finds the workspace's Run History endpoint, once
    before = len(fake.requests)
    runs.get(backend, run_id)
    during = fake.requests[before:]
    assert len(during) <= 2 and not [r for r in during if "/mlflow/" in r.path]
    fake.set_status(run_id, "Completed")
    before = len(fake.requests)
    runs.get(backend, run_id)
    assert [r for r in fake.requests[before:] if "/mlflow/" in r.path]


def test_a_nan_metric_is_null_in_the_status(fake, backend):
    _, body, _ = submit(backend, {"idempotency_key": "k-nan"})
    run_id = body["run_id"]
    fake.set_status(run_id, "Completed")
    fake.set_metrics(fake.child_run(run_id, "evaluate")["runId"], {"mape": float("nan"), "rmse_all": 4.2})
    _, final, _ = runs.get(backend, run_id)
    assert final["metrics"]["evaluate"] == {"mape": None, "rmse_all": 4.2}
    json.dumps(final, allow_nan=False)


def test_a_steps_stack_trace_stays_in_the_log_not_in_the_answer(fake, backend):
    _, body, _ = submit(backend, {"idempotency_key": "k-trace"})
    run_id = body["run_id"]
    message = (
        "UserError: train failed: MAPE 0.61 is above the gate\n"
        "Traceback (most recent call last):\n"
        '  File "/mnt/azureml/cr/j/abc/exe/wd/train.py", line 40, in <module>\n'
        "ValueError: boom"
    )
    fake.fail(run_id, step="train", message=message)
    _, final, _ = runs.get(backend, run_id)
    text = json.dumps(final)
    assert "MAPE 0.61 is above the gate" in final["error"]["message"]
    assert "Traceback" not in text and "/mnt/azureml" not in text


# ----------------------------------------------------------------------------------------------- data in the lake
def test_every_steps_outputs_land_in_the_lake_under_the_run(fake, backend):
    _, body, _ = submit(backend, {"idempotency_key": "k-outputs"})
    run_id = body["run_id"]
    (put,) = fake.requests_to("PUT", r"/jobs/")
    jobs = put.json["properties"]["jobs"]
    assert {step: jobs[step]["outputs"] for step in STEPS} == {
        step: {
            "out": {
                "uri": f"azureml://datastores/lake_runs/paths/{run_id}/outputs/{step}/out",
                "job_output_type": "uri_folder",
            }
        }
        for step in STEPS
    }
    # this repo's component: its outputs are read from its YAML, AML is not asked
    assert not fake.requests_to("GET", r"/components/")
    assert fake.unhandled == []


DATA_PIPELINE = """\
$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json
type: pipeline
inputs:
  curated:
    type: uri_folder
    path: azureml://datastores/lake_curated/paths/
outputs:
  report:
    type: uri_folder
jobs:
  prepare:
    type: command
    component: azureml:forecastops_smoke_step:1
    inputs:
      step_name: prepare
      upstream: ${{parent.inputs.curated}}
  train:
    type: command
    component: azureml:forecastops_smoke_step:1
    inputs:
      step_name: train
      upstream: ${{parent.jobs.prepare.outputs.out}}
    outputs:
      out: ${{parent.outputs.report}}
"""


def data_pipeline(tmp_path):
    from shared.aml.catalog import Pipeline

    (tmp_path / "pipeline.yml").write_text(DATA_PIPELINE)
    return Pipeline(
        name="data",
        description="a step reading a uri_folder input",
        experiment="forecastops-data",
        compute="cpu-cluster",
        definition={"kind": "pipeline_job", "job": str(tmp_path / "pipeline.yml")},
        inputs={"curated": {"type": "uri_folder", "default": "azureml://datastores/lake_curated/paths/"}},
    )


def test_a_registered_data_asset_input_goes_to_aml_as_the_asset(fake, backend, tmp_path):
    from shared.aml.request import validate_request

    pipeline = data_pipeline(tmp_path)
    request, problems = validate_request(pipeline, {"inputs": {"curated": "azureml:curated:2026-11-23.2"}})
    assert problems == []
    status, created = backend.submit(pipeline, request, "data-run-1")
    assert created and fake.unhandled == []
    (put,) = fake.requests_to("PUT", r"/jobs/")
    props = put.json["properties"]
    # azure-ai-ml writes azureml:<name>:<version> as the asset's ARM id; AML resolves it, nothing is read here
    assert props["inputs"]["curated"] == {
        "uri": f"{WS}/data/curated/versions/2026-11-23.2",
        "jobInputType": "uri_folder",
    }
    assert not fake.requests_to("GET", r"/data/")
    assert props["jobs"]["prepare"]["outputs"]["out"]["uri"] == (
        "azureml://datastores/lake_runs/paths/data-run-1/outputs/prepare/out"
    )
    # an output bound to the pipeline's own output keeps that binding
    assert props["jobs"]["train"]["outputs"]["out"] == {"value": "${{parent.outputs.report}}", "type": "literal"}


def test_a_step_whose_component_is_not_registered_is_a_missing_asset(fake, tmp_path):
    from shared.aml.request import validate_request

    empty = FakeAML()
    credential, transport = FakeCredential(), empty.transport()
    client = MLClient(credential, SUB, "rg", "ws", transport=transport, retry_total=0)
    pipeline = data_pipeline(tmp_path)
    request, _ = validate_request(pipeline, {})
    with pytest.raises(BackendError) as e:
        AzureMLBackend(client, credential, transport).submit(pipeline, request, "data-run-2")
    assert e.value.code == "missing_asset" and f"forecastops_smoke_step:{SMOKE}" in e.value.message
    assert e.value.status == 502 and "data-run-2" not in empty.jobs


def test_an_input_path_becomes_its_lake_containers_datastore_uri():
    from shared.aml.azureml import aml_path

    assert aml_path("curated/weather_daily") == "azureml://datastores/lake_curated/paths/weather_daily"
    assert aml_path("azureml://datastores/lake/paths/curated") == "azureml://datastores/lake_curated/paths/"
    assert aml_path("azureml://datastores/lake_runs/paths/r/x") == "azureml://datastores/lake_runs/paths/r/x"
    assert aml_path("azureml://datastores/other/paths/a") == "azureml://datastores/other/paths/a"
    assert aml_path("azureml:curated-data:2026-01-05") == "azureml:curated-data:2026-01-05"


# ----------------------------------------------------------------------------------------------- every pipeline
def _bodies() -> list[tuple[str, dict[str, str]]]:
    """Each catalog pipeline with its required inputs, then with each optional input as well."""
    cases = []
    for name, p in load_catalog().items():
        required = {i: f"runs/given/{i}" for i, spec in p.inputs.items() if spec.required}
        cases.append((name, required))
        cases += [(name, {**required, i: f"runs/given/{i}"}) for i, spec in p.inputs.items() if not spec.required]
    return cases


@pytest.mark.parametrize(("pipeline", "inputs"), _bodies(), ids=lambda v: v if isinstance(v, str) else ",".join(v))
def test_every_catalog_pipeline_submits_with_and_without_each_optional_input(fake, backend, pipeline, inputs):
    status, body, _ = submit(backend, {"inputs": inputs, "idempotency_key": f"all-{len(inputs)}"}, pipeline)
    assert status == 202, body
    (put,) = fake.requests_to("PUT", r"/jobs/")
    props = put.json["properties"]
    declared = load_catalog()[pipeline].inputs
    for name in declared:
        bound = [s for s, j in props["jobs"].items() if "${{parent.inputs." + name + "}}" in json.dumps(j)]
        if name in inputs or declared[name].default:
            assert name in props["inputs"]
        else:  # unset: neither the pipeline nor any step names it
            assert name not in props["inputs"] and not bound
    used = {j["componentId"].rsplit("/components/", 1)[1] for j in props["jobs"].values()}
    assert used == {
        f"{n}/versions/{v}" for n, v in (c.split(":") for c in props["tags"]["forecastops.components"].split(","))
    }
    assert all(fake.components[n][v] for n, v in (u.split("/versions/") for u in used))
    assert props["identity"] == {"identityType": "Managed"} and fake.unhandled == []


def test_the_forecast_pipeline_submits_without_its_oracle(fake, backend):
    # azure-ai-ml 1.35 failed on the declared, unset oracle input: 500 internal_error
    status, body, _ = submit(backend, {"idempotency_key": "weekly"}, "forecast")
    assert status == 202 and body["backend"] == "azureml"
    props = fake.requests_to("PUT", r"/jobs/")[0].json["properties"]
    assert "oracle" not in props["inputs"] and "oracle" not in props["jobs"]["evaluate"]["inputs"]
    assert set(props["jobs"]) == {"prepare", "train_global", "train_groups", "train", "score", "evaluate"}


def test_the_score_pipeline_submits_with_the_production_folder(fake, backend):
    status, body, _ = submit(backend, {"inputs": {"production": "models/_plans/p1"}}, "score")
    assert status == 202
    props = fake.requests_to("PUT", r"/jobs/")[0].json["properties"]
    assert props["inputs"]["production"]["uri"] == "azureml://datastores/lake_models/paths/_plans/p1"


def test_an_exception_inside_the_sdk_is_a_502_naming_the_pipeline_and_the_stage(fake, backend):
    # AML answers the PUT with a body the SDK cannot read: its own AttributeError, not an HTTP error
    fake.inject("PUT", r"/jobs/", [201], body={"name": "x", "properties": None})
    status, body, _ = submit(backend, {"idempotency_key": "odd"}, "forecast")
    assert status == 502 and body["error"] == "backend_error"
    assert body["message"].startswith("submit forecast: azure-ai-ml failed to submit the job: AttributeError")
    assert "Traceback" not in json.dumps(body) and "/site-packages/" not in json.dumps(body)
