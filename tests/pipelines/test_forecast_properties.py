"""Property tests of the forecast pipeline (issue 21): over randomly shaped small lakes (series
count and length, zero, negative and huge weeks, missing weeks, SKUs that start late, regions
of one store, stores without demographics, observed weather only or forecasts for some zips)
prepare -> train -> score either completes or fails with one clear line (a message the
pipeline raised itself, never a crash inside pandas, numpy or a model library), and never
serves a forecast outside [0, FORECAST_CAP x the series' largest week before its origin].

Deterministic (``derandomize=True``) and small (``MAX_EXAMPLES`` lakes): it cannot flake and
runs in well under a minute on two cores."""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import traceback
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from shared.aml.local.runner import step_failure
from tests.drivers import FORECAST_SRC, forecast_step_module
from tests.pipelines.test_forecast_real_lakes import START, write_lake

prepare = forecast_step_module("prepare")
train = forecast_step_module("train")
score = forecast_step_module("score")
backtest = forecast_step_module("backtest")

MAX_EXAMPLES = 25
HORIZON = 4
ORIGINS = 2

LEVELS = {"zero": 0.0, "tiny": 0.3, "small": 6.0, "medium": 60.0, "huge": 2.5e6}


@st.composite
def lakes(draw: st.DrawFn) -> dict:
    """The shape of a small lake; its values come from a numpy generator seeded by the draw."""
    n_stores = draw(st.integers(1, 4))
    return {
        "seed": draw(st.integers(0, 2**16)),
        "weeks": draw(st.integers(6, 70)),
        "regions": [draw(st.integers(0, 1)) for _ in range(n_stores)],  # often a region of one store
        "without_demographics": draw(st.lists(st.integers(0, n_stores - 1), max_size=1)),
        "skus": [
            {
                "level": draw(st.sampled_from(sorted(LEVELS))),
                "start": draw(st.sampled_from([0, 0, 10, 40])),  # weeks after the lake's first
                "stop": draw(st.sampled_from([None, None, 20])),  # ends before the holdout
                "negative": draw(st.sampled_from([0.0, 0.1, 0.5])),  # share of weeks of net returns
                "missing": draw(st.sampled_from([0.0, 0.1, 0.4])),  # share of weeks absent
            }
            for _ in range(draw(st.integers(1, 3)))
        ],
        "forecast_zips": draw(st.sampled_from([(), ("00100",)])),
    }


def build_lake(curated: Path, shape: dict) -> None:
    rng = np.random.default_rng(shape["seed"])
    weeks = shape["weeks"]
    stores, rows = [], []
    for k, region in enumerate(shape["regions"]):
        sid = f"S{k}"
        if k not in shape["without_demographics"]:
            stores.append(
                (sid, f"00{region + 1}00", f"r{region}", "large" if k % 2 else "small", 30000, 12000, 70000, 38.0)
            )
        for j, sku in enumerate(shape["skus"]):
            level = LEVELS[sku["level"]]
            end = weeks if sku["stop"] is None else min(sku["stop"], weeks)
            for w in range(sku["start"], end):
                if rng.random() < sku["missing"]:
                    continue
                v = float(rng.poisson(level * np.exp(0.3 * np.sin(2 * np.pi * w / 52)))) if level < 1e5 else level
                if level >= 1e5:
                    v = round(float(rng.normal(level, level / 10)), 2)  # currency
                if rng.random() < sku["negative"]:
                    v = -float(rng.integers(1, 30)) * max(1.0, level / 50)
                rows.append((sid, f"K{j}", (START + timedelta(days=7 * w)).isoformat(), v, 0))
    if not stores:  # every store without demographics is a lake prepare names: keep one placed
        stores.append(("S0", "00100", "r0", "small", 30000, 12000, 70000, 38.0))
    if not rows:
        rows.append(("S0", "K0", START.isoformat(), 1, 0))
    write_lake(curated, weeks=weeks, shipments=rows, stores=stores, forecast_zips=shape["forecast_zips"])


