"""Retraining on code change (issue 23, item 3): each card records the code that trained it (the
forecast pipeline's component versions and one hash over them), and the weekly plan retrains a
group whose production model was trained by other code, saying so. The sources are changed in a
temporary copy of the repo's pipelines (``shared.aml.assets.ROOT`` pointed at it): no repo file
is touched."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from azure.ai.ml import MLClient

from shared import ROOT, clock
from shared.aml import assets
from shared.aml.catalog import load_catalog
from shared.lake import Lake
from shared.mlops import steps
from shared.mlops.aml_registry import AzureRegistry
from shared.mlops.cards import ModelCard, TrainingCode
from shared.mlops.code_version import training_code
from shared.mlops.context import compose
from shared.mlops.data_assets import LakeDataCatalog
from shared.mlops.registry import LakeRegistry
from shared.settings import Settings
from tests.fakes.aml.credential import FakeCredential
from tests.fakes.aml.fake import FakeAML
from tests.mlops.test_mlops_batch import (
    NE,
    NOW,
    WEST,
    W,
    clock_at_now,  # noqa: F401 (autouse: the clock at the world's NOW)
    context,
    fake_training_run,
    promote,
    world,
)

GROUPS = (*NE, *WEST)
SOURCE = "pipelines/forecast/src/models.py"


@pytest.fixture(autouse=True)
def today(monkeypatch):
    """The clock at the batch's Monday: the world's rows are not 'after today'."""
    monkeypatch.setattr(clock, "now", lambda: NOW)


@pytest.fixture
def sources(tmp_path, monkeypatch) -> Path:
    """A copy of the repo's pipelines that the components' versions are read from."""
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "pipelines", root / "pipelines", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    monkeypatch.setattr(assets, "ROOT", root)
    assets.components.cache_clear()
    yield root
    assets.components.cache_clear()


def change_a_line(root: Path) -> None:
    path = root / SOURCE
    path.write_text(path.read_text(encoding="utf-8") + "\n# one more line\n", encoding="utf-8")
    assets.components.cache_clear()  # a new deployment reads its sources anew


def train_everything(ctx: steps.Context, plan: dict, run_id: str) -> dict:
    """The training run the plan asks for, registered: every group better than what serves."""
    train = fake_training_run(ctx.lake, run_id, dict.fromkeys(GROUPS, 0.2))
    return steps.register(ctx, {"plan": plan, "train": train}, NOW)


def test_a_changed_line_of_the_forecast_sources_retrains_every_group_and_says_so(lake, sources):
    before = (ROOT / SOURCE).read_bytes()
    world(lake)
    old = training_code()
    ctx = context(lake, code=old)
    first = steps.plan(ctx, {"week": W}, NOW)
    assert first["train"] == "all" and first["code"] == old.model_dump()
    registered = train_everything(ctx, first, "run-code-1")
    assert {g: r["outcome"] for g, r in registered["groups"].items()} == dict.fromkeys(GROUPS, "promoted")
    assert all(ctx.registry.production(g).code == old for g in GROUPS)
    assert steps.publish(ctx, {"plan": first, "registered": registered}, NOW)["code"] == old.version

    # nothing changed: nothing retrains
    same = steps.plan(context(lake, code=training_code()), {"week": W}, NOW)
    assert same["train"] == [] and {d["action"] for d in same["groups"].values()} == {"skip"}

    change_a_line(sources)
    new = training_code()
    assert new.version != old.version
    changed = steps.plan(context(lake, code=new), {"week": W}, NOW)
    assert sorted(changed["train"]) == sorted(GROUPS)
    for group in GROUPS:
        reason = changed["groups"][group]["reason"]
        assert reason.startswith(f"training code changed: {old.version} -> {new.version} ("), reason
        # every component that ships the sources moved; the reason names them
        assert "forecastops_forecast_train" in reason and "forecastops_forecast_prepare" in reason
    assert (ROOT / SOURCE).read_bytes() == before  # the repo's own file was never touched


def test_a_model_registered_before_the_code_was_recorded_retrains_once_and_says_so(lake):
    world(lake)
    code = training_code()
    ctx = context(lake, code=code)
    plan = steps.plan(context(lake), {"week": W}, NOW)
    for name in GROUPS:
        promote(ctx, plan, name)  # cards as registered before this change: no code
    assert ctx.registry.production(NE[0]).code is None
    once = steps.plan(ctx, {"week": W}, NOW)
    assert sorted(once["train"]) == sorted(GROUPS)
    assert once["groups"][NE[0]]["reason"] == (
        f"training code changed: unknown -> {code.version} (v1 was registered before the code was recorded)"
    )
    train_everything(ctx, once, "run-code-once")
    assert steps.plan(ctx, {"week": W}, NOW)["train"] == []


def test_the_code_version_covers_every_component_the_forecast_pipeline_runs():
    code = training_code()
    job = yaml.safe_load((ROOT / load_catalog()["forecast"].definition.job).read_text(encoding="utf-8"))
    used = {str(step["component"]).split(":")[1] for step in job["jobs"].values()}
    assert set(code.components) == used
    # the versions the azureml backend pins (and tags its jobs with: forecastops.components)
    assert all(assets.pin(f"azureml:{n}:1") == f"azureml:{n}:{v}" for n, v in code.components.items())
    assert training_code() == code  # the same content, the same version


def test_the_batch_context_is_composed_with_the_repo_s_training_code(local_lake):
    settings = Settings.model_validate({"FORECASTOPS_MODEL_VERSIONS_KEPT": "4"})
    ctx = compose(local_lake, LakeRegistry(local_lake), LakeDataCatalog(local_lake), load_catalog(), settings)
    assert ctx.code == training_code() and ctx.versions_kept == 4


def _card(code: TrainingCode | None) -> ModelCard:
    return ModelCard(name=NE[0], trained_at=NOW.timestamp(), run_id="run-1", code=code)


@pytest.mark.parametrize("home", ["lake", "azureml"])
def test_a_card_keeps_its_code_in_either_registry(local_lake: Lake, home):
    fake = FakeAML()
    if home == "lake":
        registry = LakeRegistry(local_lake)
    else:
        client = MLClient(FakeCredential(), fake.subscription_id, "rg", "ws", transport=fake.transport())
        registry = AzureRegistry(client, local_lake)
    code = training_code()
    assert registry.register(_card(code), {"model.pkl": b"m"}).code == code
    assert registry.get(NE[0], 1).code == code
    assert registry.register(_card(None), {"model.pkl": b"m"}).version == 2 and registry.get(NE[0], 2).code is None
    if home == "azureml":
        tags = fake.model_versions(NE[0])["1"]["properties"]["tags"]
        assert tags["code.version"] == code.version
        assert tags["code.forecastops_forecast_train"] == code.components["forecastops_forecast_train"]
