"""The forecast pipeline's backtest (pipelines/forecast/): its origins and windows, no future
knowledge in any origin's features, weights or forecasts, and the oracle the generator writes.

The pipeline's steps run in this process on a tiny curated lake written here (4 stores x 4
SKUs x 72 weeks, observed weather and a forecast issued every Saturday), with 4-week horizons
and 2 backtest origins: a few seconds each."""

from __future__ import annotations

import json
import shutil
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shared.tooling import synth
from tests.drivers import forecast_step_module

WEEKS = 72
HORIZON = 4
ORIGINS = 2
START = date(2025, 1, 6)  # a Monday
STORES = [("S1", "r0", "large", "00101"), ("S2", "r0", "small", "00101"), ("S3", "r1", "large", "00202"),
          ("S4", "r1", "small", "00202")]  # fmt: skip
SKUS = {"A": 60.0, "B": 45.0, "C": 6.0, "D": 4.0}  # two fast and two slow movers


prepare = forecast_step_module("prepare")
train = forecast_step_module("train")
score = forecast_step_module("score")
backtest = forecast_step_module("backtest")
models = forecast_step_module("models")


def write_lake(curated: Path, *, seed: int = 3) -> None:
    """A tiny curated lake: weekly shipments driven by season and temperature, daily observed
    weather per zip, and a 16-day forecast issued every Saturday."""
    rng = np.random.default_rng(seed)
    first_sunday = START - timedelta(days=1)
    days = [first_sunday + timedelta(days=k) for k in range(7 * WEEKS + 16)]
    doy = np.array([d.timetuple().tm_yday for d in days], float)
    wx, ship = [], []
    tmax = {}
    for z, base in (("00101", 14.0), ("00202", 20.0)):
        t = base - 10 * np.cos(2 * np.pi * (doy - 20) / 365.25) + rng.normal(0, 3, len(days))
        tmax[z] = t
        for k, d in enumerate(days[: 7 * WEEKS]):
            wx.append((z, d.isoformat(), "observed", d.isoformat(), round(t[k], 2), round(t[k] - 8, 2), 1.0, ""))
        for k, d in enumerate(days):
            if d.weekday() == 5 and k + 16 < len(days):  # a Saturday issue, the next 16 days
                for j in range(1, 17):
                    f = t[k + j] + rng.normal(0, 1.5)
                    day = days[k + j].isoformat()
                    wx.append((z, day, "forecast", d.isoformat(), round(f, 2), round(f - 8, 2), 1.0, ""))
    for sid, _, fmt, z in STORES:
        size = 1.0 if fmt == "large" else 0.5
        for i, (sku, rate) in enumerate(SKUS.items()):
            for w in range(WEEKS):
                week = START + timedelta(days=7 * w)
                temp = tmax[z][7 * w : 7 * w + 7].mean()
                season = 0.2 * np.sin(2 * np.pi * (w / 52.0 + i / 4))
                mu = rate * size * np.exp(season + 0.03 * (temp - 15.0))
                ship.append((sid, sku, week.isoformat(), int(rng.poisson(mu)), 0))
    _csv(curated / "weather_daily/v1/w.csv", "zip_code,date,kind,issued_on,tmax_c,tmin_c,precip_mm,snow_mm", wx)
    _csv(curated / "shipments_weekly/v1/s.csv", "store_id,sku,week_start,units_shipped,units_returned", ship)
    stores = [(sid, z, region, fmt, 30000, 12000, 70000, 38.0) for sid, region, fmt, z in STORES]
    _csv(
        curated / "store_demographics/v1/d.csv",
        "store_id,zip_code,region,store_format,population,households,median_household_income,median_age",
        stores,
    )


def _csv(path: Path, header: str, rows: list[tuple]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows), encoding="utf-8")


