"""Step 1, prepare: the three curated datasets -> one weekly feature table per (store, SKU),
and what the backtest needs to rebuild it as known at each forecast origin.

Reads ``<curated>/{shipments_weekly,weather_daily,store_demographics}/v1/**/*.csv`` and writes
to ``<out>``. ``<curated>`` may be a pinned data version's folder (its listing, ``files.json``):
then the files are exactly the version's, read from the store ``--pinned`` names with each
sha256 checked (pinned.py); a missing or altered object stops the step with one line.

* ``features.csv``: one row per series and week, ``split`` = train | holdout | future, every
  feature as known at the holdout's forecast origin (its first week) for train and holdout
  rows, and at the week after the lake for future rows;
* ``history.csv``: units per series and week (every known week, from the series' first);
* ``weather_known.csv``: per forecast origin (``origin``), zip and horizon week, the weather
  known at that origin (``source`` forecast or climatology) and the zip's mean observed tmax
  before it (``zip_tmax_mean``, behind the anomaly feature);
* ``meta.json``: weeks, the forecast origins, the velocity rule and classes, row counts.

* shipments: units summed over files per (store_id, sku, week_start) (daily-delivery files
  hold partial weeks); a series runs from its first shipped week to the last week of the
  lake, weeks without a row are 0 units. The target is ``units_shipped``.
* split: the last ``holdout_weeks`` weeks of the lake are ``holdout``, earlier weeks ``train``;
  the ``FUTURE_WEEKS`` weeks after the lake are ``future`` (no actual).
* forecast origins (``origin_indices``): the holdout and, before it, back-to-back windows of
  ``holdout_weeks`` weeks (``--origins`` backtest origins, plus one that only validates the
  first); every statistic of an origin comes from the weeks before it.
* velocity (per SKU): ``fast`` when the SKU's mean units per store-week over the weeks
  before the earliest origin, all stores of the lake, is >= FAST_UNITS_PER_STORE_WEEK, else
  ``slow``; computed before the region filter so that a SKU has the same class in every run,
  and before every origin so that no origin's group depends on its horizon.
* level features are lagged by ``max(holdout_weeks, FUTURE_WEEKS)`` weeks so that every
  horizon week is forecast from data known at its forecast origin: ``lag`` (units that many
  weeks before), ``roll4``/``roll13`` (rolling means ending there), ``expmean`` (mean of
  every week up to there); all log1p. Rows without a lag are dropped.
* weather: weeks before the origin have the observed days of the store's zip aggregated to
  the sales week (Sunday..Saturday): mean tmax/tmin, summed precip/snow (gaps filled from
  earlier weeks). A horizon week has what is known at its origin: the forecast issued by the
  Saturday before the origin (the ``forecast`` kind of the lake) where it covers at least 4
  days of the week, else climatology (the zip's observed weeks before the origin within
  CLIMATE_WINDOW weeks of the same week of the year, so of earlier years). ``tmax_anom`` is
  tmax against the zip's mean observed tmax before the origin.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from forecast_lib import (
    BACKTEST_ORIGINS,
    CLIMATE_WINDOW,
    FAST_UNITS_PER_STORE_WEEK,
    FUTURE_WEEKS,
    KEYS,
    NUMERIC,
    TARGET,
    WEATHER_OBSERVED,
    calendar_features,
    origin_indices,
    read_dataset,
    week_of_year,
    week_start_of,
    write_json,
)
from pinned import PinnedDataError, curated_view

DAY = pd.Timedelta(days=1)


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


def _weekly(days: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    days = days.assign(week_start=week_start_of(days["date"]))
    agg = days.groupby([*keys, "week_start"]).agg(
        tmax_c=("tmax_c", "mean"),
        tmin_c=("tmin_c", "mean"),
        precip_mm=("precip_mm", "sum"),
        snow_mm=("snow_mm", "sum"),
        n_days=("date", "count"),
    )
    return agg[agg["n_days"] >= 4].drop(columns="n_days").reset_index()  # a week needs most of its days


#: the columns of the curated ``weather_daily`` dataset
WEATHER_COLUMNS = ("zip_code", "date", "kind", "issued_on", "tmax_c", "tmin_c", "precip_mm", "snow_mm")


def load_weather(curated: Path, zips: set[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The observed weeks (zip_code, week_start) and the forecast days (with ``issued_on``).
    A lake without any weather file has neither: every weather feature is then the same
    neutral value for every week (as for a zip without weather), and meta.json says so."""
    wx = read_dataset(curated, "weather_daily", dtype={"zip_code": str, "kind": str}, empty=WEATHER_COLUMNS)
    wx = wx[wx["zip_code"].isin(zips)].copy()
    wx["date"] = pd.to_datetime(wx["date"])
    wx["issued_on"] = pd.to_datetime(wx["issued_on"])
    wx["snow_mm"] = pd.to_numeric(wx["snow_mm"], errors="coerce").fillna(0.0)
    obs = wx[wx["kind"] == "observed"].drop_duplicates(["zip_code", "date"], keep="last")
    fc = wx[wx["kind"] == "forecast"]
    return _weekly(obs, ["zip_code"]), fc


