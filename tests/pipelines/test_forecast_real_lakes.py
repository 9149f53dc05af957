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