def perturb_after(curated: Path, week: str) -> None:
    """Every actual from ``week`` on x 5 (and + 3), and every weather value observed or
    forecast-issued from the Sunday before it on + 15 C / x 10: what a forecast made at that
    origin cannot know."""
    cut = pd.Timestamp(week) - pd.Timedelta(days=1)
    s = pd.read_csv(curated / "shipments_weekly/v1/s.csv", dtype={"store_id": str, "sku": str})
    late = pd.to_datetime(s["week_start"]) >= pd.Timestamp(week)
    s.loc[late, "units_shipped"] = s.loc[late, "units_shipped"] * 5 + 3
    s.to_csv(curated / "shipments_weekly/v1/s.csv", index=False)
    w = pd.read_csv(curated / "weather_daily/v1/w.csv", dtype={"zip_code": str})
    late = pd.to_datetime(w["issued_on"]) >= cut
    w.loc[late, ["tmax_c", "tmin_c"]] += 15.0
    w.loc[late, "precip_mm"] *= 10
    w.to_csv(curated / "weather_daily/v1/w.csv", index=False)


def run_steps(curated: Path, out: Path) -> dict[str, Path]:
    paths = {k: out / k for k in ("features", "models", "scores")}
    assert prepare.main(["--curated", str(curated), "--holdout-weeks", str(HORIZON), "--origins", str(ORIGINS),
                         "--out", str(paths["features"])]) == 0  # fmt: skip
    assert train.main(["--features", str(paths["features"]), "--out", str(paths["models"])]) == 0
    assert score.main(["--features", str(paths["features"]), "--models", str(paths["models"]),
                       "--out", str(paths["scores"])]) == 0  # fmt: skip
    return paths


@pytest.fixture(scope="module")
def lakes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    """The tiny lake, and the same lake changed from the holdout's origin (its last
    ``HORIZON`` weeks) and from the backtest's first origin, each run through the steps."""
    tmp = tmp_path_factory.mktemp("backtest")
    base = tmp / "base" / "curated"
    write_lake(base)
    out = {"base": run_steps(base, tmp / "base")}
    origins = json.loads((out["base"]["features"] / "meta.json").read_text())["origins"]
    for name, week in (("after_holdout", origins[-1]), ("after_first", origins[1])):
        curated = tmp / name / "curated"
        shutil.copytree(base, curated)
        perturb_after(curated, week)
        out[name] = run_steps(curated, tmp / name)
    return out


def _meta(paths: dict[str, Path]) -> dict:
    return json.loads((paths["features"] / "meta.json").read_text())


# origins and windows ------------------------------------------------------------------------------
def test_origins_are_back_to_back_windows_before_the_holdout(lakes: dict) -> None:
    meta = _meta(lakes["base"])
    weeks = [(START + timedelta(days=7 * w)).isoformat() for w in range(WEEKS)]
    # the holdout (last HORIZON weeks), one backtest origin before it, one that only validates
    assert meta["origins"] == [weeks[WEEKS - k * HORIZON] for k in (3, 2, 1)]
    assert meta["holdout_from"] == meta["origins"][-1]
    bt = pd.read_csv(lakes["base"]["models"] / "backtest.csv")
    assert sorted(bt["origin"].unique()) == meta["origins"]
    assert set(bt.loc[bt["origin"] == meta["origins"][0], "role"]) == {"validation"}
    assert set(bt.loc[bt["origin"] != meta["origins"][0], "role"]) == {"backtest"}
    for origin, rows in bt.groupby("origin"):
        i = weeks.index(origin)
        assert sorted(rows["week_start"].unique()) == weeks[i : i + HORIZON]  # each origin: its horizon only
        assert rows.groupby("series").size().eq(HORIZON).all()
    # the holdout's backtest rows are score's holdout forecasts
    fc = pd.read_csv(lakes["base"]["scores"] / "forecasts.csv")
    hold = fc[fc["split"] == "holdout"].set_index(["series", "week_start"]).sort_index()
    last = bt[bt["origin"] == meta["origins"][-1]].set_index(["series", "week_start"]).sort_index()
    for col in ("forecast", "lasso", "mlp", "lgbm", "seasonal", "baseline", "snaive"):
        np.testing.assert_allclose(hold[col], last[col], rtol=1e-4, atol=2e-3)
    assert fc.loc[fc["split"] == "future", "week_start"].nunique() == 2