def known_weather(
    observed: pd.DataFrame, forecasts: pd.DataFrame, origin: pd.Timestamp, weeks: list[pd.Timestamp], zips: list[str]
) -> pd.DataFrame:
    """Per zip and horizon week, the weather known at ``origin`` (the Monday that names the
    first horizon week; known: everything up to the Saturday before it)."""
    known_by = origin - 2 * DAY
    before = observed[observed["week_start"] < origin]
    frame = pd.MultiIndex.from_product([zips, weeks], names=["zip_code", "week_start"]).to_frame(index=False)
    # forecasts: per zip the latest issue known at the origin, days of the horizon only
    fc = forecasts[(forecasts["issued_on"] <= known_by) & (forecasts["date"] > known_by)]
    if len(fc):
        fc = fc[fc["issued_on"] == fc.groupby("zip_code")["issued_on"].transform("max")]
        fc = _weekly(fc.drop_duplicates(["zip_code", "date"], keep="last"), ["zip_code"])
        fc = fc[fc["week_start"].isin(weeks)].assign(source="forecast")
    # climatology: the zip's observed weeks before the origin near the same week of the year
    woy_obs = week_of_year(before["week_start"])
    parts = []
    for w in weeks:
        target = week_of_year(pd.Series([w]))[0]
        dist = np.abs(woy_obs - target)
        near = before[np.minimum(dist, 53 - dist) <= CLIMATE_WINDOW]
        clim = near.groupby("zip_code")[list(WEATHER_OBSERVED)].mean().reset_index()
        parts.append(clim.assign(week_start=w))
    clim = pd.concat(parts, ignore_index=True).assign(source="climatology")
    if len(fc):
        out = frame.merge(fc, on=["zip_code", "week_start"], how="left")
    else:  # observed weather only (most lakes): no forecast at all, every week is climatology
        out = frame.assign(**{col: np.nan for col in WEATHER_OBSERVED})
    # one column at a time, each of its own dtype (a whole-row array would be object, and a
    # string written into a float column is an error in pandas 3)
    out["source"] = out.get("source", pd.Series(index=out.index, dtype=object)).astype(object)
    missing = out["source"].isna().to_numpy()
    if missing.any():
        filled = out.loc[missing, ["zip_code", "week_start"]].merge(clim, on=["zip_code", "week_start"], how="left")
        for col in WEATHER_OBSERVED:
            out.loc[missing, col] = filled[col].to_numpy(float)
        out.loc[missing, "source"] = filled["source"].astype(object).to_numpy()
    # a zip without history near that week of the year: its mean before the origin, else all zips'
    zip_mean = before.groupby("zip_code")[list(WEATHER_OBSERVED)].mean()
    for col in WEATHER_OBSERVED:
        out[col] = pd.to_numeric(out[col]).fillna(out["zip_code"].map(zip_mean[col]))
        out[col] = out[col].fillna(before[col].mean()).fillna(0.0)
    out["source"] = out["source"].fillna("climatology")
    out["zip_tmax_mean"] = out["zip_code"].map(zip_mean["tmax_c"]).fillna(before["tmax_c"].mean()).fillna(0.0)
    return out


