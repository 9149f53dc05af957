"""The forecast pipeline's parallel step (issue 22) on AML: its component registers through
azure-ai-ml's real ``MLClient`` against the AML fake, the pipeline job with the parallel node
submits through it, at the scale the catalog gives the workspace; the fake refuses a parallel
node whose component is not a parallel one, as AML does."""

from __future__ import annotations

import json

import pytest

from shared import ROOT
from shared.aml import assets, jobspec, runs
from shared.aml.catalog import ParallelStep, Scale, load_catalog
from shared.aml.request import RunRequest
from tests.aml.test_aml_assets import aml_assets
from tests.aml.test_aml_assets import backend as backend
from tests.aml.test_aml_assets import fake as fake
from tests.fakes.aml.fake import FakeAML

STEP = "train_groups"
REQUEST = RunRequest(pipeline="forecast", parameters={}, inputs={}, experiment="e", idempotency_key=None, tags={})
COMPONENT = "forecastops_forecast_train_groups"


@pytest.mark.azurite
def test_the_parallel_component_registers_and_the_pipeline_submits_it(fake, backend, monkeypatch):
    assert aml_assets(backend, monkeypatch)[0] == 0
    version = assets.components()[COMPONENT].version
    spec = fake.components[COMPONENT][version]["properties"]["componentSpec"]
    assert spec["type"] == "parallel" and spec["mini_batch_size"] == "1"
    assert spec["mini_batch_error_threshold"] == -1
    assert spec["retry_settings"] == {"max_retries": 2, "timeout": 1800}
    task = spec["task"]
    assert task["type"] == "run_function" and task["entry_script"] == "train_groups.py"
    assert task["environment"].endswith(f"/versions/{assets.environment().version}")  # pinned, no @latest
    assert "/codes/" in task["code"]

    status, answer, _ = runs.submit(backend, load_catalog(), "forecast", json.dumps({}).encode(), "")
    assert status == 202, answer
    node = fake.requests_to("PUT", r"/jobs/")[-1].json["properties"]["jobs"][STEP]
    assert node["type"] == "parallel"
    assert node["componentId"].endswith(f"/components/{COMPONENT}/versions/{version}")
    scale = load_catalog()["forecast"].parallel[STEP]
    assert node["resources"]["instance_count"] == scale.instance_count
    assert node["max_concurrency_per_instance"] == scale.max_concurrency_per_instance
    assert node["inputs"]["work"]["value"] == "${{parent.jobs.train_global.outputs.work}}"
    assert node["outputs"]["fitted"]["uri"].endswith(f"/outputs/{STEP}/fitted")


def test_the_catalog_sets_the_parallel_steps_scale_per_workspace():
    forecast = load_catalog()["forecast"]
    prod = ParallelStep(
        instance_count=1,
        max_concurrency_per_instance=2,
        workspaces={"mlw-prod": Scale(instance_count=8, max_concurrency_per_instance=4)},
    )
    pipeline = forecast.model_copy(update={"parallel": {STEP: prod}})
    job_file = ROOT / str(forecast.definition.job)

    def build(workspace):
        spec = jobspec.build(job_file, REQUEST, pipeline, "r1", lambda *a: {}, workspace=workspace)
        return spec["jobs"][STEP]

    assert build("mlw-prod")["resources"]["instance_count"] == 8
    assert build("mlw-prod")["max_concurrency_per_instance"] == 4
    assert build("mlw-dev")["resources"]["instance_count"] == 1
    assert build(None)["max_concurrency_per_instance"] == 2


def test_the_fake_refuses_a_parallel_node_whose_component_is_a_command():
    fake = FakeAML()
    fake.register_repo_components()
    forecast = load_catalog()["forecast"]
    spec = jobspec.build(ROOT / str(forecast.definition.job), REQUEST, forecast, "r2", lambda *a: {})
    assert spec["jobs"][STEP]["type"] == "parallel"

    def node(name):
        ref = assets.components()[name].ref.removeprefix("azureml:").replace(":", "/versions/")
        return {"jobType": "Pipeline", "jobs": {STEP: {"type": "parallel", "componentId": f"/components/{ref}"}}}

    assert "is not a parallel component" in fake._parallel_mismatch(node("forecastops_forecast_train"))
    assert fake._parallel_mismatch(node(COMPONENT)) is None


@pytest.mark.azurite
def test_the_workspaces_own_scale_reaches_the_job_the_backend_submits(fake, backend, monkeypatch):
    """The azureml backend builds the job for its own workspace: the catalog's entry for that
    workspace is the scale AML is asked for, not the defaults."""
    assert aml_assets(backend, monkeypatch)[0] == 0
    catalog = load_catalog()
    scale = ParallelStep(
        instance_count=1,
        max_concurrency_per_instance=2,
        workspaces={backend.workspace: Scale(instance_count=6, max_concurrency_per_instance=3)},
    )
    forecast = catalog["forecast"].model_copy(update={"parallel": {STEP: scale}})
    status, answer, _ = runs.submit(backend, {**catalog, "forecast": forecast}, "forecast", b"{}", "")
    assert status == 202, answer
    node = fake.requests_to("PUT", r"/jobs/")[-1].json["properties"]["jobs"][STEP]
    assert node["resources"]["instance_count"] == 6
    assert node["max_concurrency_per_instance"] == 3


@pytest.mark.azurite
def test_the_score_pipelines_parallel_step_registers_and_submits(fake, backend, monkeypatch):
    assert aml_assets(backend, monkeypatch)[0] == 0
    name = "forecastops_forecast_score_groups"
    version = assets.components()[name].version
    spec = fake.components[name][version]["properties"]["componentSpec"]
    assert spec["type"] == "parallel" and spec["mini_batch_size"] == "1"
    assert spec["mini_batch_error_threshold"] == -1
    assert spec["task"]["entry_script"] == "score_groups.py"
    inputs = {"production": "azureml://datastores/lake_batches/paths/week=2026-11-09/production/"}
    status, answer, _ = runs.submit(backend, load_catalog(), "score", json.dumps({"inputs": inputs}).encode(), "")
    assert status == 202, answer
    jobs = fake.requests_to("PUT", r"/jobs/")[-1].json["properties"]["jobs"]
    assert list(jobs) == ["prepare", "score_plan", "score_groups", "score"]
    node = jobs["score_groups"]
    assert node["type"] == "parallel"
    assert node["componentId"].endswith(f"/components/{name}/versions/{version}")
    scale = load_catalog()["score"].parallel["score_groups"]
    assert node["resources"]["instance_count"] == scale.instance_count
    assert node["max_concurrency_per_instance"] == scale.max_concurrency_per_instance
    assert node["inputs"]["work"]["value"] == "${{parent.jobs.score_plan.outputs.work}}"
    assert jobs["score"]["inputs"]["served"]["value"] == "${{parent.jobs.score_groups.outputs.served}}"