def test_each_origin_trains_on_the_weeks_before_it_and_weighs_on_the_window_before_it(lakes: dict) -> None:
    data = backtest.Data(lakes["base"]["features"])
    for origin in data.origins:
        assert data.train_rows(origin)["week_start"].max() < origin
        assert data.horizon_rows(origin)["week_start"].min() == origin
    # the holdout models' weights: chosen on the previous origin's horizon, the validation window
    bt = pd.read_csv(lakes["base"]["models"] / "backtest.csv")
    previous = bt[bt["origin"] == data.origins[-2]]
    manifest = json.loads((lakes["base"]["models"] / "manifest.json").read_text())
    for m in manifest["models"]:
        val = previous[previous["group"] == m["group"]]
        assert m["weights"] == models.group_weights(previous, m["group"])
        assert m["lasso_weight"] == models.choose_old_weight(val)
        assert m["origin"] == data.origins[-1]


# no future knowledge ----------------------------------------------------------------------------------
FORECAST_COLUMNS = ["forecast", "lasso", "mlp", "lgbm", "seasonal", "old_blend", "baseline", "snaive", "scale"]


def _rows(paths: dict[str, Path], origin: str) -> pd.DataFrame:
    bt = pd.read_csv(paths["models"] / "backtest.csv")
    return bt[bt["origin"] <= origin].sort_values(["origin", "series", "week_start"]).reset_index(drop=True)


@pytest.mark.parametrize("changed", ["after_holdout", "after_first"])
def test_nothing_after_an_origin_reaches_its_forecasts_or_weights(lakes: dict, changed: str) -> None:
    """Actuals of the horizon (x 5) and weather observed or forecast after the origin (+15 C)
    change nothing that origin, or an earlier one, forecasts: features, weights, every member,
    the blend, the baselines, the MASE scale."""
    origins = _meta(lakes["base"])["origins"]
    cut = origins[-1] if changed == "after_holdout" else origins[1]
    base, other = _rows(lakes["base"], cut), _rows(lakes[changed], cut)
    assert len(base) and len(base) == len(other)
    pd.testing.assert_frame_equal(base[FORECAST_COLUMNS], other[FORECAST_COLUMNS])
    late = base["origin"] == cut
    assert not np.allclose(base.loc[late, "actual"], other.loc[late, "actual"])  # the change is there
    # ... and it reaches the next origin, which knows it
    if changed == "after_first":
        nxt = origins[2]
        a, b = _rows(lakes["base"], nxt), _rows(lakes[changed], nxt)
        assert not np.allclose(a.loc[a["origin"] == nxt, "forecast"], b.loc[b["origin"] == nxt, "forecast"])
    # the features of the origin's horizon rows and of its train rows are the same
    for paths in (lakes["base"], lakes[changed]):
        paths["data"] = backtest.Data(paths["features"])
    d0, d1 = lakes["base"]["data"], lakes[changed]["data"]
    keys = ["series", "week_start"]
    h0, h1 = (d.horizon_rows(cut).sort_values(keys).reset_index(drop=True) for d in (d0, d1))
    features = [c for c in h0.columns if c not in ("units",)]
    pd.testing.assert_frame_equal(h0[features], h1[features])
    t0, t1 = (d.train_rows(cut).sort_values(keys).reset_index(drop=True) for d in (d0, d1))
    pd.testing.assert_frame_equal(t0, t1)
    x0, _ = d0.lgbm_features(h0, cut)
    x1, _ = d1.lgbm_features(h1, cut)
    pd.testing.assert_frame_equal(x0, x1)
    if changed == "after_holdout":  # the holdout's models: same weights, same holdout forecasts
        m0, m1 = (json.loads((lakes[k]["models"] / "manifest.json").read_text())["models"] for k in ("base", changed))
        assert [m["weights"] for m in m0] == [m["weights"] for m in m1]
        f0, f1 = (pd.read_csv(lakes[k]["scores"] / "forecasts.csv") for k in ("base", changed))
        hold = f0["split"] == "holdout"
        pd.testing.assert_frame_equal(f0.loc[hold, FORECAST_COLUMNS], f1.loc[hold, FORECAST_COLUMNS])


