"""Models in MLflow format (issue 23, item 2): train writes each group's model as an ``mlflow.pyfunc``
model (signature, input example, the encoder, members, weights, velocity classes and the run's booster
inside it, its code in ``code/``); a version loads with MLflow alone, in a process whose ``sys.path``
holds neither this repo nor the pipeline's ``src/``, and forecasts what the score steps serve; the
register step registers it (in Azure ML as an ``mlflow_model`` with the card's tags, through the real
SDK against the fake), and the production step hands it to scoring, which loads it with
``mlflow.pyfunc.load_model``; a version registered as a pickle before still scores.

The forecast steps run as subprocesses from ``pipelines/forecast/src`` with ``-W error``, as in
tests/pipelines/test_forecast_pipeline.py, on a lake of 2 regions x 2 stores x 4 SKUs x 60 weeks."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from azure.ai.ml import MLClient
from azure.ai.ml.entities import Model
from azure.core.exceptions import HttpResponseError

from shared import clock
from shared.lake import Lake, LocalLake
from shared.mlops import steps
from shared.mlops.aml_registry import AzureRegistry
from shared.mlops.cards import TrainingCode
from shared.mlops.data_assets import LakeDataCatalog
from shared.mlops.registry import LakeRegistry, RegistryError
from shared.tooling import cli
from tests.drivers import ROOT_DIR, forecast_step_module
from tests.fakes.aml.credential import FakeCredential
from tests.fakes.aml.fake import FakeAML
from tests.fakes.aml.models import NO_MLMODEL_MESSAGE
from tests.mlops.test_mlops_batch import GATES, NE, NOW, W, fake_training_run, world

SRC = ROOT_DIR / "pipelines" / "forecast" / "src"
HOLDOUT = 8
CODE = TrainingCode(version="0123456789abcdef", components={"forecastops_forecast_train": "5"})


def step(script: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-W", "error", script, *map(str, args)], cwd=SRC, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return trained(tmp_path_factory.mktemp("mlflow_models"))


def trained(tmp: Path) -> dict[str, Any]:
    """A lake made in ``tmp``, prepared, trained (each group's MLflow model) and its holdout scored."""
    lake = tmp / "lake"
    world_args = ["--regions", "2", "--stores-per-region", "2", "--skus", "4", "--weeks", "60", "--no-pipeline"]
    assert cli.main(["--lake", str(lake), "run", *world_args], out=io.StringIO()) == 0
    out = {k: tmp / k for k in ("features", "models", "scores")}
    step("prepare.py", "--curated", lake / "curated", "--holdout-weeks", HOLDOUT, "--regions", "all", "--out", out["features"])  # fmt: skip
    step("train.py", "--features", out["features"], "--seed", "7", "--out", out["models"])
    step("score.py", "--features", out["features"], "--models", out["models"], "--out", out["scores"])
    manifest = json.loads((out["models"] / "manifest.json").read_text())
    groups = [m["group"] for m in manifest["models"]]
    return {**out, "tmp": tmp, "groups": groups, "manifest": manifest}


def production_folder(run: dict[str, Any], where: Path, *, pickles: tuple[str, ...] = ()) -> Path:
    """A production folder as the production step writes it: each group's registered version (its
    MLflow model; for ``pickles``, a version registered before: model.pkl and the run's booster)."""
    doc = {"week": "2026-01-05", "models": {g: {"name": g, "version": 4} for g in run["groups"]}}
    where.mkdir(parents=True)
    (where / "production.json").write_text(json.dumps(doc))
    for g in run["groups"]:
        if g in pickles:
            (where / g).mkdir()
            shutil.copy(run["models"] / f"{g}.pkl", where / g / "model.pkl")
            for name in ("lgbm.txt", "lgbm.json"):
                shutil.copy(run["models"] / name, where / g / name)
        else:
            shutil.copytree(run["models"] / "mlflow" / g, where / g)
    return where


def clean_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``code`` in a new interpreter with a clean environment (no PYTHONPATH, nothing of the shell's),
    isolated (``-I``: neither the working folder nor the user's site on ``sys.path``), from ``cwd``."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd)}
    proc = subprocess.run(
        [sys.executable, "-I", "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


#: the notebook's code: every model folder given loaded with MLflow alone, its input example forecast
NOTEBOOK = """
import json, sys
repo, folders, frames = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
assert not [p for p in sys.path if p.startswith(repo) and "site-packages" not in p], sys.path
import mlflow.pyfunc
import pandas as pd
answer = {}
for group, folder in folders.items():
    model = mlflow.pyfunc.load_model(folder)
    example = model.input_example
    out = {"example": model.predict(example).to_dict(orient="list")}
    if group in frames:
        text = ("series", "store_id", "sku", "region", "store_format", "velocity", "week_start")
        frame = pd.read_csv(frames[group], dtype={c: str for c in text})
        numbers = [c for c in frame.columns if c not in text]
        frame[numbers] = frame[numbers].astype(float)  # the signature's doubles (a CSV reads 150 as an integer)
        out["frame"] = model.predict(frame).to_dict(orient="list")
    out["modules"] = {m: sys.modules[m].__file__ for m in ("models", "backtest", "forecast_lib", "forecast_pyfunc")}
    answer[group] = out
print(json.dumps(answer))
"""


def notebook(folders: dict[str, Path], frames: dict[str, Path], cwd: Path) -> dict[str, Any]:
    args = [str(ROOT_DIR), json.dumps({g: str(f) for g, f in folders.items()}), json.dumps({g: str(f) for g, f in frames.items()})]  # fmt: skip
    proc = clean_python(f"import sys; sys.argv[1:] = {args!r}\n{NOTEBOOK}", cwd)
    return json.loads(proc.stdout.strip().splitlines()[-1])


# what train writes -----------------------------------------------------------------------------------------
def test_each_group_is_an_mlflow_model_with_its_signature_example_parts_and_code(run):
    assert run["groups"]
    for entry in run["manifest"]["models"]:
        group = entry["group"]
        folder = run["models"] / "mlflow" / group
        assert entry["mlflow"]["folder"] == f"mlflow/{group}" and entry["mlflow"]["bytes"] > 0
        mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
        flavor = mlmodel["flavors"]["python_function"]
        assert flavor["loader_module"] == "mlflow.pyfunc.model" and flavor["code"] == "code"
        # the artifact where it is in the model, not where the training node staged it (/tmp/tmpXXXX/model)
        assert flavor["artifacts"]["model"] == {"path": "artifacts/model", "uri": "artifacts/model"}
        assert not re.search(r"(/tmp/|/mnt/|pytest-of-)", (folder / "MLmodel").read_text())
        inputs = [c["name"] for c in json.loads(mlmodel["signature"]["inputs"])]
        outputs = [c["name"] for c in json.loads(mlmodel["signature"]["outputs"])]
        assert inputs[:3] == ["series", "store_id", "sku"] and "lgbm_offset" in inputs and "upper" in inputs
        assert outputs[:4] == ["store_id", "sku", "week_start", "forecast"] and "new_sku" in outputs
        assert mlmodel["saved_input_example_info"]["artifact_path"] == "input_example.json"
        example = json.loads((folder / "input_example.json").read_text())
        assert example["columns"] == inputs and 0 < len(example["data"]) <= 5
        meta = mlmodel["metadata"]
        assert meta["group"] == group and meta["weights"] == entry["weights"] and meta["lgbm"] is True
        assert meta["velocity_classes"] and all(sku.startswith("SKU-") for sku in meta["velocity_classes"])
        # the group model (encoder, LASSO, MLP, weights, classes) and the run's booster inside it
        parts = sorted(p.name for p in (folder / "artifacts" / "model").iterdir())
        assert parts == ["lgbm.json", "lgbm.txt", "model.pkl"]
        assert (folder / "artifacts" / "model" / "lgbm.txt").read_bytes() == (run["models"] / "lgbm.txt").read_bytes()
        code = sorted(p.name for p in (folder / "code").iterdir())
        assert code == ["backtest.py", "forecast_lib.py", "forecast_pyfunc.py", "models.py"]
        assert "mlflow-skinny==" in (folder / "requirements.txt").read_text()
        # the pickled pyfunc names the module in code/, never the repo's import path
        assert b"forecast_pyfunc" in (folder / "python_model.pkl").read_bytes()
        assert b"pipelines" not in (folder / "python_model.pkl").read_bytes()


def test_a_model_loads_with_mlflow_alone_and_forecasts_what_score_and_score_production_serve(run, tmp_path):
    # score_production serves each group by its MLflow model
    prod = production_folder(run, tmp_path / "production")
    step("score_production.py", "--features", run["features"], "--production", prod, "--out", tmp_path / "served")
    served = tmp_path / "served" / "forecasts"
    summary = json.loads((served / "summary.json").read_text())
    assert {g: s["source"] for g, s in summary["sources"].items()} == {g: "production" for g in run["groups"]}
    # the same rows as the model's input, built in this process (prepare's output + mlflow_model.model_frame)
    mlflow_model, backtest = forecast_step_module("mlflow_model"), forecast_step_module("backtest")
    data = backtest.Data(run["features"])
    origin = data.meta["future_from"]
    frames = {}
    for g in run["groups"]:
        rows = data.horizon_rows(origin, int(data.meta["future_weeks"]), group=g)
        frames[g] = tmp_path / f"{g}.csv"
        mlflow_model.model_frame(data, rows, origin).to_csv(frames[g], index=False, float_format="%.17g")
    got = notebook({g: run["models"] / "mlflow" / g for g in run["groups"]}, frames, tmp_path)
    scores = pd.read_csv(run["scores"] / "forecasts.csv", dtype={"store_id": str, "sku": str})
    holdout = scores[scores["split"] == "holdout"].set_index(["store_id", "sku", "week_start"])["forecast"]
    for g in run["groups"]:
        # its code came from a model's code/ folder (the first one loaded: one process imports a module
        # once), never from the repo
        for file in got[g]["modules"].values():
            assert Path(file).parent.name == "code" and Path(file).parent.parent.parent == run["models"] / "mlflow"
        # the input example (the group's first holdout rows): score.py's forecasts of them
        example = pd.DataFrame(got[g]["example"])
        keys = list(zip(example["store_id"], example["sku"], example["week_start"], strict=True))
        assert np.allclose(np.round(example["forecast"], 3), holdout.loc[keys].to_numpy(float), atol=1e-3), g
        # the future weeks: score_production's served file, row for row
        mine = pd.DataFrame(got[g]["frame"]).sort_values(["store_id", "sku", "week_start"], kind="stable")
        file = pd.read_csv(served / f"{g}.csv", dtype={"store_id": str, "sku": str})
        assert len(mine) == len(file) > 0 and list(mine["week_start"]) == list(file["week_start"])
        assert np.array_equal(np.round(mine["forecast"].to_numpy(float), 3), file["forecast"].to_numpy(float)), g
        assert (file["model_version"] == 4).all() and not mine["new_sku"].any()


def test_the_signature_refuses_rows_without_the_models_columns(run):
    from mlflow.exceptions import MlflowException

    code = f"""
import mlflow.pyfunc
model = mlflow.pyfunc.load_model({str(run["models"] / "mlflow" / run["groups"][0])!r})
example = model.input_example
try:
    model.predict(example.drop(columns=["lgbm_offset", "upper"]))
except Exception as e:
    print("refused:", type(e).__name__)
"""
    out = clean_python(code, run["tmp"]).stdout
    assert "refused: MlflowException" in out
    assert MlflowException  # the same exception class a notebook catches


def test_an_old_pickle_version_still_scores_and_a_corrupt_mlmodel_costs_its_group_only(run, tmp_path):
    old, broken, *others = run["groups"]
    both = production_folder(run, tmp_path / "production", pickles=(old,))
    (both / broken / "MLmodel").write_text("{{{ not an MLmodel")
    step("score_production.py", "--features", run["features"], "--production", both, "--out", tmp_path / "mixed")
    mlflow_only = production_folder(run, tmp_path / "mlflow_only")
    step("score_production.py", "--features", run["features"], "--production", mlflow_only, "--out", tmp_path / "all")
    mixed, clean = tmp_path / "mixed" / "forecasts", tmp_path / "all" / "forecasts"
    sources = json.loads((mixed / "summary.json").read_text())["sources"]
    # the pickle of a version registered before: served, the same numbers as the MLflow model's
    assert sources[old]["source"] == "production" and sources[old]["version"] == 4
    assert (mixed / f"{old}.csv").read_bytes() == (clean / f"{old}.csv").read_bytes()
    # the broken MLmodel: its group falls to its baseline (no previous version), with the reason
    assert sources[broken]["source"] == "baseline"
    assert any("MLmodel cannot be read" in r for r in sources[broken]["reasons"]), sources[broken]
    # every other group as before
    for g in others:
        assert sources[g]["source"] == "production"
        assert (mixed / f"{g}.csv").read_bytes() == (clean / f"{g}.csv").read_bytes()


def test_an_mlmodel_of_another_group_is_not_served_for_this_one(run, tmp_path):
    first, second, *_ = run["groups"]
    prod = production_folder(run, tmp_path / "production")
    shutil.rmtree(prod / second)
    shutil.copytree(run["models"] / "mlflow" / first, prod / second)
    step("score_production.py", "--features", run["features"], "--production", prod, "--out", tmp_path / "out")
    sources = json.loads((tmp_path / "out" / "forecasts" / "summary.json").read_text())["sources"]
    assert sources[second]["source"] == "baseline"
    assert any(f"is the model of {first!r}" in r for r in sources[second]["reasons"])


# registered: the lake's registry and Azure ML's ------------------------------------------------------------
@pytest.fixture
def at_now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock, "now", lambda: NOW)


def _registered_run(run: dict[str, Any], lake: Lake) -> dict[str, Any]:
    """A finished training run of NE's two groups in ``lake``: NE[0] with the MLflow model train wrote
    for it, NE[1] with a pickle only (a run trained before the models were MLflow models)."""
    assert NE[0] in run["groups"]
    train = fake_training_run(lake, "run-w1", {NE[0]: 0.30, NE[1]: 0.31})
    folder = run["models"] / "mlflow" / NE[0]
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            lake.write_bytes(f"runs/run-w1/outputs/train/models/mlflow/{NE[0]}/{f.relative_to(folder).as_posix()}", f.read_bytes())  # fmt: skip
    return train


def test_the_register_step_registers_the_mlflow_model_and_production_hands_it_to_scoring(run, at_now, tmp_path):
    lake = LocalLake(tmp_path / "lake")
    world(lake)
    ctx = steps.Context(lake=lake, registry=LakeRegistry(lake), data=LakeDataCatalog(lake), gates=GATES, code=CODE)
    plan = steps.plan(ctx, {"week": W}, NOW)
    train = _registered_run(run, lake)
    result = steps.register(ctx, {"plan": plan, "train": train}, NOW)
    assert result["groups"][NE[0]]["registered"] and result["groups"][NE[1]]["registered"]
    card = ctx.registry.get(NE[0], 1)
    assert "MLmodel" in card.files and "artifacts/model/model.pkl" in card.files and "model.pkl" not in card.files
    assert card.week == W and card.code == CODE and card.data_versions["curated"] == plan["data"]["reference"]
    assert ctx.registry.get(NE[1], 1).files == ["lgbm.txt", "model.pkl"]  # a run of pickles registers as before
    # the version's folder is the MLflow model: a data scientist loads it where it lies
    got = notebook({NE[0]: lake.root / "models" / NE[0] / "1"}, {}, tmp_path)
    assert got[NE[0]]["example"]["forecast"]
    # promoted, the production step copies it file for file where scoring reads it
    assert result["groups"][NE[0]]["outcome"] == "promoted"
    handed = steps.production(ctx, {"plan": plan}, NOW)
    folder = lake_folder(handed["uri"])
    assert handed["models"][NE[0]]["version"] == 1
    assert sorted(p.removeprefix(f"{folder}/{NE[0]}/") for p in lake.list(f"{folder}/{NE[0]}")) == card.files


def test_aml_registers_an_mlflow_model_with_the_cards_tags_through_the_sdk(run, at_now, tmp_path):
    lake = LocalLake(tmp_path / "lake")
    fake = FakeAML()
    fake.datastore_lake = lake
    client = MLClient(FakeCredential(), fake.subscription_id, "rg", "ws", transport=fake.transport())
    world(lake)
    registry = AzureRegistry(client, lake)
    ctx = steps.Context(lake=lake, registry=registry, data=LakeDataCatalog(lake), gates=GATES, code=CODE)
    plan = steps.plan(ctx, {"week": W}, NOW)
    steps.register(ctx, {"plan": plan, "train": _registered_run(run, lake)}, NOW)
    props = fake.model_versions(NE[0])["1"]["properties"]
    assert props["modelType"] == "mlflow_model"
    assert fake.model_versions(NE[1])["1"]["properties"]["modelType"] == "custom_model"  # a pickle, as before
    tags = props["tags"]
    assert (tags["group.region"], tags["group.format"], tags["group.velocity"]) == ("northeast", "large", "fast")
    assert tags["week"] == W and tags["data.curated"] == plan["data"]["reference"]
    assert tags["code.version"] == CODE.version and tags["code.forecastops_forecast_train"] == "5"
    assert tags["mape"] == "0.3" and tags["baseline_mape"] == "0.5" and tags["run_id"] == "run-w1"
    card = registry.get(NE[0], 1)
    assert card.week == W and "MLmodel" in card.files
    # the model's path holds MLmodel at its top, and loads with MLflow alone
    folder = lake_folder(props["modelUri"])
    assert lake.exists(f"{folder}/MLmodel") and registry.read_file(NE[0], 1, "MLmodel").startswith(b"flavors:")
    got = notebook({NE[0]: lake.root / folder}, {}, tmp_path)
    assert got[NE[0]]["example"]["forecast"]


def lake_folder(uri: str) -> str:
    from shared.aml.lakeuri import lake_path

    folder = lake_path(uri)
    assert folder is not None
    return folder.rstrip("/")


def test_the_fake_refuses_an_mlflow_model_whose_path_has_no_mlmodel_like_aml(tmp_path):
    lake = LocalLake(tmp_path / "lake")
    fake = FakeAML()
    fake.datastore_lake = lake
    client = MLClient(FakeCredential(), fake.subscription_id, "rg", "ws", transport=fake.transport())
    lake.write_bytes("models/x/files/a/model.pkl", b"a pickle")
    for path in ("azureml://datastores/lake_models/paths/x/files/a/", "azureml://datastores/lake_models/paths/none/"):
        with pytest.raises(HttpResponseError, match=NO_MLMODEL_MESSAGE.split(":")[0]):
            client.models.create_or_update(Model(name=NE[0], version="1", path=path, type="mlflow_model"))
    lake.write_bytes("models/x/files/a/MLmodel", b"flavors: {}")
    client.models.create_or_update(
        Model(name=NE[0], version="1", path="azureml://datastores/lake_models/paths/x/files/a/", type="mlflow_model")
    )
    assert fake.model_versions(NE[0])["1"]["properties"]["modelType"] == "mlflow_model"


# the registry's file names -----------------------------------------------------------------------------
def test_a_version_holds_an_mlflow_models_nested_files_and_refuses_paths_that_escape(local_lake):
    registry = LakeRegistry(local_lake)
    from tests.mlops.test_mlops_registry import candidate

    files = {"MLmodel": b"flavors: {}", "artifacts/model/model.pkl": b"p", "code/models.py": b"# code"}
    card = registry.register(candidate(0.3), files)
    assert card.files == sorted(files)
    assert registry.read_file(card.name, 1, "artifacts/model/model.pkl") == b"p"
    assert local_lake.read_bytes(f"models/{card.name}/1/code/models.py") == b"# code"
    for bad in ("../x", "a/../b", "/abs", "a//b", "code/.hidden", "a/b/c/d/e/f", "card.json", "x\\y"):
        with pytest.raises(RegistryError):
            registry.register(candidate(0.3), {bad: b"x"})


def test_the_models_requirements_are_the_forecast_environments():
    conda = yaml.safe_load((ROOT_DIR / "pipelines" / "forecast" / "environment" / "conda.yml").read_text())
    pins = {p for d in conda["dependencies"] if isinstance(d, dict) for p in d["pip"] if "==" in p}
    required = set(forecast_step_module("mlflow_model").REQUIREMENTS)
    assert required <= pins, required - pins
    assert {r.split("==")[0] for r in required} == {"mlflow-skinny", "numpy", "pandas", "scikit-learn", "lightgbm"}


def test_a_corrupt_production_mlmodel_falls_to_the_previous_mlflow_version(run, tmp_path):
    group = run["groups"][0]
    prod = production_folder(run, tmp_path / "production")
    doc = json.loads((prod / "production.json").read_text())
    doc["models"][group]["previous"] = {"version": 3}
    (prod / "production.json").write_text(json.dumps(doc))
    shutil.copytree(run["models"] / "mlflow" / group, prod / group / "previous")
    (prod / group / "artifacts" / "model" / "model.pkl").write_bytes(b"truncated")  # production's parts broken
    step("score_production.py", "--features", run["features"], "--production", prod, "--out", tmp_path / "out")
    served = json.loads((tmp_path / "out" / "forecasts" / "summary.json").read_text())["sources"][group]
    assert (served["source"], served["version"]) == ("previous", 3)
    assert "production v4" in served["reasons"][0] and "MLmodel cannot be read" in served["reasons"][0]
    rows = pd.read_csv(tmp_path / "out" / "forecasts" / f"{group}.csv")
    assert (rows["source"] == "previous").all() and (rows["model_version"] == 3).all()