def run_step(module, argv: list[str], name: str) -> tuple[int, str]:
    """A step as its component runs it: its exit code and what a failed run's answer says
    (``step_failure``: the last line of its log that is not a stack trace). A failure must be
    the pipeline's own: an exception raised from a file of ``src/`` with a message, or a
    non-zero exit after one line on stderr; never an error inside pandas, numpy or a library."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = module.main(argv)
    except Exception as e:
        log = out.getvalue() + err.getvalue() + "".join(traceback.format_exception(e))
        origin = Path(traceback.extract_tb(e.__traceback__)[-1].filename).resolve()
        assert origin.parent == FORECAST_SRC.resolve(), f"{name}: a crash in {origin}: {e!r}\n{log}"
        assert isinstance(e, ValueError) and str(e).strip(), f"{name}: {e!r}"
        return 1, step_failure(1, log, name)
    if code != 0:
        lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
        assert len(lines) == 1 and "Traceback" not in lines[0], f"{name}: {err.getvalue()}"
        return code, step_failure(code, out.getvalue() + err.getvalue(), name)
    return 0, ""


def check_served_forecasts(features: Path, scores: Path) -> None:
    out = pd.read_csv(scores / "forecasts.csv", dtype={"store_id": str, "sku": str})
    hist = pd.read_csv(features / "history.csv")
    top = out["series"].map(hist.groupby("series")["units"].max().clip(lower=0)).to_numpy(float)
    for col in ("forecast", "lasso", "mlp", "lgbm", "seasonal"):
        v = out[col].to_numpy(float)
        assert np.isfinite(v).all(), col
        assert (v >= 0).all(), col
        assert (v <= backtest.FORECAST_CAP * top + 1e-6).all(), (col, out.loc[v > backtest.FORECAST_CAP * top])


@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as drawn, fast
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(shape=lakes())
def test_a_random_lake_completes_or_fails_in_one_line_and_serves_nothing_out_of_range(shape: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_lake(root / "curated", shape)
        features, models, scores = root / "features", root / "models", root / "scores"
        steps = [
            (
                prepare,
                [
                    "--curated",
                    str(root / "curated"),
                    "--holdout-weeks",
                    str(HORIZON),
                    "--origins",
                    str(ORIGINS),
                    "--out",
                    str(features),
                ],
                "prepare",
            ),  # fmt: skip
            (train, ["--features", str(features), "--out", str(models)], "train"),
            (score, ["--features", str(features), "--models", str(models), "--out", str(scores)], "score"),
        ]
        for module, argv, name in steps:
            code, answer = run_step(module, argv, name)
            if code != 0:
                assert answer.startswith("exit code ") and "\n" not in answer and "Traceback" not in answer
                assert name in ("prepare", "train", "score")
                return
            if name == "train":
                manifest = json.loads((models / "manifest.json").read_text())
                assert all(g["reason"].strip() and "\n" not in g["reason"] for g in manifest["not_fitted"])
                if not manifest["models"]:
                    # every group too small to fit: no model for score to evaluate; in production
                    # score_production serves each of them by its baseline
                    assert manifest["not_fitted"]
                    return
        check_served_forecasts(features, scores)


def test_the_lake_builder_makes_the_shapes_it_is_asked_for(tmp_path: Path) -> None:
    shape = {
        "seed": 1,
        "weeks": 30,
        "regions": [0, 1],
        "without_demographics": [1],
        "skus": [{"level": "huge", "start": 0, "stop": None, "negative": 0.5, "missing": 0.4}],
        "forecast_zips": (),
    }
    build_lake(tmp_path, shape)
    ship = pd.read_csv(tmp_path / "shipments_weekly/v1/s.csv")
    stores = pd.read_csv(tmp_path / "store_demographics/v1/d.csv", dtype={"zip_code": str})
    assert list(stores["store_id"]) == ["S0"]
    assert (ship["units_shipped"] < 0).any() and ship["units_shipped"].max() > 1e6
    assert ship.groupby("store_id").size().max() < 30  # weeks missing


def test_a_lake_too_short_for_the_lightgbm_member_trains_without_it(tmp_path: Path) -> None:
    """Found by the property test: 9 weeks of one series left the booster no training row,
    and indexing with the empty (float) series index crashed train with an IndexError (fixed in
    ``Data.indices``); the group's one train row then crashed the LASSO's cross-validation: now a
    group under MIN_TRAIN_ROWS is not fitted, named in the manifest with its reason, and train
    goes on (here with no group model at all: the baseline serves it)."""
    shape = {
        "seed": 0,
        "weeks": 9,
        "regions": [0],
        "without_demographics": [],
        "skus": [{"level": "huge", "start": 0, "stop": None, "negative": 0.0, "missing": 0.0}],
        "forecast_zips": (),
    }
    build_lake(tmp_path / "curated", shape)
    argv = ["--curated", str(tmp_path / "curated"), "--holdout-weeks", "4", "--origins", "2"]
    assert prepare.main([*argv, "--out", str(tmp_path / "features")]) == 0
    data = backtest.Data(tmp_path / "features")
    assert backtest.Booster.fit(data, data.meta["holdout_from"], seed=7) is None
    assert train.main(["--features", str(tmp_path / "features"), "--out", str(tmp_path / "models")]) == 0
    manifest = json.loads((tmp_path / "models" / "manifest.json").read_text())
    assert manifest["models"] == [] and not list((tmp_path / "models").glob("*.pkl"))
    [skipped] = manifest["not_fitted"]
    assert skipped["reason"].startswith("1 training row: too few to fit") and "baseline" in skipped["reason"]


def test_a_group_too_small_for_its_members_is_not_fitted_and_the_cv_folds_fit_the_rows() -> None:
    models = forecast_step_module("models")
    assert models.too_few_rows(models.MIN_TRAIN_ROWS) is None
    assert models.too_few_rows(3) == (
        f"3 training rows: too few to fit (under {models.MIN_TRAIN_ROWS}); served by its baseline"
    )
    assert [models.cv_splits(n) for n in (3, 4, 12, 59, 60, 500)] == [2, 2, 2, 2, 3, 3]
    for n in range(models.MIN_TRAIN_ROWS, 80):  # every fitted size leaves each fold 4+ rows
        assert n // (models.cv_splits(n) + 1) >= 4
