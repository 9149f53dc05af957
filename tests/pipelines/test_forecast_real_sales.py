"""The forecast pipeline on real sales (issue 21): the UCI "Hierarchical Sales Data" set, weekly
units of 118 pasta SKUs in one Italian grocery store, 2014-2018 (``tests/data/real_sales/``:
source, licence and how it was trimmed in its README). The fixture becomes a lake of the
standard datasets, the pipeline's steps run on it as the component commands do, and the
backtest (4 origins of 8 weeks, 2018) must hold what the issue asks of a real set: every group
beats the historical average on WAPE, the blend's WAPE is within 5% of its best member's, and
no served forecast is out of range."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.drivers import forecast_step_module

prepare = forecast_step_module("prepare")
train = forecast_step_module("train")
score = forecast_step_module("score")
evaluate = forecast_step_module("evaluate")
backtest = forecast_step_module("backtest")

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "real_sales"
MEMBERS = ("lasso", "mlp", "lgbm", "seasonal")
FAMILIES = ("blend", "old_blend", *MEMBERS, "baseline", "snaive")
#: the blend's WAPE may be at most this much above its best member's (the issue's 5%)
BLEND_VS_BEST_MEMBER = 1.05
STORE = "IT1"
#: the source publishes neither the store's place nor its size: one region, a zip the
#: standard dataset accepts, and a format label (large | small) that only names its group
STORE_ROW = f"{STORE},00000,italy,large,,,,,uci-611"


def write_real_lake(curated: Path) -> None:
    """The fixture as the three standard datasets: one row per SKU and week in
    ``shipments_weekly`` (no returns recorded), the one store in ``store_demographics`` (no
    census figures), and a ``weather_daily`` file without rows (the store's place is unknown,
    so there is no weather to give it: every weather feature is the same for every week)."""
    wide = pd.read_csv(FIXTURE / "weekly_units.csv")
    ship = wide.melt(id_vars="week_start", var_name="sku", value_name="units_shipped")
    ship = ship.assign(store_id=STORE, units_returned=0)
    cols = ["store_id", "sku", "week_start", "units_shipped", "units_returned"]
    for name, text in {
        "shipments_weekly/v1/uci611.csv": ship[cols].to_csv(index=False, lineterminator="\n"),
        "store_demographics/v1/stores.csv": "store_id,zip_code,region,store_format,population,households,"
        f"median_household_income,median_age,source\n{STORE_ROW}\n",
        "weather_daily/v1/none.csv": "zip_code,date,kind,issued_on,tmax_c,tmin_c,precip_mm,snow_mm\n",
    }.items():
        (curated / name).parent.mkdir(parents=True, exist_ok=True)
        (curated / name).write_text(text, encoding="utf-8")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """prepare, train, score and evaluate with the pipeline's defaults (8-week horizon, 4
    backtest origins), once for the module (about 40 s)."""
    tmp = tmp_path_factory.mktemp("real_sales")
    write_real_lake(tmp / "curated")
    paths = {k: tmp / k for k in ("features", "models", "scores", "metrics")}
    assert prepare.main(["--curated", str(tmp / "curated"), "--out", str(paths["features"])]) == 0
    assert train.main(["--features", str(paths["features"]), "--out", str(paths["models"])]) == 0
    assert score.main(["--features", str(paths["features"]), "--models", str(paths["models"]),
                       "--out", str(paths["scores"])]) == 0  # fmt: skip
    assert evaluate.main(["--scores", str(paths["scores"]), "--models", str(paths["models"]), "--max-mape", "0.45",
                          "--baseline-margin", "0", "--out", str(paths["metrics"])]) == 0  # fmt: skip
    return paths


def metrics(run: dict[str, Path]) -> pd.DataFrame:
    """metrics.csv by model (each group and ``overall``): the means over the backtest origins."""
    return pd.read_csv(run["metrics"] / "metrics.csv").set_index("model")


def figures(table: pd.DataFrame) -> str:
    """WAPE / MAPE / bias / MASE per family, each group and overall, as the README shows them."""
    lines = ["model family WAPE MAPE bias MASE"]
    for model, row in table.iterrows():
        for fam in FAMILIES:
            p = "" if fam == "blend" else f"{fam}_"
            vals = " ".join(f"{row[p + m]:.3f}" for m in ("wape", "mape", "bias", "mase"))
            lines.append(f"{model} {fam} {vals}")
    return "\n".join(lines)


# the fixture -----------------------------------------------------------------------------------
def test_the_fixture_is_small_states_its_source_and_licence_and_is_weekly_units() -> None:
    assert (FIXTURE / "weekly_units.csv").stat().st_size <= 1_000_000
    readme = (FIXTURE / "README.md").read_text(encoding="utf-8")
    for needed in ("archive.ics.uci.edu/dataset/611", "10.17632/njdkntcpc9.1", "CC BY 4.0", "trim.py"):
        assert needed in readme, needed
    wide = pd.read_csv(FIXTURE / "weekly_units.csv")
    weeks = pd.to_datetime(wide["week_start"])
    assert (weeks.dt.day_of_week == 0).all() and weeks.diff().dropna().eq(pd.Timedelta(days=7)).all()
    assert len(wide) == 260 and wide.shape[1] - 1 == 118
    units = wide.drop(columns="week_start")
    assert (units >= 0).all().all() and int(units.to_numpy().sum()) == 797_650


def test_the_real_lake_is_modelled_whole_in_two_groups(run: dict[str, Path]) -> None:
    meta = json.loads((run["features"] / "meta.json").read_text())
    assert meta["groups"] == ["italy.large.fast", "italy.large.slow"]
    assert meta["paths"]["modelled"] == 118 and meta["n_weeks"] == 260
    assert meta["origins"][-1] == meta["holdout_from"] == "2018-11-05"
    assert set(metrics(run).index) == {"italy.large.fast", "italy.large.slow", "overall"}


# the three conditions ------------------------------------------------------------------
def test_every_group_beats_the_historical_average_on_wape(run: dict[str, Path]) -> None:
    table = metrics(run)
    print("\n" + figures(table))
    for model, row in table.iterrows():
        assert row["wape"] < row["baseline_wape"], (model, row["wape"], row["baseline_wape"])


def test_the_blend_wape_is_within_5_percent_of_its_best_members(run: dict[str, Path]) -> None:
    for model, row in metrics(run).iterrows():
        best = min(MEMBERS, key=lambda m: row[f"{m}_wape"])
        best_wape = row[f"{best}_wape"]
        assert row["wape"] <= BLEND_VS_BEST_MEMBER * best_wape, (model, row["wape"], best, best_wape)


def _upper_bounds(run: dict[str, Path], out: pd.DataFrame) -> np.ndarray:
    """Per forecast row: FORECAST_CAP x its series' largest week in the FORECAST_CAP_WEEKS
    weeks before the row's origin (the range the pipeline promises)."""
    hist = pd.read_csv(run["features"] / "history.csv", parse_dates=["week_start"])
    upper = np.empty(len(out))
    for origin, idx in out.groupby("origin").groups.items():
        o = pd.Timestamp(origin)
        since = o - pd.Timedelta(weeks=backtest.FORECAST_CAP_WEEKS)
        recent = hist[(hist["week_start"] < o) & (hist["week_start"] >= since)]
        top = recent.groupby("series")["units"].max().clip(lower=0)
        upper[out.index.get_indexer(idx)] = backtest.FORECAST_CAP * out.loc[idx, "series"].map(top).to_numpy(float)
    return upper


@pytest.mark.parametrize("source", ["backtest", "scores"])
def test_no_served_forecast_is_out_of_range(run: dict[str, Path], source: str) -> None:
    path = run["models"] / "backtest.csv" if source == "backtest" else run["scores"] / "forecasts.csv"
    out = pd.read_csv(path)
    upper = _upper_bounds(run, out)
    assert np.isfinite(upper).all() and (upper > 0).all()
    for col in ("forecast", *MEMBERS, "old_blend"):
        v = out[col].to_numpy(float)
        assert np.isfinite(v).all(), col
        assert (v >= 0).all(), col
        assert (v <= upper + 1e-6).all(), (col, float(np.max(v / upper)))
    if source == "scores":
        assert set(out["split"]) == {"holdout", "future"} and out["forecast"].notna().all()
