"""The forecast pipeline on the shapes a real lake has (issue 21): observed weather only,
forecasts for some zips, stores without demographics, SKUs that start or stop mid-history,
missing weeks, negative or zero weeks (returns), short series, a region with one store, sales
in currency; and the bounds on what any member and the blend forecast."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.drivers import forecast_step_module

prepare = forecast_step_module("prepare")
train = forecast_step_module("train")
score = forecast_step_module("score")
backtest = forecast_step_module("backtest")
models = forecast_step_module("models")

START = date(2025, 1, 6)  # a Monday
STORE_COLUMNS = "store_id,zip_code,region,store_format,population,households,median_household_income,median_age"


def _csv(path: Path, header: str, rows: list[tuple]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows), encoding="utf-8")


def observed_weather(zips: list[str], weeks: int, seed: int = 1) -> list[tuple]:
    rng = np.random.default_rng(seed)
    rows = []
    for z in zips:
        for k in range(7 * weeks):
            d = START - timedelta(days=1) + timedelta(days=k)
            t = 15 - 10 * np.cos(2 * np.pi * (d.timetuple().tm_yday - 20) / 365.25) + rng.normal(0, 3)
            rows.append((z, d.isoformat(), "observed", d.isoformat(), round(t, 2), round(t - 8, 2), 1.0, ""))
    return rows


def forecast_weather(zips: list[str], weeks: int) -> list[tuple]:
    """A 16-day forecast issued every Saturday for ``zips``."""
    rows = []
    for z in zips:
        for k in range(7 * weeks):
            issued = START - timedelta(days=1) + timedelta(days=k)
            if issued.weekday() != 5:
                continue
            for j in range(1, 17):
                d = issued + timedelta(days=j)
                rows.append((z, d.isoformat(), "forecast", issued.isoformat(), 12.0, 4.0, 1.0, ""))
    return rows


def write_lake(
    curated: Path,
    *,
    weeks: int = 72,
    forecast_zips: tuple[str, ...] = (),
    shipments: list[tuple] | None = None,
    stores: list[tuple] | None = None,
    seed: int = 3,
) -> None:
    """A small curated lake: 4 stores in 2 zips, 4 SKUs of Poisson units (unless
    ``shipments`` is given), observed weather, and Saturday forecasts for ``forecast_zips``."""
    rng = np.random.default_rng(seed)
    stores = stores or [
        ("S1", "00101", "r0", "large", 30000, 12000, 70000, 38.0),
        ("S2", "00101", "r0", "small", 30000, 12000, 70000, 38.0),
        ("S3", "00202", "r1", "large", 30000, 12000, 70000, 38.0),
        ("S4", "00202", "r1", "small", 30000, 12000, 70000, 38.0),
    ]
    if shipments is None:
        shipments = []
        for sid, *_ in stores:
            for i, rate in enumerate((60.0, 45.0, 6.0, 4.0)):
                for w in range(weeks):
                    mu = rate * np.exp(0.2 * np.sin(2 * np.pi * (w / 52.0 + i / 4)))
                    shipments.append((sid, "ABCD"[i], (START + timedelta(days=7 * w)).isoformat(), rng.poisson(mu), 0))
    zips = sorted({s[1] for s in stores})
    wx = observed_weather(zips, weeks) + forecast_weather(list(forecast_zips), weeks)
    _csv(curated / "weather_daily/v1/w.csv", "zip_code,date,kind,issued_on,tmax_c,tmin_c,precip_mm,snow_mm", wx)
    _csv(curated / "shipments_weekly/v1/s.csv", "store_id,sku,week_start,units_shipped,units_returned", shipments)
    _csv(curated / "store_demographics/v1/d.csv", STORE_COLUMNS, stores)


def run_steps(curated: Path, out: Path, *, horizon: int = 4, origins: int = 2) -> dict[str, Path]:
    paths = {k: out / k for k in ("features", "models", "scores")}
    assert prepare.main(["--curated", str(curated), "--holdout-weeks", str(horizon), "--origins", str(origins),
                         "--out", str(paths["features"])]) == 0  # fmt: skip
    assert train.main(["--features", str(paths["features"]), "--out", str(paths["models"])]) == 0
    assert score.main(["--features", str(paths["features"]), "--models", str(paths["models"]),
                       "--out", str(paths["scores"])]) == 0  # fmt: skip
    return paths


# weather -------------------------------------------------------------------------------------
@pytest.mark.parametrize("forecast_zips", [(), ("00101",)], ids=["observed_only", "forecasts_for_some_zips"])
def test_prepare_takes_a_lake_without_weather_forecasts_for_every_zip(tmp_path: Path, forecast_zips) -> None:
    curated = tmp_path / "curated"
    write_lake(curated, forecast_zips=forecast_zips)
    out = tmp_path / "features"
    assert prepare.main(["--curated", str(curated), "--holdout-weeks", "4", "--origins", "2", "--out", str(out)]) == 0
    known = pd.read_csv(out / "weather_known.csv", dtype={"zip_code": str})
    assert known[["tmax_c", "tmin_c", "precip_mm", "snow_mm", "zip_tmax_mean"]].notna().all().all()
    sources = known.groupby("zip_code")["source"].agg(set).to_dict()
    assert sources["00202"] == {"climatology"}
    assert sources["00101"] == ({"climatology"} if not forecast_zips else {"forecast", "climatology"})


def test_known_weather_without_forecasts_is_climatology() -> None:
    weeks = [pd.Timestamp(START) + pd.Timedelta(days=7 * k) for k in range(60)]
    observed = pd.DataFrame(
        {"zip_code": "00101", "week_start": weeks, "tmax_c": 10.0, "tmin_c": 2.0, "precip_mm": 1.0, "snow_mm": 0.0}
    )
    no_forecasts = pd.DataFrame(columns=["zip_code", "date", "issued_on", *observed.columns[2:]])
    origin = weeks[56]
    out = prepare.known_weather(observed, no_forecasts, origin, weeks[56:60], ["00101", "00999"])
    assert list(out["source"]) == ["climatology"] * 8
    assert out["tmax_c"].tolist() == [10.0] * 8  # a zip without any weather: every zip's mean


# the shapes of a real lake, and bounded forecasts ----------------------------------------------
def real_shapes(weeks: int = 80, seed: int = 5) -> tuple[list[tuple], list[tuple]]:
    """Shipments and stores with what real lakes have: sales in currency (SKU A), net sales
    near zero with negative weeks (B), a SKU that starts mid-history (C), one that stops and
    comes back (D), one that sold nothing for a year (E), missing weeks, a series of under a
    year (S5, the only store of region r2), and a store without demographics (S9)."""
    rng = np.random.default_rng(seed)
    rows = []
    for sid in ("S1", "S2", "S3", "S4", "S5", "S9"):
        for i, sku in enumerate("ABCDEF"):
            for w in range(weeks):
                if sid == "S5" and w < weeks - 40:
                    continue
                season = np.exp(0.3 * np.sin(2 * np.pi * (w / 52.0 + i / 6)))
                v: float
                if sku == "A":
                    v = round(float(rng.normal(20000 * season, 2000)), 2)
                elif sku == "B":
                    v = round(float(rng.normal(3, 30)), 2)
                elif sku == "C":
                    if w < 50:
                        continue
                    v = int(rng.poisson(40 * season))
                elif sku == "D":
                    v = int(rng.poisson(30 if w < 30 or w >= 70 else 0.2))
                elif sku == "E":
                    v = 0 if w < 56 else int(rng.poisson(50 * season))
                else:
                    v = int(rng.poisson(8 * season))
                if rng.random() < 0.05:
                    continue  # a week missing for the store
                rows.append((sid, sku, (START + timedelta(days=7 * w)).isoformat(), v, 0))
    stores = [
        ("S1", "00101", "r0", "large", 30000, 12000, 70000, 38.0),
        ("S2", "00101", "r0", "small", "", "", "", ""),
        ("S3", "00202", "r1", "large", 30000, 12000, 70000, 38.0),
        ("S4", "00202", "r1", "small", 30000, 12000, 70000, 38.0),
        ("S5", "00303", "r2", "large", 30000, 12000, 70000, 38.0),
    ]
    return rows, stores


@pytest.fixture(scope="module")
def shaped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("shapes")
    rows, stores = real_shapes()
    write_lake(tmp / "curated", weeks=80, shipments=rows, stores=stores, forecast_zips=("00202",))
    return run_steps(tmp / "curated", tmp, horizon=8, origins=4)


def _largest_weeks(paths: dict[str, Path]) -> pd.Series:
    hist = pd.read_csv(paths["features"] / "history.csv")
    return hist.groupby("series")["units"].max().clip(lower=0)


def test_every_shape_of_a_real_lake_trains_or_is_named(shaped: dict[str, Path]) -> None:
    import json

    meta = json.loads((shaped["features"] / "meta.json").read_text())
    assert meta["stores_without_demographics"] == ["S9"]
    assert meta["paths"]["store_without_demographics"] == 6
    assert meta["paths"]["modelled"] == 5 * 6
    assert meta["negative_weeks"] > 0
    assert "r2.large.fast" in meta["groups"] or "r2.large.slow" in meta["groups"]  # one store, under a year
    fc = pd.read_csv(shaped["scores"] / "forecasts.csv", dtype={"store_id": str, "sku": str})
    assert set(fc["store_id"]) == {"S1", "S2", "S3", "S4", "S5"}


@pytest.mark.parametrize("source", ["backtest", "scores"])
def test_no_member_and_no_blend_forecasts_out_of_range(shaped: dict[str, Path], source: str) -> None:
    path = shaped["models"] / "backtest.csv" if source == "backtest" else shaped["scores"] / "forecasts.csv"
    out = pd.read_csv(path)
    top = out["series"].map(_largest_weeks(shaped))
    for col in ("forecast", "lasso", "mlp", "lgbm", "seasonal", "old_blend"):
        v = out[col].to_numpy(float)
        assert np.isfinite(v).all(), col
        assert (v >= 0).all(), col
        assert (v <= backtest.FORECAST_CAP * top.to_numpy(float) + 1e-6).all(), col


def test_the_lightgbm_levels_stay_finite_and_within_the_series_own_scale(shaped: dict[str, Path]) -> None:
    """The cause of the explosion: a level near zero or below (net returns) under a ratio."""
    data = backtest.Data(shaped["features"])
    origin = data.meta["holdout_from"]
    rows = data.horizon_rows(origin)
    levels = data.levels(rows, origin)
    top = rows["series"].map(_largest_weeks(shaped)).to_numpy(float)
    for key in ("level", "pooled", "seasonal"):
        v = levels[key]
        assert np.isfinite(v).all() and (v >= 0).all(), key
        assert (v <= backtest.SEASONAL_FACTOR_MAX * backtest.FORECAST_CAP * top + 1).all(), key
    x, offset = data.lgbm_features(rows, origin)
    assert np.isfinite(offset).all()
    assert np.isfinite(x[["level", "pooled", "recent", "seasonal"]].to_numpy(float)).all()


def test_the_clipped_forecasts_are_counted_per_group(shaped: dict[str, Path], tmp_path: Path) -> None:
    evaluate = forecast_step_module("evaluate")
    out = tmp_path / "metrics"
    args = ["--scores", str(shaped["scores"]), "--models", str(shaped["models"]), "--max-mape", "0.45"]
    assert evaluate.main([*args, "--baseline-margin", "0", "--out", str(out)]) == 0
    table = pd.read_csv(out / "metrics.csv")
    bt = pd.read_csv(shaped["models"] / "backtest.csv")
    bt = bt[bt["role"] == "backtest"]
    groups = table[table["model"] != "overall"].set_index("model")["clipped"]
    assert groups.to_dict() == {g: int(bt.loc[bt["group"] == g, "clipped"].sum()) for g in groups.index}
    assert int(table.loc[table["model"] == "overall", "clipped"].iloc[0]) == int(bt["clipped"].sum())


def test_bound_clips_to_the_range_and_counts_what_was_out_of_it() -> None:
    pred = pd.DataFrame({"a": [5.0, -3.0, np.nan, 50.0, 10.2], "b": [1.0, 2.0, 3.0, 4.0, 1e9]})
    upper = pd.Series([10.0, 10.0, 10.0, 10.0, 10.0])
    out, clipped = models.bound(pred, ("a", "b"), upper)
    assert out["a"].tolist() == [5.0, 0.0, 0.0, 10.0, 10.0]
    assert out["b"].tolist() == [1.0, 2.0, 3.0, 4.0, 10.0]
    assert clipped.tolist() == [0, 1, 1, 1, 1]  # 10.2 is within half a unit: bounded, not counted


def test_a_member_far_worse_than_the_baseline_on_validation_gets_no_weight() -> None:
    rng = np.random.default_rng(0)
    actual = rng.poisson(20, 200).astype(float)
    val = pd.DataFrame(
        {
            "actual": actual,
            "baseline": np.full(200, 20.0),
            "lasso": actual + rng.normal(0, 2, 200),
            "mlp": actual + rng.normal(0, 3, 200),
            "lgbm": actual * 40,  # exploded
            "seasonal": actual + rng.normal(0, 2, 200),
            "group": "g",
        }
    )
    assert models.sane_members(val) == ("lasso", "mlp", "seasonal")
    assert models.choose_weights(val)["lgbm"] == 0.0
    assert models.group_weights(val, "g")["lgbm"] == 0.0
    everything_broken = val.assign(**{m: actual * 40 + k for k, m in enumerate(models.MEMBERS)})
    assert models.sane_members(everything_broken) == ("lasso",)  # the least bad one
