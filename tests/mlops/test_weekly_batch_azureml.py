"""One weekly batch end to end on the ``azureml`` backend, beside the same batch on the ``local`` backend.

The data: a small generated world (2 regions x 2 stores x 4 SKUs x 40 weeks), ingested once into a local lake
and copied, byte for byte, to a lake on Azurite. The local backend's batch runs on the local lake. The azureml
backend's batch runs on the Azurite lake, composed as the app composes it (``shared.runtime`` with
``FORECASTOPS_AML_BACKEND=azureml``: the model registry and the data catalog are AML's), with the real
``MLClient`` talking to the in-process AML fake (tests/fakes/aml/), whose executor (tests/fakes/aml/executor.py) runs each
submitted pipeline job as AML would: the steps the job names, on the inputs its body carries (the data asset
resolved through the workspace), the outputs written where the body puts them in the lake, then the job and its
steps Completed with each step's metrics on its MLflow run.

plan -> data version (an AML data asset) -> the ``forecast`` run (submitted through MLClient, components pinned)
-> the watch follows it to its end -> models registered in AML's model registry -> promotion -> the ``score`` run
-> ``curated/forecasts/v1/week=<W>/``: each stage is checked on its own, and the decisions and forecasts are
compared with the local backend's. The training is deterministic (seeded scikit-learn, a one-thread LightGBM), so
the two batches' forecast files are compared byte for byte, and their metrics exactly, but for the time of
training (``trained_at``).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.ai.ml import MLClient

from shared import runtime
from shared.aml import runs
from shared.aml.assets import components
from shared.aml.azureml import AzureMLBackend
from shared.aml.backend import Backend
from shared.aml.catalog import load_catalog
from shared.aml.lakeuri import lake_path, lake_uri
from shared.aml.local.backend import LocalBackend
from shared.lake import BlobLake, Lake, LocalLake
from shared.mlops.aml_data_assets import AzureDataCatalog
from shared.mlops.aml_registry import TAG_CARD, AzureRegistry
from shared.mlops.batch import DATA_ASSET, BatchInput
from shared.mlops.registry import LakeRegistry
from shared.settings import Settings, get_settings
from shared.tooling import mainjob, synth, weekly_batch
from shared.tooling.bulk_ingest import ingest_all, upload_tree
from shared.weeks.announce import CollectSignal
from tests.conftest import app_setting
from tests.fakes.aml.executor import Executor
from tests.fakes.aml.fake import FakeAML

pytestmark = pytest.mark.azurite

SIZE: dict[str, Any] = {
    "regions": 2,
    "stores_per_region": 2,
    "skus": 4,
    "weeks": 40,
    "start": dt.date(2025, 1, 6),
    "seed": 7,
}
GROUPS = sorted(
    f"{r}.{f}.{v}" for r in ("northeast", "southeast") for f in ("large", "small") for v in ("fast", "slow")
)
SUB = "00000000-0000-0000-0000-000000000001"
WS = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
FORECAST_STEPS = ["prepare", "train_global", "train_groups", "train", "score", "evaluate"]
SCORE_STEPS = ["prepare", "score_plan", "score_groups", "score"]
FORECAST_HEADER = ["store_id", "sku", "week_start", "forecast", "model", "model_version", "source", "new_sku"]


@dataclass
class Batch:
    """One backend's batch: its lake, backend, summary, plan and what it printed."""

    lake: Lake
    backend: Backend
    summary: dict[str, Any]
    plan: dict[str, Any]
    out: str

    def forecasts(self, week: str) -> dict[str, bytes]:
        folder = f"curated/forecasts/v1/week={week}"
        return {p.rsplit("/", 1)[-1]: self.lake.read_bytes(p) for p in self.lake.list(folder)}

    def decisions(self) -> dict[str, tuple[Any, ...]]:
        """Per group: training, its reason, the decision, its reason, the MAPE, the version, what serves it."""
        return {
            g: (
                line["training"],
                line["why"],
                line.get("decision"),
                line.get("decision_why"),
                line.get("mape"),
                line.get("version"),
                line["scored_with"],
                line["rows"],
            )
            for g, line in self.summary["groups"].items()
        }


