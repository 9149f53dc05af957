"""The prepared data as known at a forecast origin, and the global gradient-boosting member.

``Data`` reads prepare's output once and gives, for an origin (the Monday naming the first
week of a horizon), the rows before it (the members' training rows, their statistics taken
before the origin) and the horizon rows with what is known at the origin (the weather of
``weather_known.csv``; the level features are lagged by at least the horizon already).

The gradient-boosting member (LightGBM) is one model across every series of every group: a
row is a (series, target week, origin) triple, the features are the series' level at the
origin (mean of its last 13 weeks) and its recent and yearly shape, the same week last year
relative to last year's level at the origin (the series' and its SKU's, pooled over all
stores), the lead (weeks from the origin), the target week's calendar, events and weather,
and the group's attributes (SKU, region, store format, velocity). It learns units with a
Poisson objective and the log of the series' level as the offset: the target is relative to
each series' recent level, and slow movers are counts. Training rows take every origin
before the model's origin and every lead of the horizon.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from forecast_lib import HOLIDAYS, SEASON, TARGET, WEATHER_OBSERVED

#: weeks of history a training row's origin needs
LGBM_MIN_HISTORY = 13
LGBM_CATEGORICAL = ("sku", "region", "store_format", "velocity")
LGBM_NUMERIC = (
    "level", "pooled", "recent", "yearly", "last_year", "sku_last_year", "sku_growth", "lead", "woy", "seasonal",
    "tmax_last_year",
    *SEASON, *HOLIDAYS, "tmax_c", "precip_mm", "snow_mm", "tmax_anom",
)  # fmt: skip
LGBM_PARAMS = {
    "objective": "poisson",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.5,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "max_bin": 127,
    "verbose": -1,
    "force_row_wise": True,
    "deterministic": True,
}
LGBM_ROUNDS = 300
#: a training row's target week takes one lead in this many (1: every lead)
LGBM_LEAD_EVERY = 4
#: fewer training rows than this: no gradient-boosting member
LGBM_MIN_ROWS = 500
#: a seasonal factor (the SKU's same week last year against its level a year before the
#: origin) is at most this: a SKU that barely sold a year ago has no meaningful ratio
SEASONAL_FACTOR_MAX = 5.0
#: every forecast (each member's, the blend's) is within [0, FORECAST_CAP x the series'
#: largest week in the FORECAST_CAP_WEEKS weeks before its origin]
FORECAST_CAP = 3.0
FORECAST_CAP_WEEKS = 52


class Data:
    """prepare's output folder, indexed for origins; or one group's part of it (``of_part``)."""

    def __init__(self, folder: Path) -> None:
        folder = Path(folder)
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        ids = {"store_id": str, "sku": str, "zip_code": str}
        table = pd.read_csv(folder / "features.csv", dtype=ids)
        known = pd.read_csv(folder / "weather_known.csv", dtype={"zip_code": str})
        hist = pd.read_csv(folder / "history.csv")
        future = pd.date_range(meta["future_from"], periods=int(meta["future_weeks"]), freq="7D")
        weeks = sorted(set(hist["week_start"]) | set(future.strftime("%Y-%m-%d")))
        series = sorted(table["series"].unique())
        self._index(meta, table, known, weeks, series)
        hist = hist[hist["series"].isin(self.series_index)]
        units = np.full((len(self.series), len(weeks)), np.nan)
        units[hist["series"].map(self.series_index).to_numpy(), hist["week_start"].map(self.week_index).to_numpy()] = (
            hist[TARGET].to_numpy(float)
        )
        # the store's observed weekly tmax (weeks before the holdout; last year's weather)
        observed = table[table["week_start"] < meta["holdout_from"]]
        tmax = np.full(units.shape, np.nan)
        tmax[
            observed["series"].map(self.series_index).to_numpy(), observed["week_start"].map(self.week_index).to_numpy()
        ] = observed["tmax_c"].to_numpy(float)
        # per SKU: the mean series, pooled over every store (and region) of the lake
        info = table.drop_duplicates("series").set_index("series").loc[self.series]
        sku_of = info["sku"].to_numpy()
        self.skus = sorted(set(sku_of))
        self._arrays(units, tmax, np.array([self.skus.index(k) for k in sku_of]))
        sums = np.zeros((len(self.skus), len(weeks)))
        counts = np.zeros((len(self.skus), len(weeks)))
        np.add.at(sums, self.sku_row, np.nan_to_num(self.demand))
        np.add.at(counts, self.sku_row, np.isfinite(self.demand))
        with np.errstate(invalid="ignore", divide="ignore"):
            self._pooled(np.where(counts > 0, sums / np.maximum(counts, 1), np.nan))

    def _index(self, meta: dict, table: pd.DataFrame, known: pd.DataFrame, weeks: list[str], series: list) -> None:
        self.meta = meta
        self.table = table
        self.known = known
        self.known_origins = set(known["origin"])
        self.horizon = int(meta["holdout_weeks"])
        self.weeks = weeks
        self.week_index = {w: i for i, w in enumerate(weeks)}
        self.series = series
        self.series_index = {s: i for i, s in enumerate(series)}

    def _arrays(self, units: np.ndarray, tmax: np.ndarray, sku_row: np.ndarray) -> None:
        """Each series' statistics from its weeks (every one row-wise: a series' rows alone give
        its rows of the whole lake's)."""
        self.units = units
        self.tmax = tmax
        self.sku_row = sku_row
        self.sku_of = np.array(self.skus, dtype=object)[sku_row] if len(sku_row) else np.array([], dtype=object)
        self._cs, self._cn = _cumulative(units)
        # the levels behind the LightGBM member and the pooled seasonal naive are demand, never
        # below zero: a week of net returns is no demand, and a level near zero or below makes
        # every ratio over it unbounded (a SKU's mean store near zero made one series' share of
        # it, and so its level, explode)
        self.demand = np.where(np.isfinite(units), np.clip(units, 0.0, None), np.nan)
        self._qs, self._qn = _cumulative(self.demand)
        self.first = np.argmax(np.isfinite(units), axis=1)
        diffs = np.abs(np.diff(units, axis=1))
        self._dcs, self._dcn = _cumulative(np.hstack([np.full((len(self.series), 1), np.nan), diffs]))

    def _pooled(self, sku_units: np.ndarray) -> None:
        """Per SKU (the rows of ``skus``) its mean series over every store of the lake."""
        self.sku_units = sku_units
        self._scs, self._scn = _cumulative(sku_units)

    # one group's part --------------------------------------------------------------------------
    def part(self, group: str) -> dict[str, Any]:
        """What ``group``'s fit and scoring read, and nothing of the other groups': its rows
        of the table, its zips' known weather, its series' weeks (units, observed tmax, SKU)
        and what is pooled over the whole lake (every SKU's mean series, the tmax fallback of
        every origin). ``Data.of_part`` of it answers as this ``Data`` does for the group."""
        table = self._rows_of(group)
        series = sorted(table["series"].unique())
        at = np.array([self.series_index[s] for s in series], dtype=np.int64)
        return {
            "group": group,
            "meta": self.meta,
            "table": table,
            "known": self.known[self.known["zip_code"].isin(set(table["zip_code"]))],
            "known_origins": sorted(self.known_origins),
            "weeks": self.weeks,
            "series": series,
            "units": self.units[at],
            "tmax": self.tmax[at],
            "sku_row": self.sku_row[at],
            "skus": self.skus,
            "sku_units": self.sku_units,
            "tmax_fallback": {o: float(self._tmax_fallback(o)) for o in self.origins},
        }

    @classmethod
    def of_part(cls, part: dict[str, Any]) -> Data:
        """A ``Data`` of one group's ``part`` (see ``part``): its rows, statistics and
        forecasts are the whole lake's ``Data``'s of that group, bit for bit."""
        self = cls.__new__(cls)
        self._index(part["meta"], part["table"], part["known"], part["weeks"], part["series"])
        self.known_origins = set(part["known_origins"])
        self.skus = list(part["skus"])
        self._arrays(part["units"], part["tmax"], part["sku_row"])
        self._pooled(part["sku_units"])
        self._fallback = dict(part["tmax_fallback"])
        self._group = str(part["group"])
        return self

    @property
    def origins(self) -> list[str]:
        return list(self.meta["origins"])

    # rows ------------------------------------------------------------------------------------
    def _rows_of(self, group: str | None) -> pd.DataFrame:
        """The table, or one group's rows of it (in the table's order, with its index)."""
        if group is None:
            return self.table
        if not hasattr(self, "_group_index"):
            self._group_index = self.table.groupby("group", sort=False).indices
        return self.table.iloc[self._group_index.get(group, [])]

    def train_rows(self, origin: str, group: str | None = None) -> pd.DataFrame:
        """The feature rows before ``origin`` (an origin at or before the holdout's), the
        weather anomaly against the zip's mean before it; ``group``: that group's rows only
        (each row as in the whole table's)."""
        table = self._rows_of(group)
        rows = table[(table["week_start"] < origin) & (table["split"] != "future")].copy()
        means = self.known[self.known["origin"] == origin].groupby("zip_code")["zip_tmax_mean"].first()
        # float even for no rows (a map over an empty column of strings stays strings)
        mean = rows["zip_code"].map(means).astype(float).fillna(self._tmax_fallback(origin))
        rows["tmax_anom"] = rows["tmax_c"] - mean
        return rows

    def _tmax_fallback(self, origin: str) -> float:
        """The mean tmax of every train row before ``origin``: the anomaly's reference where a
        zip has no mean (one number per origin, whichever group's rows are asked for)."""
        cache = self.__dict__.setdefault("_fallback", {})
        if origin not in cache and hasattr(self, "_group"):
            raise ValueError(f"group {self._group}'s data has no tmax fallback at origin {origin}")
        if origin not in cache:
            t = self.table
            cache[origin] = t.loc[(t["week_start"] < origin) & (t["split"] != "future"), "tmax_c"].mean()
        return cache[origin]

    def horizon_rows(self, origin: str, weeks: int | None = None, group: str | None = None) -> pd.DataFrame:
        """The ``weeks`` (default: the horizon) feature rows from ``origin``, with the weather
        known at the origin; ``origin`` names the origin of every row; ``group``: its rows only."""
        n = self.horizon if weeks is None else weeks
        i = self.week_index[origin]
        span = self.weeks[i : i + n]
        table = self._rows_of(group)
        rows = table[table["week_start"].isin(span)].copy()
        if origin not in self.known_origins:
            raise ValueError(f"no weather known at origin {origin}")
        known = self.known[self.known["origin"] == origin].set_index(["zip_code", "week_start"])
        key = pd.MultiIndex.from_arrays([rows["zip_code"], rows["week_start"]])
        for col in WEATHER_OBSERVED:
            rows[col] = known[col].reindex(key).to_numpy(float)
        rows["tmax_anom"] = rows["tmax_c"] - known["zip_tmax_mean"].reindex(key).to_numpy(float)
        rows["origin"] = origin
        return rows

    # statistics known at an origin --------------------------------------------------------------
    def _mean(self, cs: np.ndarray, cn: np.ndarray, row: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a = np.clip(a, 0, cs.shape[1] - 1)
        b = np.clip(b, 0, cs.shape[1] - 1)
        n = cn[row, b] - cn[row, a]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, (cs[row, b] - cs[row, a]) / np.maximum(n, 1), np.nan)

    def indices(self, rows: pd.DataFrame, origin: str | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # integers even for no rows (an empty map is of floats, no index)
        s = rows["series"].map(self.series_index).to_numpy(np.int64)
        t = rows["week_start"].map(self.week_index).to_numpy(np.int64)
        o = np.full(len(rows), self.week_index[origin]) if isinstance(origin, str) else np.asarray(origin)
        return s, t, o

    def baselines(self, rows: pd.DataFrame, origin: str) -> pd.DataFrame:
        """Per horizon row, known at ``origin``: the historical average (the series' mean
        week before the origin), the seasonal naive (the same week last year x the series'
        last 13 weeks / the same 13 weeks a year earlier; the historical average where there
        is no last year) and the MASE scale (the series' mean absolute week-on-week change
        before the origin)."""
        s, t, o = self.indices(rows, origin)
        hist = self._mean(self._cs, self._cn, s, np.zeros_like(o), o)
        level = self._mean(self._cs, self._cn, s, o - 13, o)
        level_ly = self._mean(self._cs, self._cn, s, o - 65, o - 52)
        last_year = np.where(t - 52 >= 0, self.units[s, np.maximum(t - 52, 0)], np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(level_ly > 0, level / level_ly, np.nan)
        snaive = last_year * ratio
        snaive = np.where(np.isfinite(snaive), snaive, hist)
        scale = self._mean(self._dcs, self._dcn, s, np.ones_like(o), o)
        return pd.DataFrame(
            {"baseline": np.nan_to_num(hist), "snaive": np.nan_to_num(snaive), "scale": scale}, index=rows.index
        )

    # the gradient-boosting member ----------------------------------------------------------------
    def levels(self, rows: pd.DataFrame, origin: str | np.ndarray) -> dict[str, np.ndarray]:
        """Statistics of each row's series and SKU known at ``origin`` (one origin, or one per
        row), in units (see ``lgbm_features`` and ``pooled_seasonal``)."""
        s, t, o = self.indices(rows, origin)
        cs, cn, scs, scn, k = self._qs, self._qn, self._scs, self._scn, self.sku_row[s]
        level = self._mean(cs, cn, s, o - 13, o)
        level = np.where(np.isfinite(level), level, np.nan_to_num(self._mean(cs, cn, s, np.zeros_like(o), o)))
        # the series' share of its SKU's mean store over up to two years before the origin,
        # times the SKU's last 13 weeks: a steadier level than the series' own 13 weeks
        a = np.maximum(o - 104, self.first[s])
        with np.errstate(invalid="ignore", divide="ignore"):
            sku_mean = self._mean(scs, scn, k, a, o)
            share = np.where(sku_mean > 0, self._mean(cs, cn, s, a, o) / sku_mean, np.nan)
        pooled = share * self._mean(scs, scn, k, o - 13, o)
        pooled = np.where(np.isfinite(pooled), pooled, level)
        sku_ly_level = self._mean(scs, scn, k, o - 65, o - 52)
        ok_ly = (t - 53 >= 0) & (o - 65 >= 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            factor = (self._mean(scs, scn, k, t - 52, t - 51) + 0.1) / (sku_ly_level + 0.1)
            seasonal = pooled * np.clip(factor, 0.0, SEASONAL_FACTOR_MAX)
        return {
            "s": s,
            "t": t,
            "o": o,
            "ok_ly": ok_ly,
            "level": level,
            "pooled": pooled,
            "seasonal": np.where(ok_ly & np.isfinite(seasonal), seasonal, pooled),
            "recent": self._mean(cs, cn, s, o - 4, o),
            "yearly": self._mean(cs, cn, s, o - 52, o),
            "ly": self._mean(cs, cn, s, t - 53, t - 50),
            "ly_level": self._mean(cs, cn, s, o - 65, o - 52),
            "sku_ly": self._mean(scs, scn, k, t - 53, t - 50),
            "sku_ly_level": sku_ly_level,
            "sku_level": self._mean(scs, scn, k, o - 13, o),
        }

    def upper_bound(self, rows: pd.DataFrame, origin: str) -> np.ndarray:
        """The largest forecast a row may have, known at ``origin``: FORECAST_CAP x the series'
        largest week of demand in the FORECAST_CAP_WEEKS weeks before it (0 for a series that
        sold nothing then)."""
        s, _, o = self.indices(rows, origin)
        i = self.week_index[origin]
        window = self.demand[:, max(i - FORECAST_CAP_WEEKS, 0) : i]
        if window.shape[1] == 0:
            return np.zeros(len(rows))
        top = np.nanmax(np.where(np.isfinite(window), window, -np.inf), axis=1)
        return FORECAST_CAP * np.clip(top, 0.0, None)[s]

    def pooled_seasonal(self, rows: pd.DataFrame, origin: str) -> np.ndarray:
        """The seasonal naive pooled over the SKU's stores, known at ``origin``: the series'
        share of its SKU (up to two years before the origin) x the SKU's mean store in the
        last 13 weeks x the SKU's same week last year against its 13 weeks before the origin a
        year earlier; without a last year, the share x the SKU's last 13 weeks."""
        return self.levels(rows, origin)["seasonal"]

    # the gradient-boosting member ----------------------------------------------------------------
    def lgbm_features(self, rows: pd.DataFrame, origin: str | np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
        """LightGBM's numeric features and the log offset (the pooled level, see ``levels``)
        of ``rows`` forecast from ``origin`` (one origin, or one per row)."""
        v = self.levels(rows, origin)
        s, t, o, ok_ly, level, pooled = v["s"], v["t"], v["o"], v["ok_ly"], v["level"], v["pooled"]
        tmax_ly = np.where(t - 52 >= 0, self.tmax[s, np.clip(t - 52, 0, None)], np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            x = pd.DataFrame(
                {
                    "level": np.log(level + 0.1),
                    "pooled": np.log((pooled + 0.5) / (level + 0.5)),
                    "recent": np.log((v["recent"] + 0.5) / (level + 0.5)),
                    "yearly": np.log((v["yearly"] + 0.5) / (level + 0.5)),
                    "last_year": np.where(ok_ly, np.log((v["ly"] + 0.5) / (v["ly_level"] + 0.5)), np.nan),
                    "sku_last_year": np.where(ok_ly, np.log((v["sku_ly"] + 0.1) / (v["sku_ly_level"] + 0.1)), np.nan),
                    "sku_growth": np.where(
                        o - 65 >= 0, np.log((v["sku_level"] + 0.1) / (v["sku_ly_level"] + 0.1)), np.nan
                    ),
                    "lead": (t - o + 1).astype(float),
                    "seasonal": np.log((v["seasonal"] + 0.5) / (pooled + 0.5)),
                    "tmax_last_year": tmax_ly,
                },
                index=rows.index,
            )
        x["woy"] = ((pd.to_datetime(rows["week_start"]) + pd.Timedelta(days=2)).dt.day_of_year - 1) // 7
        for col in (*SEASON, *HOLIDAYS, "tmax_c", "precip_mm", "snow_mm", "tmax_anom"):
            x[col] = rows[col].to_numpy(float)
        return x[list(LGBM_NUMERIC)], np.log(pooled + 0.1)

    def lgbm_training_rows(self, origin: str) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
        """Every (series, target week before ``origin``, lead 1..horizon) with LGBM_MIN_HISTORY
        weeks before its own origin: the rows, their features, offsets and units."""
        rows = self.train_rows(origin)
        t = rows["week_start"].map(self.week_index).to_numpy()
        rep = np.repeat(np.arange(len(rows)), self.horizon)
        lead = np.tile(np.arange(1, self.horizon + 1), len(rows))
        own = t[rep] - lead + 1
        # a share of the leads of each target week, rotating over series and weeks (every lead
        # is seen, at a fraction of the rows and of the training time)
        series = rows["series"].map(self.series_index).to_numpy()[rep]
        keep = (own >= LGBM_MIN_HISTORY) & ((series + t[rep] + lead) % LGBM_LEAD_EVERY == 0)
        rep, own = rep[keep], own[keep]
        picked = rows.iloc[rep].reset_index(drop=True)
        x, offset = self.lgbm_features(picked, own)
        return picked, x, offset, np.clip(picked[TARGET].to_numpy(float), 0.0, None)  # demand: Poisson counts


def _cumulative(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Running sums and counts of the finite values along the weeks, 0 in front."""
    finite = np.isfinite(values)
    zeros = np.zeros((values.shape[0], 1))
    return (
        np.hstack([zeros, np.cumsum(np.where(finite, values, 0.0), axis=1)]),
        np.hstack([zeros, np.cumsum(finite, axis=1)]),
    )


class Booster:
    """A fitted LightGBM member with its categories (saved as ``lgbm.txt`` + ``lgbm.json``)."""

    def __init__(self, model, categories: dict[str, list[str]]) -> None:
        self.model = model
        self.categories = categories

    @staticmethod
    def matrix(x: pd.DataFrame, rows: pd.DataFrame, categories: dict[str, list[str]]) -> pd.DataFrame:
        x = x.copy()
        for col in LGBM_CATEGORICAL:
            # a category the booster never saw (a region or SKU newer than its origin): missing
            codes = pd.Index(categories[col]).get_indexer(rows[col].astype(str).to_numpy())
            x[col] = np.where(codes < 0, np.nan, codes.astype(float))
        return x

    @classmethod
    def fit(cls, data: Data, origin: str, seed: int, threads: int = 0) -> Booster | None:
        """The member fit on the rows before ``origin``; None with fewer than LGBM_MIN_ROWS
        (too short a history: the blend then uses the pooled seasonal naive in its place)."""
        import lightgbm as lgb

        rows, x, offset, y = data.lgbm_training_rows(origin)
        if len(y) < LGBM_MIN_ROWS:
            return None
        categories = {c: sorted(rows[c].astype(str).unique()) for c in LGBM_CATEGORICAL}
        frame = cls.matrix(x, rows, categories)
        params = {**LGBM_PARAMS, "seed": seed, "num_threads": threads}
        train = lgb.Dataset(
            frame.to_numpy(float),
            label=y,
            init_score=offset,
            feature_name=list(frame.columns),
            categorical_feature=list(LGBM_CATEGORICAL),
            free_raw_data=True,
        )
        model = lgb.train(params, train, num_boost_round=LGBM_ROUNDS)
        return cls(model, categories)

    def predict(self, data: Data, rows: pd.DataFrame, origin: str) -> np.ndarray:
        x, offset = data.lgbm_features(rows, origin)
        frame = self.matrix(x, rows, self.categories)
        raw = self.model.predict(frame.to_numpy(float), raw_score=True)
        return np.exp(np.clip(raw + offset, -20, math.log(1e7)))

    def save(self, folder: Path) -> None:
        self.model.save_model(str(Path(folder) / "lgbm.txt"))
        (Path(folder) / "lgbm.json").write_text(json.dumps({"categories": self.categories}), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> Booster:
        import lightgbm as lgb

        model = lgb.Booster(model_file=str(Path(folder) / "lgbm.txt"))
        categories = json.loads((Path(folder) / "lgbm.json").read_text(encoding="utf-8"))["categories"]
        return cls(model, categories)