def test_the_horizon_has_the_forecast_issued_before_the_origin_else_climatology(lakes: dict) -> None:
    known = pd.read_csv(lakes["base"]["features"] / "weather_known.csv", dtype={"zip_code": str})
    origin = _meta(lakes["base"])["holdout_from"]
    mine = known[known["origin"] == origin].sort_values(["zip_code", "week_start"])
    # the Saturday issue before the origin covers 16 days: the first two weeks of the horizon
    assert mine.groupby("zip_code")["source"].apply(list).tolist() == [["forecast"] * 2 + ["climatology"] * 2] * 2
    curated = lakes["base"]["features"].parent / "curated" / "weather_daily" / "v1" / "w.csv"
    wx = pd.read_csv(curated, dtype={"zip_code": str})
    issue = (pd.Timestamp(origin) - pd.Timedelta(days=2)).strftime("%Y-%m-%d")
    days = pd.date_range(pd.Timestamp(origin) - pd.Timedelta(days=1), periods=7).strftime("%Y-%m-%d")
    fc = wx[(wx["kind"] == "forecast") & (wx["issued_on"] == issue) & wx["date"].isin(days)]
    want = fc.groupby("zip_code")["tmax_c"].mean()
    got = mine[mine["week_start"] == origin].set_index("zip_code")["tmax_c"]
    np.testing.assert_allclose(got.loc[want.index], want, rtol=1e-5)
    # climatology: the same zip's observed weeks of earlier years only, near the same week of the year
    late = mine[mine["source"] == "climatology"]
    assert late["tmax_c"].notna().all()


# the oracle -----------------------------------------------------------------------------------------------
def test_the_generator_writes_the_oracle_beside_the_raw_files(tmp_path: Path) -> None:
    kwargs = dict(regions=1, stores_per_region=4, skus=4, weeks=20, start=date(2026, 1, 5), seed=5)
    synth.generate(tmp_path / "plain", **kwargs)
    summary = synth.generate(tmp_path / "raw", oracle_dir=tmp_path / "oracle", **kwargs)
    path = tmp_path / "oracle" / "expected_demand.csv"
    assert summary["oracle"] == str(path) and path.is_file()
    # the raw files are the same with or without it, and it is not among them
    plain = {p.relative_to(tmp_path / "plain"): p.read_bytes() for p in (tmp_path / "plain").rglob("*") if p.is_file()}
    raw = {p.relative_to(tmp_path / "raw"): p.read_bytes() for p in (tmp_path / "raw").rglob("*") if p.is_file()}
    assert plain == raw
    oracle = pd.read_csv(path, dtype={"store_id": str, "sku": str})
    assert list(oracle.columns) == ["store_id", "sku", "week_start", "expected_units"]
    assert len(oracle) == 4 * 4 * 20 and not oracle.duplicated(["store_id", "sku", "week_start"]).any()
    assert (oracle["expected_units"] > 0).all()
    assert (pd.to_datetime(oracle["week_start"]).dt.day_of_week == 0).all()  # Mondays, as curated week_start
    # the units drawn: the daily deliveries (stores of the second half) sum to the expected demand
    files = (tmp_path / "raw").rglob("deliveries/*.csv")
    deliveries = pd.concat(pd.read_csv(f, dtype={"store": str, "sku": str}) for f in files)
    deliveries["week_start"] = (
        pd.to_datetime(deliveries["delivery_date"]).dt.normalize()
        - pd.to_timedelta(pd.to_datetime(deliveries["delivery_date"]).dt.day_of_week, unit="D")
    ).dt.strftime("%Y-%m-%d")
    units = deliveries.groupby(["store", "sku", "week_start"])["qty"].sum()
    mine = oracle[oracle["store_id"].isin(deliveries["store"].unique())]
    assert units.sum() == pytest.approx(mine["expected_units"].sum(), rel=0.08)
    assert set(units.index.get_level_values("week_start")) <= set(oracle["week_start"])
