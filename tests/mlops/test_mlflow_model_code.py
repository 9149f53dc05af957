"""A model version runs the code saved inside it (issue 23, item 2, the review's defects): scoring
loads and predicts each MLflow model with its own ``code/`` modules, though the score step has
imported modules of the same names (``models``, ``backtest``, ``forecast_lib``, ``forecast_pyfunc``),
and puts the step's back after each; a version whose code cannot run costs its group only, with a
one-line reason; a published reason never carries a path of the node; and train saves each group's
MLflow model alone: a group whose save raises is listed failed, every other group is saved.

The steps run as subprocesses from ``pipelines/forecast/src`` with ``-W error`` (test_mlflow_models.py's
``trained``: one training of 2 regions x 2 stores x 4 SKUs x 60 weeks); the in-process checks import the
step's modules the way the component's command line finds them (tests/drivers.forecast_step_module)."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.drivers import forecast_step_module
from tests.mlops.test_mlflow_models import SRC, production_folder, step, trained

#: appended to a copy's code/models.py: the same model, every forecast doubled (a change of the code)
DOUBLED = """

_undoubled = forecast


def forecast(*args, **kwargs):
    out = _undoubled(*args, **kwargs)
    out["forecast"] = out["forecast"] * 2
    return out
"""
#: appended to a copy's code/models.py: code that cannot run
RAISES = '\n\nraise RuntimeError("this version\'s code cannot run")\n'
#: a path of the node in a published text (a test's temporary folder, AML's job folder)
NODE_PATH = re.compile(r"(/tmp/|/mnt/|/home/|/root/|/work/|pytest-of-)")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return trained(tmp_path_factory.mktemp("mlflow_model_code"))


def with_code(folder: Path, extra: str) -> Path:
    """``folder``'s model with ``extra`` appended to its code/models.py."""
    path = folder / "code" / "models.py"
    path.write_text(path.read_text() + extra)
    return folder


def served(out: Path) -> tuple[dict[str, Any], Path]:
    forecasts = out / "forecasts"
    return json.loads((forecasts / "summary.json").read_text()), forecasts


def test_scoring_runs_each_version_with_the_code_saved_inside_it(run, tmp_path):
    doubled, raising, missing, *others = run["groups"]
    clean = production_folder(run, tmp_path / "clean")
    step("score_production.py", "--features", run["features"], "--production", clean, "--out", tmp_path / "a")
    prod = production_folder(run, tmp_path / "production")
    # doubled: production broken, its previous version trained by other code (its forecasts doubled)
    doc = json.loads((prod / "production.json").read_text())
    doc["models"][doubled]["previous"] = {"version": 3}
    (prod / "production.json").write_text(json.dumps(doc))
    shutil.copytree(run["models"] / "mlflow" / doubled, prod / doubled / "previous")
    with_code(prod / doubled / "previous", DOUBLED)
    (prod / doubled / "artifacts" / "model" / "model.pkl").write_bytes(b"truncated")
    # raising: its code raises on import; missing: a file of its version is gone
    with_code(prod / raising, RAISES)
    (prod / missing / "artifacts" / "model" / "model.pkl").unlink()
    proc = step("score_production.py", "--features", run["features"], "--production", prod, "--out", tmp_path / "b")
    (before, a), (summary, b) = served(tmp_path / "a"), served(tmp_path / "b")
    sources = summary["sources"]
    # the previous version forecasts with its own code: its numbers, not the step's code's
    assert (sources[doubled]["source"], sources[doubled]["version"]) == ("previous", 3)
    mine = pd.read_csv(b / f"{doubled}.csv")
    theirs = pd.read_csv(a / f"{doubled}.csv")
    assert len(mine) == len(theirs) > 0 and (mine["source"] == "previous").all()
    assert theirs["forecast"].sum() > 0
    assert np.allclose(mine["forecast"], 2 * theirs["forecast"], atol=2e-3)
    # a version whose code cannot run: its group falls by the chain, the reason one line
    assert sources[raising]["source"] == "baseline"
    [why, *_] = sources[raising]["reasons"]
    assert why.startswith("production v4: ") and f"{raising}/MLmodel cannot be read" in why and "\n" not in why
    assert "RuntimeError: this version's code cannot run" in why
    # a reason names the version's files by the production folder's names, never a node's path
    [gone, *_] = sources[missing]["reasons"]
    assert sources[missing]["source"] == "baseline" and "FileNotFoundError" in gone
    assert f"{missing}/artifacts/model/model.pkl" in gone
    for group in run["groups"]:
        for reason in sources[group]["reasons"]:
            assert not NODE_PATH.search(reason), reason
    # ... the whole text is in the node's log
    assert str(prod / missing) in proc.stderr
    # every other group as the step's own code serves it
    for group in others:
        assert sources[group]["source"] == "production"
        assert (b / f"{group}.csv").read_bytes() == (a / f"{group}.csv").read_bytes()
    assert before["sources"][doubled]["source"] == "production"