@dataclass
class Both:
    week: str
    local: Batch
    azure: Batch
    fake: FakeAML
    executor: Executor


# ------------------------------------------------------------------------------------------------ fixtures
def _copy(source: LocalLake, target: Lake) -> int:
    """Every file of ``source`` to the same path in ``target``; how many."""
    paths = list(source.list(""))

    def one(path: str) -> None:
        with open(source.root / path, "rb") as f:
            target.upload(path, f)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, paths))
    return len(paths)


def _plan(lake: Lake, week: str) -> dict[str, Any]:
    return json.loads(lake.read_bytes(f"batches/week={week}/plan.json"))


def aml_client(fake: FakeAML) -> tuple[AzureMLBackend, MLClient]:
    """The azureml backend on the real MLClient, answered by ``fake``."""
    backend = fake.backend()
    return backend, backend.client


@pytest.fixture(scope="module")
def both(azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Both]:
    """The same week's batch on the local backend and on the azureml backend, on the same data."""
    root = tmp_path_factory.mktemp("weekly-azureml")
    synth.generate(root / "raw", **SIZE)
    local_lake = LocalLake(root / "lake")
    signal = CollectSignal()
    ingest_all(local_lake, upload_tree(local_lake, root / "raw"), io.StringIO(), signal=signal)
    (week,) = sorted({str(m["week"]) for m in signal.messages})
    blob_lake = BlobLake.from_connection_string(azurite.connection_string, chunk_bytes=256 * 1024)
    assert _copy(local_lake, blob_lake) > 100  # before the local batch writes anything

    with pytest.MonkeyPatch.context() as mp:  # conftest's clean_env, for a module's fixture
        for name in list(os.environ):
            if app_setting(name):
                mp.delenv(name)
        get_settings.cache_clear()
        try:
            local = _local_batch(local_lake, week)
            azure, fake, executor = _azure_batch(mp, blob_lake, root, week)
            yield Both(week, local, azure, fake, executor)
        finally:
            get_settings.cache_clear()
            runtime.registry.cache_clear()
            runtime.data_catalog.cache_clear()
            for container in blob_lake.service.list_containers():
                blob_lake.service.delete_container(container.name)


def _local_batch(lake: LocalLake, week: str) -> Batch:
    backend = LocalBackend(lake, Settings(lake_root=lake.root, lake_backend="local"))
    out = io.StringIO()
    summary = weekly_batch.run_batch(mainjob.batch_context(lake), backend, BatchInput(week=week, by="cli"), out)
    return Batch(lake, backend, summary, _plan(lake, week), out.getvalue())


def _azure_batch(mp: pytest.MonkeyPatch, lake: BlobLake, root: Path, week: str) -> tuple[Batch, FakeAML, Executor]:
    executor = Executor(lake, root / "aml-compute")
    fake = FakeAML(executor=executor)
    fake.register_repo_components()  # as python -m shared aml-assets leaves the workspace
    backend, _ = aml_client(fake)
    # the app's own composition with the azureml backend: its registry and data catalog are AML's
    for name, value in {
        "FORECASTOPS_AML_BACKEND": "azureml",
        "AML_SUBSCRIPTION_ID": SUB,
        "AML_RESOURCE_GROUP": "rg",
        "AML_WORKSPACE": "ws",
    }.items():
        mp.setenv(name, value)
    get_settings.cache_clear()
    mp.setattr(runtime, "lake", lambda: lake)
    mp.setattr(runtime, "aml_backend", lambda: backend)
    runtime.registry.cache_clear()
    runtime.data_catalog.cache_clear()
    ctx = runtime.batch_context()
    assert isinstance(ctx.registry, AzureRegistry) and isinstance(ctx.data, AzureDataCatalog)
    out = io.StringIO()
    summary = weekly_batch.run_batch(ctx, backend, BatchInput(week=week, by="cli"), out)
    executor.wait()
    return Batch(lake, backend, summary, _plan(lake, week), out.getvalue()), fake, executor


