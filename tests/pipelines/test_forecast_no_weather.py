"""A lake without any weather file (issue 21): prepare trains on what the lake has, every
weather feature neutral (the same each week, as for a zip without weather), and meta.json says
how many series took that path; the steps after it run as on any lake."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from tests.drivers import forecast_step_module
from tests.pipelines.test_forecast_real_lakes import run_steps, write_lake

prepare = forecast_step_module("prepare")
WEATHER = ["tmax_c", "tmin_c", "precip_mm", "snow_mm", "tmax_anom"]


def _without_weather(curated: Path, *, keep_folder: bool) -> None:
    """``curated`` as a lake that never had a weather file (its folder absent, or empty)."""
    for f in (curated / "weather_daily").rglob("*.csv"):
        f.unlink()
    if not keep_folder:
        for d in sorted((curated / "weather_daily").rglob("*"), reverse=True):
            d.rmdir()
        (curated / "weather_daily").rmdir()


def test_a_lake_without_a_weather_file_trains_and_scores_with_neutral_weather(tmp_path: Path) -> None:
    curated = tmp_path / "curated"
    write_lake(curated)
    _without_weather(curated, keep_folder=False)
    paths = run_steps(curated, tmp_path)  # prepare, train and score each exit 0
    meta = json.loads((paths["features"] / "meta.json").read_text())
    assert meta["paths"]["without_weather"] == meta["paths"]["modelled"] == 16
    assert meta["weather"] == {"files": 0, "zips": 2, "zips_without_observed": 2, "zips_with_forecasts": 0}
    features = pd.read_csv(paths["features"] / "features.csv")
    assert features[WEATHER].notna().all().all()
    assert (features[WEATHER].nunique() == 1).all()  # neutral: no week differs from another
    known = pd.read_csv(paths["features"] / "weather_known.csv")
    assert set(known["source"]) == {"climatology"}
    fc = pd.read_csv(paths["scores"] / "forecasts.csv")
    assert len(fc) and np.isfinite(fc["forecast"]).all() and (fc["forecast"] >= 0).all()


def test_an_empty_weather_folder_is_a_lake_without_weather(tmp_path: Path, capsys) -> None:
    curated = tmp_path / "curated"
    write_lake(curated)
    _without_weather(curated, keep_folder=True)
    out = tmp_path / "features"
    assert prepare.main(["--curated", str(curated), "--holdout-weeks", "4", "--origins", "2", "--out", str(out)]) == 0
    assert "no weather_daily file in the lake: 16 series train without weather" in capsys.readouterr().err
    meta = json.loads((out / "meta.json").read_text())
    assert meta["paths"]["without_weather"] == 16 and meta["weather"]["files"] == 0


def test_a_lake_with_weather_counts_no_series_without_it(tmp_path: Path) -> None:
    curated = tmp_path / "curated"
    write_lake(curated, forecast_zips=("00101",))
    out = tmp_path / "features"
    assert prepare.main(["--curated", str(curated), "--holdout-weeks", "4", "--origins", "2", "--out", str(out)]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["paths"]["without_weather"] == 0
    assert meta["weather"] == {"files": 1, "zips": 2, "zips_without_observed": 0, "zips_with_forecasts": 1}