def test_a_loaded_version_keeps_its_own_modules_and_the_steps_stay_intact(run, tmp_path):
    model_versions, mlflow_model, backtest = (forecast_step_module(m) for m in ("model_versions", "mlflow_model", "backtest"))  # fmt: skip
    group = run["groups"][0]
    other = shutil.copytree(run["models"] / "mlflow" / group, tmp_path / "other" / group)
    with_code(other, DOUBLED)
    same = shutil.copytree(run["models"] / "mlflow" / group, tmp_path / "same" / group)
    names = ("models", "backtest", "forecast_lib", "forecast_pyfunc")
    steps_modules = {n: sys.modules[n] for n in names}
    path = list(sys.path)
    data = backtest.Data(run["features"])
    origin = data.meta["future_from"]
    rows = data.horizon_rows(origin, int(data.meta["future_weeks"]), group=group)
    doubled = model_versions.load_model(tmp_path / "other", group)
    plain = model_versions.load_model(tmp_path / "same", group)  # loaded after: the doubled keeps its code
    twice = doubled.forecast(data, rows, origin)["forecast"].to_numpy(float)
    once = plain.forecast(data, rows, origin)["forecast"].to_numpy(float)
    assert once.sum() > 0 and np.allclose(twice, 2 * once)
    # the step's modules, unchanged: the same objects, the step's own file
    assert {n: sys.modules[n] for n in names} == steps_modules and sys.path == path
    assert Path(sys.modules["models"].__file__).parent == SRC
    # ... and its own forecast of the rows is the plain version's
    step_frame = mlflow_model.model_frame(data, rows, origin)
    assert len(step_frame) == len(once)
    # nothing was written into a version's folder (no byte code beside its code)
    assert not list(other.rglob("__pycache__")) and not list(same.rglob("__pycache__"))


def test_a_version_whose_code_raises_is_a_production_error_and_restores_the_step(run, tmp_path):
    model_versions = forecast_step_module("model_versions")
    group = run["groups"][0]
    with_code(shutil.copytree(run["models"] / "mlflow" / group, tmp_path / group), RAISES)
    before = dict(sys.modules)
    try:
        model_versions.load_model(tmp_path, group)
    except model_versions.ProductionError as e:
        reason = str(e)
    else:
        raise AssertionError("a version whose code raises loaded")
    assert "RuntimeError: this version's code cannot run" in reason and not NODE_PATH.search(reason)
    assert all(sys.modules.get(n) is m for n, m in before.items() if n in ("models", "backtest", "forecast_lib", "forecast_pyfunc"))  # fmt: skip


