"""Step 1, prepare: the three curated datasets -> one weekly feature table per (store, SKU).

Reads ``<curated>/{shipments_weekly,weather_daily,store_demographics}/v1/**/*.csv`` and writes
``<out>/features.csv`` (one row per series and week, ``split`` = train | holdout | future) and
``<out>/meta.json`` (weeks, the velocity rule and classes, row counts).

* shipments: units summed over files per (store_id, sku, week_start) (daily-delivery files
  hold partial weeks); a series runs from its first shipped week to the last week of the
  lake, weeks without a row are 0 units. The target is ``units_shipped``.
* split: the last ``holdout_weeks`` weeks of the lake are ``holdout``, earlier weeks ``train``;
  the ``FUTURE_WEEKS`` weeks after the lake are ``future`` (no actual; weather from the latest
  forecast).
* velocity (per SKU): ``fast`` when the SKU's mean units per store-week over the train weeks,
  all stores of the lake, is >= FAST_UNITS_PER_STORE_WEEK, else ``slow``; computed before the
  region filter so that a SKU has the same class in every run.
* level features are lagged by ``max(holdout_weeks, FUTURE_WEEKS)`` weeks so that every
  holdout and future week is forecast from data known at its forecast origin: ``lag`` (units
  that many weeks before), ``roll4``/``roll13`` (rolling means ending there), ``expmean``
  (mean of every week up to there); all log1p. Train rows without a lag are dropped.
* weather: observed days of the store's zip aggregated to the sales week (Sunday..Saturday):
  mean tmax/tmin, summed precip/snow, tmax anomaly against the zip's mean; future weeks use
  the latest forecast issue; gaps are filled from the zip's neighbouring weeks.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from forecast_lib import (
    FAST_UNITS_PER_STORE_WEEK,
    FUTURE_WEEKS,
    KEYS,
    NUMERIC,
    TARGET,
    calendar_features,
    read_dataset,
    week_start_of,
    write_json,
)


def load_shipments(curated: Path) -> pd.DataFrame:
    raw = read_dataset(curated, "shipments_weekly", dtype={"store_id": str, "sku": str})
    raw["week_start"] = pd.to_datetime(raw["week_start"])
    return raw.groupby(["store_id", "sku", "week_start"], as_index=False)[["units_shipped", "units_returned"]].sum()


def load_stores(curated: Path) -> pd.DataFrame:
    st = read_dataset(curated, "store_demographics", dtype={"store_id": str, "zip_code": str})
    st = st.drop_duplicates("store_id", keep="last").set_index("store_id")
    for col in ("population", "median_household_income", "median_age"):
        st[col] = pd.to_numeric(st[col], errors="coerce")
        st[col] = st[col].fillna(st.groupby("region")[col].transform("median")).fillna(st[col].median())
    st["store_format"] = st["store_format"].str.lower()
    return st


def weekly_weather(curated: Path, zips: set[str], last_week: pd.Timestamp) -> pd.DataFrame:
    """(zip_code, week_start) -> weekly weather; observed, then the latest forecast after it."""
    wx = read_dataset(curated, "weather_daily", dtype={"zip_code": str, "kind": str})
    wx = wx[wx["zip_code"].isin(zips)].copy()
    wx["date"] = pd.to_datetime(wx["date"])
    wx["issued_on"] = pd.to_datetime(wx["issued_on"])
    wx["snow_mm"] = pd.to_numeric(wx["snow_mm"], errors="coerce").fillna(0.0)
    obs = wx[wx["kind"] == "observed"].drop_duplicates(["zip_code", "date"], keep="last")
    fc = wx[(wx["kind"] == "forecast") & (wx["date"] > last_week + pd.Timedelta(days=5))]
    if len(fc):  # per zip, the latest issue only
        fc = fc[fc["issued_on"] == fc.groupby("zip_code")["issued_on"].transform("max")]
    days = pd.concat([obs, fc], ignore_index=True)
    days["week_start"] = week_start_of(days["date"])
    agg = days.groupby(["zip_code", "week_start"]).agg(
        tmax_c=("tmax_c", "mean"),
        tmin_c=("tmin_c", "mean"),
        precip_mm=("precip_mm", "sum"),
        snow_mm=("snow_mm", "sum"),
        n_days=("date", "count"),
    )
    agg = agg[agg["n_days"] >= 4].drop(columns="n_days").reset_index()  # a week needs most of its days
    return agg


def build(curated: Path, holdout_weeks: int, regions: str) -> tuple[pd.DataFrame, dict]:
    ship = load_shipments(curated)
    stores = load_stores(curated)
    ship = ship[ship["store_id"].isin(stores.index)]
    first, last = ship["week_start"].min(), ship["week_start"].max()
    weeks = pd.date_range(first, last, freq="7D")
    if len(weeks) <= holdout_weeks + 4:
        raise ValueError(f"{len(weeks)} weeks of shipments: too few for a {holdout_weeks}-week holdout")
    holdout_from = weeks[-holdout_weeks]
    lag = max(holdout_weeks, FUTURE_WEEKS)

    # velocity per SKU, from the train weeks of every store (before the region filter)
    starts = ship.groupby(["store_id", "sku"])["week_start"].min().rename("first_week").reset_index()
    all_weeks = pd.DataFrame({"week_start": weeks.append(pd.date_range(last, periods=FUTURE_WEEKS + 1, freq="7D")[1:])})
    panel = starts.merge(all_weeks, how="cross")
    panel = panel[panel["week_start"] >= panel["first_week"]].drop(columns="first_week")
    panel = panel.merge(ship[["store_id", "sku", "week_start", "units_shipped"]], how="left")
    panel[TARGET] = panel["units_shipped"].fillna(0.0)
    panel = panel.drop(columns="units_shipped")
    panel["split"] = np.where(
        panel["week_start"] > last, "future", np.where(panel["week_start"] >= holdout_from, "holdout", "train")
    )
    panel.loc[panel["split"] == "future", TARGET] = np.nan
    rate = panel[panel["split"] == "train"].groupby("sku")[TARGET].mean()
    velocity = pd.Series(np.where(rate >= FAST_UNITS_PER_STORE_WEEK, "fast", "slow"), index=rate.index)
    panel["velocity"] = panel["sku"].map(velocity).fillna("slow")

    panel = panel.join(stores[["zip_code", "region", "store_format"]], on="store_id")
    if regions.strip().lower() != "all":
        wanted = {r.strip() for r in regions.split(",") if r.strip()}
        unknown = wanted - set(panel["region"])
        if unknown:
            raise ValueError(f"unknown region(s): {', '.join(sorted(unknown))}")
        panel = panel[panel["region"].isin(wanted)]
    panel = panel.sort_values(["store_id", "sku", "week_start"]).reset_index(drop=True)
    panel["series"] = panel["store_id"] + "|" + panel["sku"]
    panel["group"] = panel["region"] + "." + panel["store_format"] + "." + panel["velocity"]

    # level features, known at the forecast origin (lagged by `lag` weeks)
    g = panel.groupby("series", sort=False)[TARGET]
    shifted = g.shift(lag)
    sg = shifted.groupby(panel["series"], sort=False)
    panel["lag"] = np.log1p(shifted)
    panel["roll4"] = np.log1p(sg.transform(lambda s: s.rolling(4, min_periods=1).mean()))
    panel["roll13"] = np.log1p(sg.transform(lambda s: s.rolling(13, min_periods=1).mean()))
    panel["expmean"] = np.log1p(sg.transform(lambda s: s.expanding().mean()))
    panel["trend"] = (panel["week_start"] - first).dt.days / 364.0

    cal = calendar_features(pd.Series(panel["week_start"].unique()))
    cal["week_start"] = panel["week_start"].unique()
    panel = panel.merge(cal, on="week_start", how="left")

    wx = weekly_weather(curated, set(panel["zip_code"].dropna()), last)
    panel = panel.merge(wx, on=["zip_code", "week_start"], how="left")
    for col in ("tmax_c", "tmin_c", "precip_mm", "snow_mm"):
        filled = panel.groupby("series", sort=False)[col].transform(lambda s: s.ffill().bfill())
        panel[col] = filled.fillna(panel[col].mean()).fillna(0.0)
    zip_mean = panel[panel["split"] != "future"].groupby("zip_code")["tmax_c"].mean()
    panel["tmax_anom"] = panel["tmax_c"] - panel["zip_code"].map(zip_mean).fillna(panel["tmax_c"].mean())

    panel["log_population"] = np.log(panel["store_id"].map(stores["population"]).astype(float))
    panel["income_k"] = panel["store_id"].map(stores["median_household_income"]).astype(float) / 1000.0
    panel["median_age"] = panel["store_id"].map(stores["median_age"]).astype(float)

    before = len(panel)
    panel = panel[panel["lag"].notna()].reset_index(drop=True)
    panel["week_start"] = panel["week_start"].dt.strftime("%Y-%m-%d")
    panel = panel[[*KEYS, TARGET, *NUMERIC]]
    counts = panel.groupby("split").size().to_dict()
    meta = {
        "weeks": [weeks[0].strftime("%Y-%m-%d"), weeks[-1].strftime("%Y-%m-%d")],
        "n_weeks": len(weeks),
        "holdout_weeks": holdout_weeks,
        "holdout_from": holdout_from.strftime("%Y-%m-%d"),
        "future_weeks": FUTURE_WEEKS,
        "feature_lag_weeks": lag,
        "velocity_rule": f"fast if the SKU's mean units per store-week over the train weeks >= "
        f"{FAST_UNITS_PER_STORE_WEEK:g}, else slow",
        "velocity": {k: {"class": velocity[k], "units_per_store_week": round(float(rate[k]), 3)} for k in rate.index},
        "regions": regions,
        "rows": {k: int(v) for k, v in counts.items()},
        "rows_dropped_without_lag": before - len(panel),
        "groups": sorted(panel["group"].unique()),
        "series": int(panel["series"].nunique()),
    }
    return panel, meta


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--curated", type=Path, required=True, help="the curated lake folder")
    p.add_argument("--holdout-weeks", type=int, default=8)
    p.add_argument("--regions", default="all", help='"all" or comma-separated region names')
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    if a.holdout_weeks < 1:
        p.error("--holdout-weeks must be >= 1")
    t0 = time.monotonic()
    panel, meta = build(a.curated, a.holdout_weeks, a.regions)
    a.out.mkdir(parents=True, exist_ok=True)
    panel.to_csv(a.out / "features.csv", index=False, float_format="%.6g")
    write_json(a.out / "meta.json", meta)
    print(
        f"prepare: {meta['series']} series, {len(meta['groups'])} groups, rows {meta['rows']}, "
        f"{time.monotonic() - t0:.1f}s",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
