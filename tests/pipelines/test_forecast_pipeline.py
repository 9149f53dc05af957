"""Basic model validation tests of the forecast pipeline (pipelines/forecast/), on a small
generated batch: data validation (prepare), training validation (train), scoring validation
(score) and the ensemble against the historical-average baseline (evaluate); retraining some
groups only (train ``--groups``), and the score pipeline (pipelines/score/): scoring with
production models of different runs (score_production), through the local backend too.

The steps run as subprocesses, the way the components' commands run them (``python
<step>.py ...`` from ``pipelines/forecast/src``), with ``-W error``; the pipeline runs once
per module on a lake of 3 regions x 4 stores x 6 SKUs x 60 weeks, generated and ingested by
the main job (without its own pipeline run: the whole weekly job is tested in test_cli)."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shared import clock
from shared.aml.catalog import load_catalog
from shared.aml.local.backend import LocalBackend
from shared.aml.request import validate_request
from shared.health import policy
from shared.lake import LocalLake
from shared.settings import Settings
from shared.tooling import cli
from shared.watch.gates import gate_failures
from tests.drivers import ROOT_DIR, forecast_step_module

ROOT = ROOT_DIR
SRC = ROOT / "pipelines" / "forecast" / "src"
HOLDOUT = 8
#: evaluate's health-policy arguments, as the catalog passes them
POLICY = ("--max-mape", str(policy().gates.max_mape), "--baseline-margin", str(policy().baseline.margin))


def step(script: str, *args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-W", "error", script, *map(str, args)],
        cwd=SRC,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("forecast")
    lake = tmp / "lake"
    batch = ["--regions", "3", "--stores-per-region", "4", "--skus", "6", "--weeks", "60", "--no-pipeline"]
    assert cli.main(["--lake", str(lake), "run", *batch], out=io.StringIO()) == 0
    out = {k: tmp / k for k in ("features", "models", "scores", "metrics")}
    env = {"FORECASTOPS_METRICS_FILE": str(tmp / "metrics.jsonl"), "MLFLOW_TRACKING_URI": (tmp / "mlruns").as_uri()}
    curated = lake / "curated"
    step("prepare.py", "--curated", curated, "--holdout-weeks", HOLDOUT, "--regions", "all", "--out", out["features"])
    step("train.py", "--features", out["features"], "--seed", "7", "--out", out["models"], env=env)
    step("score.py", "--features", out["features"], "--models", out["models"], "--out", out["scores"])
    step("evaluate.py", "--scores", out["scores"], "--models", out["models"], *POLICY, "--out", out["metrics"], env=env)
    return {**out, "tmp": tmp, "curated": curated}


# data validation ---------------------------------------------------------------------------
def test_prepare_writes_the_feature_table(run: dict[str, Path]) -> None:
    sys.path.insert(0, str(SRC))
    try:
        from forecast_lib import KEYS, NUMERIC, TARGET
    finally:
        sys.path.remove(str(SRC))
    table = pd.read_csv(run["features"] / "features.csv", dtype={"store_id": str, "sku": str, "zip_code": str})
    assert list(table.columns) == [*KEYS, TARGET, *NUMERIC]
    assert set(table["split"]) == {"train", "holdout", "future"}
    assert table[[*KEYS, *NUMERIC]].notna().all().all()
    known = table[table["split"] != "future"]
    assert known[TARGET].notna().all() and (known[TARGET] >= 0).all()
    assert table.loc[table["split"] == "future", TARGET].isna().all()
    assert set(table["velocity"]) == {"fast", "slow"}
    assert set(table["store_format"]) <= {"large", "small"}
    assert (table["group"] == table["region"] + "." + table["store_format"] + "." + table["velocity"]).all()
    # one row per series and week; the holdout is the last HOLDOUT weeks of the lake
    assert not table.duplicated(["series", "week_start"]).any()
    weeks = sorted(table.loc[table["split"] == "holdout", "week_start"].unique())
    assert len(weeks) == HOLDOUT and weeks[0] > table.loc[table["split"] == "train", "week_start"].max()
    meta = json.loads((run["features"] / "meta.json").read_text())
    assert meta["holdout_weeks"] == HOLDOUT and meta["feature_lag_weeks"] >= HOLDOUT
    assert {v["class"] for v in meta["velocity"].values()} == {"fast", "slow"}


def test_shipments_of_daily_delivery_files_are_summed_per_week(run: dict[str, Path]) -> None:
    raw = pd.concat(
        pd.read_csv(f, dtype={"store_id": str, "sku": str})
        for f in (run["curated"] / "shipments_weekly" / "v1").rglob("*.csv")
    )
    weekly = raw.groupby(["store_id", "sku", "week_start"])["units_shipped"].sum()
    assert raw.duplicated(["store_id", "sku", "week_start"]).any()  # the sample has partial weeks
    table = pd.read_csv(run["features"] / "features.csv", dtype={"store_id": str, "sku": str})
    known = table[table["split"] != "future"].set_index(["store_id", "sku", "week_start"])["units"]
    joined = known.to_frame().join(weekly, how="left")
    assert (joined["units"] == joined["units_shipped"].fillna(0)).all()


def test_prepare_keeps_only_the_regions_asked_for(run: dict[str, Path]) -> None:
    out = run["tmp"] / "one_region"
    step("prepare.py", "--curated", run["curated"], "--regions", "northeast", "--out", out)
    table = pd.read_csv(out / "features.csv", usecols=["region"])
    assert set(table["region"]) == {"northeast"}
    bad = subprocess.run(
        [sys.executable, "prepare.py", "--curated", run["curated"], "--regions", "atlantis", "--out", out],
        cwd=SRC,
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "atlantis" in bad.stderr


# training validation ------------------------------------------------------------------------
def test_one_model_per_group_is_trained(run: dict[str, Path]) -> None:
    table = pd.read_csv(run["features"] / "features.csv", usecols=["group", "split"])
    groups = set(table.loc[table["split"] == "train", "group"])
    manifest = json.loads((run["models"] / "manifest.json").read_text())
    assert {m["group"] for m in manifest["models"]} == groups
    assert all((run["models"] / m["file"]).is_file() for m in manifest["models"])
    assert abs(manifest["trained_at"] - clock.now().timestamp()) < 3600
    assert all(0.0 <= m["lasso_weight"] <= 1.0 and m["n_train"] > 0 for m in manifest["models"])


def test_metrics_are_in_range_and_logged(run: dict[str, Path]) -> None:
    metrics = pd.read_csv(run["metrics"] / "metrics.csv")
    models = metrics[metrics["model"] != "overall"]
    assert len(models) == len(json.loads((run["models"] / "manifest.json").read_text())["models"])
    assert models["mape"].between(0, 5).all() and models["baseline_mape"].between(0, 5).all()
    assert (models["rmse_all"] >= 0).all() and (models["rmse_0"].dropna() >= 0).all()
    assert models["mape_reduction"].notna().all()
    logged = {}
    for line in (run["tmp"] / "metrics.jsonl").read_text().splitlines():
        item = json.loads(line)
        logged[item["name"]] = item["value"]
    first = models.iloc[0]
    assert logged[f"{first['model']}.mape"] == pytest.approx(first["mape"], rel=1e-4)
    assert logged[f"{first['model']}.trained_at"] == pytest.approx(first["trained_at"])
    assert "overall.mape" in logged and logged["models"] == len(models)
    # the health gates read the leaf name "mape": only the ensemble's (per model, and overall)
    assert {k.rsplit(".", 1)[0] for k in logged if k.rsplit(".", 1)[-1] == "mape"} == {*models["model"], "overall"}
    assert list((run["tmp"] / "mlruns").rglob("metrics/*.mape"))  # MLflow's file store has them too


# scoring validation -------------------------------------------------------------------------
def test_forecasts_cover_the_holdout_and_the_next_weeks(run: dict[str, Path]) -> None:
    fc = pd.read_csv(run["scores"] / "forecasts.csv", dtype={"store_id": str, "sku": str})
    table = pd.read_csv(run["features"] / "features.csv", dtype={"store_id": str, "sku": str})
    for split in ("holdout", "future"):
        want = table.loc[table["split"] == split, ["series", "week_start"]]
        got = fc.loc[fc["split"] == split, ["series", "week_start"]]
        assert sorted(map(tuple, got.to_numpy())) == sorted(map(tuple, want.to_numpy()))
    assert (fc[["forecast", "lasso", "mlp", "baseline"]] >= 0).all().all()
    assert fc[["forecast", "lasso", "mlp", "baseline"]].notna().all().all()
    assert fc.loc[fc["split"] == "holdout", "actual"].notna().all()
    assert fc.loc[fc["split"] == "future", "actual"].isna().all()
    assert fc.loc[fc["split"] == "future", "week_start"].nunique() == 2


def test_the_ensemble_is_not_worse_than_the_baseline(run: dict[str, Path]) -> None:
    metrics = pd.read_csv(run["metrics"] / "metrics.csv").set_index("model")
    overall = metrics.loc["overall"]
    assert overall["mape"] <= overall["baseline_mape"]
    assert overall["rmse_all"] <= overall["baseline_rmse_all"] * 1.05


# retraining some groups only -----------------------------------------------------------------
def groups_of(run: dict[str, Path]) -> list[str]:
    return json.loads((run["features"] / "meta.json").read_text())["groups"]


def logged(path: Path) -> dict[str, float]:
    return {(item := json.loads(line))["name"]: item["value"] for line in path.read_text().splitlines()}


@pytest.fixture(scope="module")
def subsets(run: dict[str, Path]) -> dict[str, Path]:
    """Two trainings of some groups: two groups with the batch's seed, one other group with
    another seed (so another booster)."""
    groups = groups_of(run)
    out = {"two": run["tmp"] / "models_two", "one": run["tmp"] / "models_one"}
    for name, picked, seed in (("two", groups[:2], 7), ("one", groups[2:3], 11)):
        env = {"FORECASTOPS_METRICS_FILE": str(run["tmp"] / f"metrics_{name}.jsonl")}
        args = ("--features", run["features"], "--seed", seed, "--groups", ",".join(picked), "--out", out[name])
        step("train.py", *args, env=env)
    return out


def test_train_fits_only_the_groups_asked_for_and_lightgbm_on_every_row(
    run: dict[str, Path], subsets: dict[str, Path]
) -> None:
    groups = groups_of(run)
    models = subsets["two"]
    manifest = json.loads((models / "manifest.json").read_text())
    assert manifest["groups"] == groups[:2]
    assert [m["group"] for m in manifest["models"]] == groups[:2]
    assert sorted(p.stem for p in models.glob("*.pkl")) == groups[:2]
    backtest = pd.read_csv(models / "backtest.csv", usecols=["group"])
    assert set(backtest["group"]) == set(groups[:2])
    # the global LightGBM learns from every row: the same booster as the whole batch's (same seed)
    assert (models / "lgbm.txt").read_bytes() == (run["models"] / "lgbm.txt").read_bytes()
    assert (models / "lgbm.json").read_bytes() == (run["models"] / "lgbm.json").read_bytes()
    # a group's members are those the whole batch fit for it (its weights are steadied by the
    # groups trained with it, so they may differ)
    forecast_step_module("models")  # the pickles name the step's module
    for group in groups[:2]:
        mine, whole = (pickle.loads((m / f"{group}.pkl").read_bytes()) for m in (models, run["models"]))
        assert np.array_equal(mine.lasso.coef_, whole.lasso.coef_) and mine.n_train == whole.n_train
    # metrics keep their names, for the groups trained only
    metrics = logged(run["tmp"] / "metrics_two.jsonl")
    assert {k for k in metrics if k.endswith(".trained_at")} == {f"{g}.trained_at" for g in groups[:2]}
    assert metrics["models_trained"] == 2
    assert json.loads((run["models"] / "manifest.json").read_text())["groups"] == "all"


def test_score_and_evaluate_cover_the_trained_groups_only(run: dict[str, Path], subsets: dict[str, Path]) -> None:
    groups = groups_of(run)
    tmp = run["tmp"]
    env = {"FORECASTOPS_METRICS_FILE": str(tmp / "metrics_two_eval.jsonl")}
    scored = step("score.py", "--features", run["features"], "--models", subsets["two"], "--out", tmp / "scores_two")
    assert f"no model for {len(groups) - 2} group(s)" in scored.stderr and groups[2] in scored.stderr
    fc = pd.read_csv(tmp / "scores_two" / "forecasts.csv")
    assert set(fc["group"]) == set(groups[:2]) and set(fc["split"]) == {"holdout", "future"}
    args = ("--scores", tmp / "scores_two", "--models", subsets["two"], *POLICY, "--out", tmp / "metrics_two")
    step("evaluate.py", *args, env=env)
    table = pd.read_csv(tmp / "metrics_two" / "metrics.csv")
    assert list(table["model"]) == [*groups[:2], "overall"]
    metrics = logged(tmp / "metrics_two_eval.jsonl")
    assert {k.rsplit(".", 1)[0] for k in metrics if k.endswith(".mape")} == {*groups[:2], "overall"}


def test_train_leaves_out_a_listed_group_not_in_the_data_and_refuses_when_none_is(run: dict[str, Path]) -> None:
    known = groups_of(run)[0]

    def train(listed: str, out: str) -> subprocess.CompletedProcess:
        args = [
            sys.executable,
            "train.py",
            "--features",
            run["features"],
            "--groups",
            listed,
            "--out",
            run["tmp"] / out,
        ]
        return subprocess.run(args, cwd=SRC, capture_output=True, text=True)

    proc = train("atlantis.large.fast", "bad")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "train: group(s) not in the data, left out: atlantis.large.fast",
        "train: none of the listed groups is in the data",
    ]
    assert not (run["tmp"] / "bad").exists()
    proc = train(f"{known},atlantis.large.fast", "one")
    assert proc.returncode == 0, proc.stderr
    assert "left out: atlantis.large.fast" in proc.stderr
    assert sorted(p.name for p in (run["tmp"] / "one").glob("*.pkl")) == [f"{known}.pkl"]


# the score pipeline: scoring with production models ----------------------------------------------
COLUMNS = ["store_id", "sku", "week_start", "forecast", "model", "model_version", "source", "new_sku"]
WEEK = "2026-03-02"
GHOST = "atlantis.large.fast"  # in production, not in the lake


@pytest.fixture(scope="module")
def production(run: dict[str, Path], subsets: dict[str, Path]) -> dict:
    """A production folder of two groups' models from two trainings (other seeds, so other
    boosters), and a group the lake has no rows of."""
    groups = groups_of(run)
    chosen = {groups[0]: (subsets["two"], 3), groups[2]: (subsets["one"], 1)}
    folder = run["tmp"] / "production"
    for group, (models, _) in chosen.items():
        (folder / group).mkdir(parents=True)
        shutil.copy(models / f"{group}.pkl", folder / group / "model.pkl")
        for name in ("lgbm.txt", "lgbm.json"):
            shutil.copy(models / name, folder / group / name)
    forecast_step_module("models")  # the pickles name the step's module
    ghost = pickle.loads((subsets["two"] / f"{groups[1]}.pkl").read_bytes())
    ghost.group = GHOST
    (folder / GHOST).mkdir()
    (folder / GHOST / "model.pkl").write_bytes(pickle.dumps(ghost))  # no booster: optional
    listed = {g: {"name": g, "version": v} for g, (_, v) in chosen.items()} | {GHOST: {"name": GHOST, "version": 2}}
    (folder / "production.json").write_text(json.dumps({"week": WEEK, "models": listed}))
    out = run["tmp"] / "production_scores"
    proc = step("score_production.py", "--features", run["features"], "--production", folder, "--out", out)
    return {"folder": folder, "chosen": chosen, "out": out / "forecasts", "proc": proc}


def expected_forecasts(run: dict[str, Path], group: str, models: Path) -> pd.DataFrame:
    """What the group's own model and booster forecast, computed here from the step's functions."""
    backtest, mod = forecast_step_module("backtest"), forecast_step_module("models")
    data = backtest.Data(run["features"])
    origin = data.meta["future_from"]
    model = pickle.loads((models / f"{group}.pkl").read_bytes())
    rows = data.horizon_rows(origin, int(data.meta["future_weeks"]))
    pred = mod.forecast({group: model}, backtest.Booster.load(models), data, rows, origin)
    pred = pred.sort_values(["store_id", "sku", "week_start"]).reset_index(drop=True)
    return pred.assign(forecast=np.round(pred["forecast"], 3))


def test_each_group_is_scored_with_its_own_model_and_booster(run: dict[str, Path], production: dict) -> None:
    out = production["out"]
    features = pd.read_csv(run["features"] / "features.csv", dtype={"store_id": str, "sku": str})
    future = features[features["split"] == "future"]
    boosters_matter = 0
    for group, (models, version) in production["chosen"].items():
        got = pd.read_csv(out / f"{group}.csv", dtype={"store_id": str, "sku": str})
        assert list(got.columns) == COLUMNS
        assert (got["model"] == group).all() and (got["model_version"] == version).all()
        assert (got["source"] == "production").all() and not got["new_sku"].any()
        assert got.equals(got.sort_values(["store_id", "sku", "week_start"]).reset_index(drop=True))
        assert np.isfinite(got["forecast"]).all() and (got["forecast"] >= 0).all()
        mine = future[future["group"] == group]
        assert sorted(zip(got["store_id"], got["sku"], got["week_start"], strict=True)) == sorted(
            zip(mine["store_id"], mine["sku"], mine["week_start"], strict=True)
        )
        want = expected_forecasts(run, group, models)
        assert got[["store_id", "sku", "week_start"]].equals(want[["store_id", "sku", "week_start"]])
        assert np.allclose(got["forecast"], want["forecast"], rtol=0, atol=1e-9)
        # the other training's booster would have forecast something else
        other = production["chosen"][next(g for g in production["chosen"] if g != group)][0]
        model = pickle.loads((models / f"{group}.pkl").read_bytes())
        if model.weights["lgbm"] > 0:
            swapped = run["tmp"] / f"swapped_{group}"
            swapped.mkdir(exist_ok=True)
            shutil.copy(models / f"{group}.pkl", swapped / f"{group}.pkl")
            for name in ("lgbm.txt", "lgbm.json"):
                shutil.copy(other / name, swapped / name)
            boosters_matter += not np.allclose(expected_forecasts(run, group, swapped)["forecast"], got["forecast"])
    assert boosters_matter >= 1


def test_every_group_of_the_lake_is_served_those_without_a_model_by_their_baseline(
    run: dict[str, Path], production: dict
) -> None:
    out = production["out"]
    groups = groups_of(run)
    summary = json.loads((out / "summary.json").read_text())
    counts = {g: len(pd.read_csv(out / f"{g}.csv")) for g in groups}
    missing = sorted(set(groups) - set(production["chosen"]))
    assert summary["groups"] == {**counts, GHOST: 0}
    assert summary["missing"] == missing
    assert summary["counts"] == {"production": 3, "previous": 0, "baseline": len(missing)}
    assert all(counts.values())
    for group in missing:
        got = pd.read_csv(out / f"{group}.csv")
        assert (got["source"] == "baseline").all() and got["model_version"].isna().all()
        assert set(got["model"]) <= {"baseline", "snaive"}
        assert summary["sources"][group] | {"model": "-"} == {
            "source": "baseline",
            "model": "-",
            "version": None,
            "reasons": ["no production model"],
            "new_skus": 0,
        }
        assert np.isfinite(got["forecast"]).all() and (got["forecast"] >= 0).all()
    assert (out / f"{GHOST}.csv").read_text().strip() == ",".join(COLUMNS)  # listed, empty, not an error
    assert sorted(p.name for p in out.iterdir()) == sorted([*(f"{g}.csv" for g in [*groups, GHOST]), "summary.json"])
    assert f"no production model for {len(missing)} group(s)" in production["proc"].stderr


def _break(folder: Path, case: str) -> None:
    doc = json.loads((folder / "production.json").read_text())
    group = next(iter(doc["models"]))
    if case == "no production.json":
        (folder / "production.json").unlink()
    elif case == "not json":
        (folder / "production.json").write_text("{week: 1")
    elif case == "no models":
        (folder / "production.json").write_text(json.dumps({"week": WEEK, "models": {}}))
    elif case == "bad week":
        (folder / "production.json").write_text(json.dumps({**doc, "week": "next week"}))
    elif case == "version not an integer":
        doc["models"][group]["version"] = "3"
        (folder / "production.json").write_text(json.dumps(doc))
    elif case == "name not the group":
        doc["models"][group]["name"] = "other.large.fast"
        (folder / "production.json").write_text(json.dumps(doc))
    elif case == "a path as a group":
        doc["models"]["../x.large.fast"] = {"name": "../x.large.fast", "version": 1}
        (folder / "production.json").write_text(json.dumps(doc))
    elif case == "model.pkl missing":
        (folder / group / "model.pkl").unlink()
    elif case == "lgbm.json missing":
        (folder / group / "lgbm.json").unlink()
    elif case == "model.pkl not a model":
        (folder / group / "model.pkl").write_bytes(b"not a pickle")


@pytest.mark.parametrize(
    "case, says",
    [
        ("no production.json", "no production.json"),
        ("not json", "not valid JSON"),
        ("no models", "models must be"),
        ("bad week", "week must be a date"),
        ("version not an integer", "version must be an integer"),
        ("name not the group", "must be an object with name"),
        ("a path as a group", "is not a group name"),
    ],
)
def test_a_bad_production_folder_fails_in_one_line(
    run: dict[str, Path], production: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, says: str
) -> None:
    folder = tmp_path / "production"
    shutil.copytree(production["folder"], folder)
    _break(folder, case)
    score_production = forecast_step_module("score_production")
    code = score_production.main(
        ["--features", str(run["features"]), "--production", str(folder), "--out", str(tmp_path / "out")]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("score_production: ") and says in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "case, says",
    [
        ("model.pkl missing", "/model.pkl is missing"),
        ("lgbm.json missing", "/lgbm.json is missing"),
        ("model.pkl not a model", "/model.pkl cannot be read"),
        ("predict raises", "predict failed"),
    ],
)
def test_a_broken_production_model_costs_its_group_only(
    run: dict[str, Path], production: dict, tmp_path: Path, case: str, says: str
) -> None:
    """A corrupt pickle, a missing booster file, a model that raises on predict: that group is
    served by its fallback, with the reason; every other group by its own production model."""
    folder = tmp_path / "production"
    shutil.copytree(production["folder"], folder)
    doc = json.loads((folder / "production.json").read_text())
    broken = next(iter(doc["models"]))
    if case == "predict raises":
        model = pickle.loads((folder / broken / "model.pkl").read_bytes())
        model.encoder = "predict failed"  # its members' transform raises on predict
        (folder / broken / "model.pkl").write_bytes(pickle.dumps(model))
        says = "transform"
    else:
        _break(folder, case)
    out = tmp_path / "out"
    proc = step("score_production.py", "--features", run["features"], "--production", folder, "--out", out)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "forecasts" / "summary.json").read_text())
    served = summary["sources"][broken]
    assert served["source"] == "baseline" and served["version"] is None
    assert says in served["reasons"][0] and served["reasons"][0].startswith("production v3: ")
    assert f"{broken} served by baseline" in proc.stderr
    got = pd.read_csv(out / "forecasts" / f"{broken}.csv")
    assert (got["source"] == "baseline").all() and len(got) == summary["groups"][broken] > 0
    for group in doc["models"]:  # every other group: its own model, the same forecast as before
        if group != broken:
            assert summary["sources"][group]["source"] == "production"
            before = (production["out"] / f"{group}.csv").read_bytes()
            assert (out / "forecasts" / f"{group}.csv").read_bytes() == before


def test_a_stale_production_model_is_never_served(run: dict[str, Path], production: dict, tmp_path: Path) -> None:
    """A production model past the age gate fails the gates: its group is served by its fallback,
    with the reason; the other groups by their production models."""
    folder = tmp_path / "production"
    shutil.copytree(production["folder"], folder)
    doc = json.loads((folder / "production.json").read_text())
    stale = next(iter(doc["models"]))
    doc["models"][stale]["stale"] = True
    (folder / "production.json").write_text(json.dumps(doc))
    out = tmp_path / "out"
    proc = step("score_production.py", "--features", run["features"], "--production", folder, "--out", out)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "forecasts" / "summary.json").read_text())
    served = summary["sources"][stale]
    assert served["source"] == "baseline" and served["version"] is None
    assert served["reasons"][0] == "production v3 is past the age gate: a stale model is never served"
    assert (pd.read_csv(out / "forecasts" / f"{stale}.csv")["source"] == "baseline").all()
    assert {g: s["source"] for g, s in summary["sources"].items() if g in doc["models"] and g != stale} == {
        g: "production" for g in doc["models"] if g != stale
    }


def test_the_previous_production_version_serves_before_the_baseline(
    run: dict[str, Path], production: dict, tmp_path: Path
) -> None:
    folder = tmp_path / "production"
    shutil.copytree(production["folder"], folder)
    doc = json.loads((folder / "production.json").read_text())
    group = next(iter(doc["models"]))
    shutil.copytree(folder / group, folder / group / "previous")
    (folder / group / "model.pkl").write_bytes(b"overwritten")
    doc["models"][group]["previous"] = {"version": 2}
    (folder / "production.json").write_text(json.dumps(doc))
    out = tmp_path / "out"
    proc = step("score_production.py", "--features", run["features"], "--production", folder, "--out", out)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "forecasts" / "summary.json").read_text())
    assert summary["sources"][group]["source"] == "previous" and summary["sources"][group]["version"] == 2
    assert summary["counts"]["previous"] == 1
    got = pd.read_csv(out / "forecasts" / f"{group}.csv")
    assert (got["source"] == "previous").all() and (got["model_version"] == 2).all()
    assert (got["model"] == group).all()


def test_the_score_pipeline_runs_end_to_end_on_the_local_backend(run: dict[str, Path], production: dict) -> None:
    root = run["tmp"] / "lake"
    shutil.copytree(production["folder"], root / "batches" / "production" / WEEK)
    backend = LocalBackend(LocalLake(root), Settings(lake_backend="local", lake_root=root))
    pipeline = load_catalog()["score"]
    body = {
        "inputs": {"production": f"azureml://datastores/lake_batches/paths/production/{WEEK}"},
        "idempotency_key": "w1",
    }
    request, problems = validate_request(pipeline, body)
    assert problems == [] and request.parameters == {"holdout_weeks": 8, "origins": 4, "regions": "all"}
    status, created = backend.submit(pipeline, request, request.job_name())
    assert created
    deadline = time.monotonic() + 180
    while not (final := backend.get(status.run_id)).terminal and time.monotonic() < deadline:
        time.sleep(0.1)
    assert final.aml_status == "Completed", final.error
    assert [s.name for s in final.steps] == ["prepare", "score_plan", "score_groups", "score"]  # fanned out
    out = root / "runs" / status.run_id / "outputs" / "score" / "scores" / "forecasts"
    for file in production["out"].iterdir():  # the same files as the step run by hand
        assert (out / file.name).read_bytes() == file.read_bytes(), file.name
    assert gate_failures(final.metrics, pipeline.gates, clock.now()) == []
    assert final.metrics["score"]["groups_scored"] == len(groups_of(run))


def test_the_velocity_classes_go_with_the_model_and_a_new_sku_is_served_by_the_baseline(
    run: dict[str, Path], production: dict, tmp_path: Path
) -> None:
    folder = tmp_path / "production"
    shutil.copytree(production["folder"], folder)
    group = next(iter(production["chosen"]))
    model = pickle.loads((folder / group / "model.pkl").read_bytes())
    got = pd.read_csv(production["out"] / f"{group}.csv", dtype={"store_id": str, "sku": str})
    assert model.skus == sorted(set(got["sku"]))  # stored at training: the group's SKUs
    new = model.skus[0]
    model.skus = model.skus[1:]  # as if the SKU had been in another class at training
    (folder / group / "model.pkl").write_bytes(pickle.dumps(model))
    out = tmp_path / "out"
    proc = step("score_production.py", "--features", run["features"], "--production", folder, "--out", out)
    assert proc.returncode == 0, proc.stderr
    scored = pd.read_csv(out / "forecasts" / f"{group}.csv", dtype={"store_id": str, "sku": str})
    flagged = scored[scored["new_sku"]]
    assert set(flagged["sku"]) == {new} and (flagged["source"] == "baseline").all()
    assert (scored.loc[~scored["new_sku"], "model"] == group).all()
    summary = json.loads((out / "forecasts" / "summary.json").read_text())
    assert summary["sources"][group]["source"] == "production" and summary["sources"][group]["new_skus"] == 1