def _job(fake: FakeAML, name: str) -> dict[str, Any]:
    """The job body the fake was sent (through MLClient: one PUT)."""
    puts = fake.requests_to("PUT", rf"/jobs/{name}$")
    assert len(puts) == 1, f"job {name}: {len(puts)} PUT(s)"
    return puts[0].json["properties"]


def _pinned(steps: dict[str, str]) -> dict[str, str]:
    """Each step's component at the version its content gives (what aml-assets registers)."""
    return {step: f"{WS}/components/{c}/versions/{components()[c].version}" for step, c in steps.items()}


def _comparable(metrics: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A run's metrics but for the clock's (when each model was trained, how long a step took), per step that
    logged any."""
    return {
        step: {k: v for k, v in values.items() if not k.endswith(("trained_at", "_seconds"))}
        for step, values in metrics.items()
        if values
    }


# ------------------------------------------------------------------------------------------------ the stages
def test_both_batches_succeed_training_every_group_and_serving_every_group(both):
    for batch in (both.local, both.azure):
        s = batch.summary
        assert s["outcome"] == "succeeded", (s["problems"], batch.out)
        assert sorted(s["groups"]) == GROUPS
        promoted = sum(line.get("decision") == "promoted" for line in s["groups"].values())
        assert s["counts"]["retrained"] == len(GROUPS) and 1 <= promoted <= len(GROUPS)
        assert s["counts"]["promoted"] + s["counts"].get("kept", 0) == len(GROUPS)
        # every group is served: the promoted by their model, the others by their baseline
        assert s["counts"]["scored"] == len(GROUPS)
        assert s["sources"] == {"production": promoted, "previous": 0, "baseline": len(GROUPS) - promoted}
    # through AML: two jobs, each run by the fake's executor, nothing it could not answer
    summary = both.azure.summary
    assert sorted(both.fake.jobs) == sorted([summary["train_run"], summary["score_run"]])
    assert both.executor.errors == [] and both.fake.unhandled == []


def test_the_plan_is_the_local_backends_and_its_data_version_is_an_aml_data_asset(both):
    week, plan = both.week, both.azure.plan
    same = ("status", "week", "missing", "partial", "data", "fingerprints", "groups", "train", "train_inputs")
    assert {k: plan[k] for k in same} == {k: both.local.plan[k] for k in same}
    # the first batch: nothing registered, so every group the data has is trained
    assert plan["status"] == "ready" and plan["train"] == "all" and plan["groups"] == {}
    assert sorted(plan["fingerprints"]) == sorted({g.rsplit(".", 1)[0] for g in GROUPS})
    data = plan["data"]
    assert data["reference"] == f"azureml:{DATA_ASSET}:{week}" and data["version"] == week
    # registered once, in AML, as a uri_folder over the version's pinned folder (its listing of
    # the content-addressed copies it was registered with: issue 23, item 1), never live curated/
    assert len(both.fake.requests_to("PUT", rf"/data/{DATA_ASSET}/versions/")) == 1
    (asset,) = both.fake.data_versions(DATA_ASSET).values()
    props = asset["properties"]
    assert asset["name"] == week and props["dataType"] == "uri_folder"
    assert props["dataUri"] == lake_uri(f"batches/pinned/versions/{DATA_ASSET}/{week}")
    assert both.azure.lake.exists(f"batches/pinned/versions/{DATA_ASSET}/{week}/files.json")
    assert props["tags"]["content_hash"] == data["content_hash"] and props["tags"]["files"] == str(data["files"])
    assert data["files"] == len(
        json.loads(both.azure.lake.read_bytes(f"batches/data/{DATA_ASSET}/{week}.json"))["files"]
    )


def test_the_forecast_run_is_submitted_through_mlclient_with_pinned_components_and_watched_to_its_end(both):
    run_id = both.azure.summary["train_run"]
    props = _job(both.fake, run_id)
    assert props["jobType"] == "Pipeline" and props["experimentName"] == "forecastops-forecast"
    assert props["tags"]["forecastops.pipeline"] == "forecast"
    # the data version goes to AML as the data asset (AML resolves it; the fake's executor through its data)
    assert props["inputs"]["curated"] == {
        "uri": f"{WS}/data/{DATA_ASSET}/versions/{both.week}",
        "jobInputType": "uri_folder",
    }
    assert props["inputs"]["groups"]["value"] == "all" and "oracle" not in props["inputs"]
    wanted = {
        "prepare": "forecastops_forecast_prepare",
        "train_global": "forecastops_forecast_train_global",
        "train_groups": "forecastops_forecast_train_groups",
        "train": "forecastops_forecast_train",
        "score": "forecastops_forecast_score",
        "evaluate": "forecastops_forecast_evaluate",
    }
    assert {s: j["componentId"] for s, j in props["jobs"].items()} == _pinned(wanted)
    assert props["tags"]["forecastops.components"] == ",".join(
        sorted(f"{c}:{components()[c].version}" for c in wanted.values())
    )
    # every step ran, and wrote its outputs where the job body put them: the lake, under the run
    assert both.executor.ran[run_id] == FORECAST_STEPS
    for step, node in props["jobs"].items():
        for output, spec in node["outputs"].items():
            folder = lake_path(spec["uri"])
            assert folder == f"runs/{run_id}/outputs/{step}/{output}"
            assert list(both.azure.lake.list(folder)), folder
    models = f"runs/{run_id}/outputs/train/models"
    top = [p.removeprefix(f"{models}/") for p in both.azure.lake.list(models)]
    assert sorted(p for p in top if p.endswith(".pkl") and "/" not in p) == [f"{g}.pkl" for g in GROUPS]
    # and each group's model in MLflow format (issue 23, item 2)
    assert sorted(p.split("/")[1] for p in top if p.endswith("/MLmodel")) == GROUPS
    # the watch followed the job (more than one read) to its end, with each step's end and metrics
    assert len(both.fake.requests_to("GET", rf"/jobs/{run_id}$")) >= 3
    assert f"train: run {run_id} Completed" in both.azure.out and "step evaluate: Completed" in both.azure.out
    final = both.azure.backend.get(run_id)
    assert final.aml_status == "Completed" and final.metrics_error is None
    assert [(s.name, s.aml_status) for s in final.steps] == [(s, "Completed") for s in FORECAST_STEPS]
    assert all(s.started_at and s.ended_at for s in final.steps)
    # the steps' metrics, read from the steps' MLflow runs, are the local run's
    local = both.local.backend.get(both.local.summary["train_run"])
    assert {f"{g}.mape" for g in GROUPS} <= set(final.metrics["evaluate"])
    assert {f"{g}.trained_at" for g in GROUPS} <= set(final.metrics["evaluate"])
    assert set(final.metrics) == {"train", "evaluate"}  # the steps that log any (AML lists no empty one)
    assert _comparable(final.metrics) == _comparable(local.metrics)


def test_models_are_registered_in_amls_registry_and_promoted_as_the_local_backend_decides(both):
    run_id = both.azure.summary["train_run"]
    local_registry = LakeRegistry(both.local.lake)
    assert sorted(both.fake.models) == GROUPS
    for group in GROUPS:
        versions = both.fake.model_versions(group)
        assert list(versions) == ["1"], group
        props = versions["1"]["properties"]
        tags = props["tags"]
        line = both.azure.summary["groups"][group]
        assert tags[TAG_CARD] == "1" and tags["run_id"] == run_id and "MLmodel" in tags["files"].split(",")
        assert props["modelType"] == "mlflow_model" and tags["week"] == both.week
        assert tags["data.curated"] == both.azure.plan["data"]["reference"]
        assert tags["decision.outcome"] == line["decision"]
        assert tags["stage"] == ("production" if line["decision"] == "promoted" else "candidate")
        # the model's files are in the lake, named by their datastore URI
        folder = lake_path(props["modelUri"])
        assert folder is not None and folder.startswith(f"models/{group}/files/")
        assert both.azure.lake.exists(f"{folder}/MLmodel")
        # the same card as the local registry's, but for when it was trained
        mine = AzureRegistry(both.azure.backend.client, both.azure.lake).get(group, 1)
        theirs = local_registry.get(group, 1)
        assert mine.metrics == theirs.metrics and mine.stage == theirs.stage
        assert mine.data_versions == theirs.data_versions
        assert mine.decision is not None and theirs.decision is not None
        assert (mine.decision.outcome, mine.decision.rule, mine.decision.reason) == (
            theirs.decision.outcome,
            theirs.decision.rule,
            theirs.decision.reason,
        )
    assert both.azure.decisions() == both.local.decisions()
    assert {line["decision"] for line in both.azure.summary["groups"].values()} <= {"promoted", "kept"}


def test_the_score_run_serves_production_and_publishes_the_local_backends_forecasts(both):
    week, summary = both.week, both.azure.summary
    run_id = summary["score_run"]
    props = _job(both.fake, run_id)
    assert props["tags"]["forecastops.pipeline"] == "score"
    production = lake_path(props["inputs"]["production"]["uri"])
    assert production is not None and production.startswith(f"batches/week={week}/production/")
    assert props["inputs"]["curated"]["uri"] == f"{WS}/data/{DATA_ASSET}/versions/{week}"
    wanted = {
        "prepare": "forecastops_forecast_prepare",
        "score_plan": "forecastops_forecast_score_plan",
        "score_groups": "forecastops_forecast_score_groups",
        "score": "forecastops_forecast_score_production",
    }
    assert {s: j["componentId"] for s, j in props["jobs"].items()} == _pinned(wanted)
    assert both.executor.ran[run_id] == SCORE_STEPS
    assert both.azure.backend.get(run_id).aml_status == "Completed"
    # scoring got the production models only, from AML's registry
    promoted = sorted(g for g, line in summary["groups"].items() if line["decision"] == "promoted")
    listed = json.loads(both.azure.lake.read_bytes(f"{production}/production.json"))["models"]
    assert sorted(listed) == promoted and {m["version"] for m in listed.values()} == {1}
    assert all(both.azure.lake.exists(f"{production}/{g}/MLmodel") for g in promoted)

    published = both.azure.forecasts(week)
    # every group is published: the promoted by their model, the others by their baseline
    assert sorted(published) == [f"{g}.csv" for g in GROUPS]
    for name, data in published.items():
        group = name.removesuffix(".csv")
        rows = list(csv.reader(io.StringIO(data.decode())))
        assert rows[0] == FORECAST_HEADER and len(rows) > 1
        if group in promoted:
            assert {(r[4], r[5], r[6]) for r in rows[1:]} == {(group, "1", "production")}
        else:
            assert {r[6] for r in rows[1:]} == {"baseline"} and {r[4] for r in rows[1:]} <= {"baseline", "snaive"}
            assert summary["groups"][group]["fallback_why"] == "no production model"
        assert summary["groups"][group]["rows"] == len(rows) - 1
    # the same forecasts as the local backend's, byte for byte (deterministic training, same data)
    assert published == both.local.forecasts(week)
    # lineage: the data version knows both runs
    links = {p.rsplit("/", 1)[-1] for p in both.azure.lake.list(f"batches/data/{DATA_ASSET}/{week}/runs")}
    assert links == {f"{summary['train_run']}.json", f"{run_id}.json"}


# ------------------------------------------------------------------------------------------------ the executor
@pytest.fixture
def smoke(blob_lake, tmp_path):
    """A fake AML whose executor runs jobs against ``blob_lake``, and the azureml backend on it."""
    executor = Executor(blob_lake, tmp_path / "aml-compute")
    fake = FakeAML(executor=executor)
    fake.register_repo_components()
    backend, _ = aml_client(fake)
    yield fake, executor, backend, blob_lake
    executor.wait(60)  # no job outlives its test (its lake is emptied next)


def _submit(backend: Backend, pipeline: str, body: dict[str, Any]) -> str:
    status, answer, _ = runs.submit(backend, load_catalog(), pipeline, json.dumps(body).encode(), "")
    assert status == 202, answer
    return str(answer["run_id"])


def test_the_executor_runs_a_submitted_job_into_the_lake_and_completes_it_with_metrics(smoke):
    fake, executor, backend, lake = smoke
    run_id = _submit(backend, "smoke", {"parameters": {"region": "west"}, "idempotency_key": "exec-ok"})
    executor.wait(60)
    assert executor.ran[run_id] == ["prepare", "train", "evaluate"] and executor.errors == []
    final = backend.get(run_id)
    assert final.aml_status == "Completed"
    assert [(s.name, s.aml_status) for s in final.steps] == [(s, "Completed") for s in executor.ran[run_id]]
    assert final.metrics == {s: {f"{s}_seconds": 0.2} for s in executor.ran[run_id]}
    for step in executor.ran[run_id]:
        done = json.loads(lake.read_bytes(f"runs/{run_id}/outputs/{step}/out/done.json"))
        assert done == {"step": step, "region": "west"}
    # AML writes the outputs, not the local runner's records
    assert not [p for p in lake.list(f"runs/{run_id}") if "/outputs/" not in p]


def test_a_failed_step_fails_the_job_with_its_error_and_cancels_the_later_steps(smoke):
    fake, executor, backend, lake = smoke
    run_id = _submit(backend, "smoke", {"parameters": {"fail_step": "train"}, "idempotency_key": "exec-fail"})
    executor.wait(60)
    final = backend.get(run_id)
    assert final.aml_status == "Failed" and final.error is not None and final.error.step == "train"
    assert "failing as asked" in final.error.message
    assert [s.aml_status for s in final.steps] == ["Completed", "Failed", "Canceled"]
    assert executor.ran[run_id] == ["prepare", "train"]
    assert not list(lake.list(f"runs/{run_id}/outputs/evaluate"))


def test_a_job_naming_a_data_asset_the_workspace_does_not_have_fails_before_any_step(smoke):
    fake, executor, backend, lake = smoke
    body = {"inputs": {"curated": f"azureml:{DATA_ASSET}:2025-01-06"}, "idempotency_key": "exec-missing"}
    run_id = _submit(backend, "forecast", body)
    executor.wait(60)
    final = backend.get(run_id)
    assert final.aml_status == "Failed" and final.error is not None
    assert f"data asset {DATA_ASSET}:2025-01-06 is not registered" in (fake.jobs[run_id]["_error"]["error"]["message"])
    assert run_id not in executor.ran and executor.errors == []


def test_a_cancel_stops_the_running_step_and_the_job_ends_canceled(smoke):
    fake, executor, backend, lake = smoke
    run_id = _submit(backend, "smoke", {"parameters": {"seconds": 30}, "idempotency_key": "exec-cancel"})
    deadline = time.monotonic() + 30
    while not executor.ran.get(run_id):  # until the first step has started
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)
    assert runs.cancel(backend, run_id)[0] == 202
    executor.wait(30)
    assert backend.get(run_id).aml_status == "Canceled"
    assert executor.ran[run_id] == ["prepare"]