def build(
    curated: Path, holdout_weeks: int, regions: str, n_origins: int = BACKTEST_ORIGINS
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    ship = load_shipments(curated)
    stores = load_stores(curated)
    # a store without demographics has no region or format, so no group: its series are left
    # out (named in meta.json's ``paths``)
    placed = ship["store_id"].isin(stores.index)
    unplaced = sorted(ship.loc[~placed, "store_id"].unique())
    unplaced_series = int(ship.loc[~placed, ["store_id", "sku"]].drop_duplicates().shape[0])
    ship = ship[placed]
    if ship.empty:
        raise ValueError("no shipments of a store with demographics")
    first, last = ship["week_start"].min(), ship["week_start"].max()
    weeks = pd.date_range(first, last, freq="7D")
    if len(weeks) <= holdout_weeks + 4:
        raise ValueError(f"{len(weeks)} weeks of shipments: too few for a {holdout_weeks}-week holdout")
    holdout_from = weeks[-holdout_weeks]
    future_from = last + pd.Timedelta(days=7)
    lag = max(holdout_weeks, FUTURE_WEEKS)
    origins = [weeks[i] for i in origin_indices(len(weeks), holdout_weeks, n_origins)]

    # velocity per SKU, from the weeks before the earliest origin, every store (before the region filter)
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
    early = panel[panel["week_start"] < origins[0]]
    rate = early.groupby("sku")[TARGET].mean()
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
    history = panel.loc[panel["split"] != "future", ["series", "week_start", TARGET]].copy()

    # level features, known at the forecast origin (lagged by `lag` weeks)
    # of demand: a week below zero (net returns) is no demand, and the log of it is not a number
    demand = panel[TARGET].clip(lower=0.0)
    shifted = demand.groupby(panel["series"], sort=False).shift(lag)
    sg = shifted.groupby(panel["series"], sort=False)
    panel["lag"] = np.log1p(shifted)
    panel["roll4"] = np.log1p(sg.transform(lambda s: s.rolling(4, min_periods=1).mean()))
    panel["roll13"] = np.log1p(sg.transform(lambda s: s.rolling(13, min_periods=1).mean()))
    panel["expmean"] = np.log1p(sg.transform(lambda s: s.expanding().mean()))
    panel["trend"] = (panel["week_start"] - first).dt.days / 364.0

    cal = calendar_features(pd.Series(panel["week_start"].unique()))
    cal["week_start"] = panel["week_start"].unique()
    panel = panel.merge(cal, on="week_start", how="left")

    # weather: observed before the holdout origin; known at the origin in the horizons
    zips = sorted(panel["zip_code"].dropna().unique())
    observed, forecasts = load_weather(curated, set(zips))
    weather_files = len(list((Path(curated) / "weather_daily" / "v1").rglob("*.csv")))
    zips_with_weather = set(observed["zip_code"])
    horizons = [(o, list(pd.date_range(o, periods=holdout_weeks, freq="7D"))) for o in origins]
    horizons.append((future_from, list(pd.date_range(future_from, periods=FUTURE_WEEKS, freq="7D"))))
    known = pd.concat(
        [known_weather(observed, forecasts, o, ws, zips).assign(origin=o) for o, ws in horizons], ignore_index=True
    )
    grid = pd.MultiIndex.from_product([zips, weeks], names=["zip_code", "week_start"]).to_frame(index=False)
    obs = grid.merge(observed, on=["zip_code", "week_start"], how="left")
    for col in WEATHER_OBSERVED:  # a gap takes the zip's last week before it (the first weeks: the next)
        obs[col] = obs.groupby("zip_code")[col].transform(lambda s: s.ffill().bfill())
    obs = obs[obs["week_start"] < holdout_from]
    at_origin = known[known["origin"].isin([holdout_from, future_from])].drop(columns=["origin", "source"])
    panel = panel.merge(pd.concat([obs, at_origin], ignore_index=True), on=["zip_code", "week_start"], how="left")
    early = panel["week_start"] < origins[0]  # a zip without any weather: the mean known at every origin
    for col in WEATHER_OBSERVED:
        panel[col] = panel[col].fillna(panel.loc[early, col].mean()).fillna(0.0)
    zip_mean = known.loc[known["origin"] == holdout_from].groupby("zip_code")["zip_tmax_mean"].first()
    future_mean = known.loc[known["origin"] == future_from].groupby("zip_code")["zip_tmax_mean"].first()
    mean = np.where(panel["split"] == "future", panel["zip_code"].map(future_mean), panel["zip_code"].map(zip_mean))
    panel["tmax_anom"] = panel["tmax_c"] - pd.Series(mean, index=panel.index).fillna(panel.loc[early, "tmax_c"].mean())
    panel = panel.drop(columns="zip_tmax_mean", errors="ignore")

    panel["log_population"] = np.log(panel["store_id"].map(stores["population"]).astype(float))
    panel["income_k"] = panel["store_id"].map(stores["median_household_income"]).astype(float) / 1000.0
    panel["median_age"] = panel["store_id"].map(stores["median_age"]).astype(float)

    before = len(panel)
    all_series = set(panel["series"])
    negative_weeks = int((panel[TARGET] < 0).sum())
    panel = panel[panel["lag"].notna()].reset_index(drop=True)
    kept = panel.groupby("series")["split"].agg(set)
    forecast_series = {s for s, splits in kept.items() if splits & {"holdout", "future"}}
    paths = {
        "modelled": len(forecast_series),
        "too_short": len(all_series - set(kept.index)),
        "ended_before_the_holdout": len(set(kept.index) - forecast_series),
        "store_without_demographics": unplaced_series,
        "without_weather": int(panel.loc[~panel["zip_code"].isin(zips_with_weather), "series"].nunique()),
    }
    panel["week_start"] = panel["week_start"].dt.strftime("%Y-%m-%d")
    panel = panel[[*KEYS, TARGET, *NUMERIC]]
    history["week_start"] = history["week_start"].dt.strftime("%Y-%m-%d")
    known["week_start"] = known["week_start"].dt.strftime("%Y-%m-%d")
    known["origin"] = known["origin"].dt.strftime("%Y-%m-%d")
    known = known[["origin", "zip_code", "week_start", *WEATHER_OBSERVED, "source", "zip_tmax_mean"]]
    counts = panel.groupby("split").size().to_dict()
    day = "%Y-%m-%d"
    meta = {
        "weeks": [weeks[0].strftime(day), weeks[-1].strftime(day)],
        "n_weeks": len(weeks),
        "holdout_weeks": holdout_weeks,
        "holdout_from": holdout_from.strftime(day),
        "future_weeks": FUTURE_WEEKS,
        "future_from": future_from.strftime(day),
        "feature_lag_weeks": lag,
        "origins": [o.strftime(day) for o in origins],
        "origins_note": "the first origin only validates the second (its horizon is the second's validation "
        "window); the others are the backtest, the last being the holdout",
        "velocity_rule": f"fast if the SKU's mean units per store-week over the weeks before {origins[0]:%Y-%m-%d} "
        f">= {FAST_UNITS_PER_STORE_WEEK:g}, else slow",
        "velocity": {k: {"class": velocity[k], "units_per_store_week": round(float(rate[k]), 3)} for k in rate.index},
        "regions": regions,
        "rows": {k: int(v) for k, v in counts.items()},
        "rows_dropped_without_lag": before - len(panel),
        "paths": paths,
        "paths_note": "series per path: modelled (every member, the blend); too_short (fewer weeks than the "
        "features' lag: no row); ended_before_the_holdout (no forecast row); store_without_demographics "
        "(no region or format: left out); without_weather (of those kept, the series whose zip has no observed "
        "weather week: every weather feature neutral, the same each week)",
        "stores_without_demographics": unplaced,
        "negative_weeks": negative_weeks,
        "weather": {
            "files": weather_files,
            "zips": len(zips),
            "zips_without_observed": len(set(zips) - zips_with_weather),
            "zips_with_forecasts": int(forecasts["zip_code"].nunique()),
        },
        "groups": sorted(panel["group"].unique()),
        "series": int(panel["series"].nunique()),
        "weather_known": known.groupby(["origin", "source"]).size().unstack(fill_value=0).to_dict("index"),
    }
    return panel, history, known, meta


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--curated", type=Path, required=True, help="the curated lake folder, or a pinned version's")
    p.add_argument("--pinned", type=Path, help="the pinned store a pinned version's objects are read from")
    p.add_argument("--holdout-weeks", type=int, default=8, help="the horizon of every forecast origin")
    p.add_argument("--origins", type=int, default=BACKTEST_ORIGINS, help="backtest origins (the holdout and before)")
    p.add_argument("--regions", default="all", help='"all" or comma-separated region names')
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    if a.holdout_weeks < 1:
        p.error("--holdout-weeks must be >= 1")
    if a.origins < 1:
        p.error("--origins must be >= 1")
    t0 = time.monotonic()
    try:
        with curated_view(a.curated, a.pinned) as (curated, listing):
            if listing is not None:
                print(f"prepare: data version {listing.get('name')}:{listing.get('version')}, "
                      f"{len(listing['files'])} files pinned and checked", flush=True)  # fmt: skip
            panel, history, known, meta = build(curated, a.holdout_weeks, a.regions, a.origins)
    except PinnedDataError as e:
        print(f"prepare: {e}", file=sys.stderr)
        return 2
    if listing is not None:
        meta["data_version"] = {k: listing.get(k) for k in ("name", "version", "content_hash")}
    a.out.mkdir(parents=True, exist_ok=True)
    panel.to_csv(a.out / "features.csv", index=False, float_format="%.6g")
    history.to_csv(a.out / "history.csv", index=False, float_format="%.6g")
    known.to_csv(a.out / "weather_known.csv", index=False, float_format="%.6g")
    write_json(a.out / "meta.json", meta)
    if not meta["weather"]["files"]:
        print(f"prepare: no weather_daily file in the lake: {meta['paths']['without_weather']} series train "
              "without weather (every weather feature neutral)", file=sys.stderr)  # fmt: skip
    print(
        f"prepare: {meta['series']} series, {len(meta['groups'])} groups, rows {meta['rows']}, paths {meta['paths']}, "
        f"origins {', '.join(meta['origins'])}, {time.monotonic() - t0:.1f}s",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
