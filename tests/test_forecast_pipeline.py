"""Basic model validation tests of the forecast pipeline (pipelines/forecast/), on a small
generated batch: data validation (prepare), training validation (train), scoring validation
(score) and the ensemble against the historical-average baseline (evaluate).

The steps run as subprocesses, the way the components' commands run them (``python
<step>.py ...`` from ``pipelines/forecast/src``), with ``-W error``; the pipeline runs once
per module on a lake of 3 regions x 4 stores x 6 SKUs x 60 weeks, generated and ingested by
the main job (without its own pipeline run: the whole weekly job is tested in test_cli)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from shared.tooling import cli

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "pipelines" / "forecast" / "src"
HOLDOUT = 8


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
    step("evaluate.py", "--scores", out["scores"], "--models", out["models"], "--out", out["metrics"], env=env)
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
    assert abs(manifest["trained_at"] - time.time()) < 3600
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