def test_a_group_whose_mlflow_model_is_not_saved_fails_alone(run, tmp_path):
    features = run["features"]
    groups = sorted(pd.read_csv(features / "features.csv", usecols=["group"])["group"].unique())
    broken, *others = groups
    out = tmp_path / "models"
    # where the group's MLflow model goes, a link to a folder elsewhere: its save raises
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("not the run's")
    (out / "mlflow").mkdir(parents=True)
    (out / "mlflow" / broken).symlink_to(elsewhere, target_is_directory=True)
    proc = step("train.py", "--features", features, "--seed", "7", "--out", out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [m["group"] for m in manifest["models"]] == others
    [failed] = manifest["failed"]
    assert failed["group"] == broken and failed["reason"].startswith("its MLflow model was not saved (")
    assert "\n" not in failed["reason"] and not NODE_PATH.search(failed["reason"]), failed
    assert f"train: {broken} failed: its MLflow model was not saved" in proc.stderr
    # no model of it in the folder (neither registered nor scored), its partial folder gone, the link's
    # folder untouched; every other group saved and loads
    assert not (out / f"{broken}.pkl").exists() and not (out / "mlflow" / broken).exists()
    assert (elsewhere / "keep.txt").read_text() == "not the run's"
    for group in others:
        assert (out / "mlflow" / group / "MLmodel").is_file() and (out / f"{group}.pkl").is_file()
    # the holdout scored for every other group
    step("score.py", "--features", features, "--models", out, "--out", tmp_path / "scores")
    scored = pd.read_csv(tmp_path / "scores" / "forecasts.csv", usecols=["group"])["group"].unique()
    assert sorted(scored) == others


def test_a_reason_names_a_versions_files_by_the_production_folder_never_a_path_of_the_node(run, tmp_path):
    model_versions = forecast_step_module("model_versions")
    group = run["groups"][0]
    prod = tmp_path / "production"
    shutil.copytree(run["models"] / "mlflow" / group, prod / group / "previous")
    (prod / group / "previous" / "artifacts" / "model" / "model.pkl").unlink()
    (prod / group / "model.pkl").write_bytes((run["models"] / f"{group}.pkl").read_bytes())  # a pickle version
    for name in ("lgbm.txt", "lgbm.json"):
        (prod / group / name).write_text("not a booster")
    reasons = []
    for sub in ("previous", ""):
        try:
            model_versions.load_model(prod, group, sub)
        except model_versions.ProductionError as e:
            reasons.append(str(e))
    gone, booster = reasons
    assert f"{group}/previous/MLmodel cannot be read (FileNotFoundError: " in gone
    assert f"{group}/previous/artifacts/model/model.pkl" in gone
    assert booster.startswith(f"{group}: its booster cannot be read (")
    for reason in reasons:
        assert not NODE_PATH.search(reason) and str(tmp_path) not in reason, reason
    # any other absolute path is named by its last part
    mlflow_model = forecast_step_module("mlflow_model")
    error = FileNotFoundError(2, "No such file", "/mnt/azureml/cr/j/0a1b/cap/data-capability/wd/x/model.pkl")
    said = mlflow_model.public_error(error, prod / group, group)
    assert said == "FileNotFoundError: [Errno 2] No such file: '.../model.pkl'"


def test_a_version_whose_code_raises_on_predict_falls_back_and_its_reason_names_no_node_path(run, tmp_path):
    score_production, backtest = forecast_step_module("score_production"), forecast_step_module("backtest")
    group = run["groups"][0]
    prod = tmp_path / "production"
    shutil.copytree(run["models"] / "mlflow" / group, prod / group)
    with_code(prod / group, '\n\ndef forecast(*args, **kwargs):\n    raise FileNotFoundError(2, "No such file", "/mnt/azureml/cr/j/0a1b/wd/sales.csv")\n')  # fmt: skip
    data = backtest.Data(run["features"])
    origin = data.meta["future_from"]
    rows = data.horizon_rows(origin, int(data.meta["future_weeks"]))
    out, served = score_production.serve_group(group, prod, {group: 4}, {}, data, rows, origin, "baseline")
    assert served["source"] == "baseline" and (out["source"] == "baseline").all() and len(out) > 0
    assert served["reasons"][0] == "production v4: FileNotFoundError: [Errno 2] No such file: '.../sales.csv'"
