"""The per-group model: a blend of a LASSO regression and a small neural network
(scikit-learn's MLPRegressor over one-hot encoded categorical features), both on log1p(units)
and fit per group (region x store format x product velocity), the global LightGBM member
(backtest.py) and the seasonal naive pooled over the SKU's stores (``seasonal``), next to the
two baselines: the historical average (each series' mean week before the origin) and the
seasonal naive (``snaive``: the series' same week last year x its recent level against the
same weeks a year earlier).

The blend is a weighted mean of the members' forecasts in units; its weights (a grid over the
simplex) are chosen per group on the validation window: the horizon weeks before the origin,
forecast by the members fit on the weeks before that (the previous backtest origin's), so no
weight ever sees the horizon it is measured on. They minimise the WAPE (not the MAPE, which
rewards forecasting low); a group's weights are the mean of those chosen on its own rows and
those chosen on every group's rows of the window. The "old blend" (the LASSO's weight in 0,
0.25, .., 1 with the lowest MAPE, the MLP the rest) is kept for comparison.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from forecast_lib import NUMERIC, SKU_INTERACTIONS, TARGET, mape
from sklearn.linear_model import LassoCV
from sklearn.model_selection import TimeSeriesSplit
from sklearn.neural_network import MLPRegressor

#: the old blend: the LASSO's candidate weights (the MLP has the rest)
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
#: the blend's members (forecast columns) and the step of its weight grid over the simplex
MEMBERS = ("lasso", "mlp", "lgbm", "seasonal")
WEIGHT_STEP = 0.1
#: the weights of a group without a validation window
DEFAULT_WEIGHTS = {"lasso": 0.1, "mlp": 0.1, "lgbm": 0.5, "seasonal": 0.3}
#: a member whose WAPE on the validation window is above this multiple of the historical
#: average's gets no weight there (a member that broke on some series must not be blended in)
MAX_WAPE_VS_BASELINE = 1.5
#: a forecast out of its range by at most this (half a unit) is bounded but not counted clipped
CLIP_TOLERANCE = 0.5
#: train weeks needed before the linear trend is used
MIN_WEEKS_FOR_TREND = 52
#: a group with fewer train rows than this is not fitted (``too_few_rows``): it is served by its
#: baseline. At this size the LASSO's time-series CV still has 2 folds of at least 4 rows each
#: (TimeSeriesSplit: test folds of n // (splits + 1) rows); fewer rows would fit the members
#: (~100+ columns) on a handful of weeks, which no baseline loses to, and 1 row crashes the CV.
MIN_TRAIN_ROWS = 12


#: one-hot categories of both members, each at most MAX_LEVELS levels (the largest by units;
#: the others all zeros, known by their level features): a group's columns stop growing with
#: its series, so training time grows linearly with its rows
ONE_HOT = ("series", "store_id", "sku", "region", "store_format")
MAX_LEVELS = 60
#: SKUs with their own seasonal, weather and event slopes in the LASSO (the largest by units)
MAX_INTERACTION_SKUS = 20


@dataclass
class Encoder:
    """Standardised numeric features, one-hot categories (unseen or beyond MAX_LEVELS -> all
    zeros) and, for the LASSO, per-SKU copies of the seasonal, weather and event features (for
    MAX_INTERACTION_SKUS SKUs). Every statistic comes from the rows it is fit on (before the
    origin)."""

    categories: dict[str, list[str]] = field(default_factory=dict)
    interaction_skus: list[str] = field(default_factory=list)
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)
    low: dict[str, float] = field(default_factory=dict)
    high: dict[str, float] = field(default_factory=dict)

    def fit(self, df: pd.DataFrame) -> Encoder:
        def largest(col: str, n: int) -> list[str]:
            units = df.groupby(df[col].astype(str))[TARGET].sum().sort_values(ascending=False, kind="stable")
            return sorted(units.index[:n])

        self.categories = {c: largest(c, MAX_LEVELS) for c in ONE_HOT}
        self.interaction_skus = largest("sku", MAX_INTERACTION_SKUS)
        # less than a year of history: a linear trend would be extrapolated from a season
        short = df["week_start"].nunique() < MIN_WEEKS_FOR_TREND
        for c in NUMERIC:
            v = df[c].astype(float)
            self.mean[c] = float(v.mean())
            sd = float(v.std(ddof=0))
            self.std[c] = sd if sd > 1e-9 and not (short and c == "trend") else 0.0
            self.low[c], self.high[c] = float(v.min()), float(v.max())
        return self

    def scaled(self, df: pd.DataFrame, c: str) -> np.ndarray:
        """Standardised, within the training range (no extrapolation: a December week of a
        model trained on autumn weeks sees its coldest trained temperature);
        a column constant in training is 0."""
        if self.std[c] == 0.0:
            return np.zeros(len(df))
        return (np.clip(df[c].to_numpy(float), self.low[c], self.high[c]) - self.mean[c]) / self.std[c]

    def numeric(self, df: pd.DataFrame) -> np.ndarray:
        return np.column_stack([self.scaled(df, c) for c in NUMERIC])

    @staticmethod
    def _onehot(df: pd.DataFrame, col: str, cats: list[str]) -> np.ndarray:
        values = df[col].astype(str).to_numpy()
        return (values[:, None] == np.asarray(cats, dtype=object)[None, :]).astype(float)

    def onehot(self, df: pd.DataFrame, col: str) -> np.ndarray:
        return self._onehot(df, col, self.categories[col])

    def transform(self, df: pd.DataFrame, *, interactions: bool) -> np.ndarray:
        parts = [self.numeric(df)] + [self.onehot(df, c) for c in ONE_HOT]
        if interactions:
            sku = self._onehot(df, "sku", self.interaction_skus)
            inter = np.column_stack([self.scaled(df, c) for c in SKU_INTERACTIONS])
            parts.append((sku[:, :, None] * inter[:, None, :]).reshape(len(df), -1))
        return np.hstack(parts)


@dataclass
class GroupModel:
    """The per-group members (LASSO, MLP) fit on the weeks before one origin, and the blend's
    weights chosen for it."""

    group: str
    encoder: Encoder
    lasso: LassoCV
    mlp: MLPRegressor
    y_mean: float
    y_std: float
    y_max: float
    n_train: int
    trained_at: float
    origin: str = ""
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    #: the old blend's LASSO weight
    lasso_weight: float = 0.5

    def members(self, df: pd.DataFrame) -> pd.DataFrame:
        """The LASSO's and the MLP's forecasts (units) of ``df``'s rows."""
        x_lasso = self.encoder.transform(df, interactions=True)
        x_mlp = self.encoder.transform(df, interactions=False)
        # at most 1.5 x the group's largest train week (log1p scale): a guard, not a model
        top = self.y_max + np.log(1.5)
        lasso = np.expm1(np.clip(self.lasso.predict(x_lasso), 0, top))
        mlp = np.expm1(np.clip(self.mlp.predict(x_mlp) * self.y_std + self.y_mean, 0, top))
        return pd.DataFrame({"lasso": lasso, "mlp": mlp}, index=df.index)

    def blend(self, pred: pd.DataFrame) -> pd.DataFrame:
        """``forecast`` (the blend) and ``old_blend`` from the members' columns of ``pred``."""
        forecast = sum(w * pred[m].to_numpy(float) for m, w in self.weights.items() if w)
        old = self.lasso_weight * pred["lasso"] + (1 - self.lasso_weight) * pred["mlp"]
        return pd.DataFrame({"forecast": np.clip(forecast, 0, None), "old_blend": old}, index=pred.index)


def too_few_rows(n_train: int) -> str | None:
    """Why a group of ``n_train`` train rows is not fitted (one line), or None when it is."""
    if n_train >= MIN_TRAIN_ROWS:
        return None
    rows = "row" if n_train == 1 else "rows"
    return f"{n_train} training {rows}: too few to fit (under {MIN_TRAIN_ROWS}); served by its baseline"


def cv_splits(n_samples: int) -> int:
    """The LASSO's time-series CV folds: 3 from 60 rows, else 2, and never more than the rows
    allow (TimeSeriesSplit needs n_samples > n_splits); fit_members is not called below
    MIN_TRAIN_ROWS, where 2 folds have 4+ rows each, so this bound is a guard for direct callers."""
    return max(2, min(3 if n_samples >= 60 else 2, n_samples - 1))


def fit_members(train: pd.DataFrame, seed: int) -> tuple[Encoder, LassoCV, MLPRegressor, float, float, float]:
    """The LASSO and the MLP on a group's rows (log1p units, encoded features); the caller
    checks ``too_few_rows`` first (fewer than MIN_TRAIN_ROWS rows raise ValueError)."""
    if too_few_rows(len(train)):
        raise ValueError(too_few_rows(len(train)))
    train = train.sort_values(["week_start", "series"], kind="stable")
    enc = Encoder().fit(train)
    y = np.log1p(np.clip(train[TARGET].to_numpy(float), 0.0, None))  # demand: a week of net returns is 0
    x_lasso = enc.transform(train, interactions=True)
    x_mlp = enc.transform(train, interactions=False)
    n_splits = cv_splits(len(train))
    # the alpha grid is given (not n_alphas / alphas=int, whose meaning moved between releases)
    xc = x_lasso - x_lasso.mean(axis=0)
    alpha_max = max(float(np.abs(xc.T @ (y - y.mean())).max()) / len(y), 1e-6)
    lasso = LassoCV(
        alphas=np.geomspace(alpha_max, alpha_max * 1e-2, 25),
        cv=TimeSeriesSplit(n_splits=n_splits),
        max_iter=50000,
        tol=1e-3,
    ).fit(x_lasso, y)
    y_mean, y_std = float(y.mean()), float(y.std()) or 1.0
    early = len(train) >= 40
    n_fit = len(train) - (math.ceil(0.15 * len(train)) if early else 0)  # rows left after the validation split
    # batches of 256 at a larger step: a third of the time of the old (64, 3e-3, 15) and no worse
    mlp = MLPRegressor(
        hidden_layer_sizes=(32, 16),
        alpha=1e-2,
        learning_rate_init=1e-2,
        batch_size=min(256, n_fit),
        early_stopping=early,
        validation_fraction=0.15,
        n_iter_no_change=8,
        max_iter=2000,
        random_state=seed,
    ).fit(x_mlp, (y - y_mean) / y_std)
    return enc, lasso, mlp, y_mean, y_std, float(y.max())


def fit_group(group: str, train: pd.DataFrame, seed: int, trained_at: float, origin: str = "") -> GroupModel:
    """The group's members on its rows before ``origin`` (weights: see ``choose_weights``)."""
    return GroupModel(group, *fit_members(train, seed), len(train), trained_at, origin)


def _grid(members: tuple[str, ...], step: float) -> list[dict[str, float]]:
    n = round(1 / step)
    return [
        {m: k / n for m, k in zip(members, combo, strict=True)}
        for combo in itertools.product(range(n + 1), repeat=len(members))
        if sum(combo) == n
    ]


def sane_members(val: pd.DataFrame, members: tuple[str, ...] = MEMBERS) -> tuple[str, ...]:
    """The ``members`` whose WAPE on ``val`` is at most MAX_WAPE_VS_BASELINE x the historical
    average's (``baseline``), or every member when ``val`` cannot tell (no baseline column, no
    actual); when none is, the one with the lowest WAPE."""
    if len(val) == 0 or "baseline" not in val.columns or not len(members):
        return members
    actual = val["actual"].to_numpy(float)
    total = np.abs(actual).sum()
    if total <= 0:
        return members

    def wape_of(col: str) -> float:
        err = np.abs(np.nan_to_num(val[col].to_numpy(float), nan=0.0) - actual).sum() / total
        return float(err) if np.isfinite(err) else math.inf

    errors = {m: wape_of(m) for m in members}
    limit = MAX_WAPE_VS_BASELINE * wape_of("baseline")
    kept = tuple(m for m in members if errors[m] <= limit)
    return kept or (min(members, key=lambda m: errors[m]),)


def choose_weights(
    val: pd.DataFrame, members: tuple[str, ...] = MEMBERS, step: float = WEIGHT_STEP
) -> dict[str, float]:
    """The blend weights (a grid over the simplex) with the lowest WAPE on ``val`` (the
    validation window: members' forecasts and ``actual``), over the members whose WAPE there
    is not far above the historical average's (``sane_members``; the others weigh 0); ties go
    to the weights nearest the default ones."""
    actual = val["actual"].to_numpy(float)
    if len(val) == 0 or actual.sum() <= 0:
        default = {m: DEFAULT_WEIGHTS[m] for m in members}
        total = sum(default.values())
        return {m: round(w / total, 4) for m, w in default.items()} if total else dict(DEFAULT_WEIGHTS)
    kept = sane_members(val, members)
    if kept != members:
        return {m: 0.0 for m in members} | choose_weights(val, kept, step)
    pred = np.nan_to_num(val[list(members)].to_numpy(float), nan=0.0)
    grid = _grid(members, step)
    w = np.array([[g[m] for m in members] for g in grid])
    errors = np.abs(pred @ w.T - actual[:, None]).sum(axis=0) / actual.sum()
    default = np.array([DEFAULT_WEIGHTS[m] for m in members])
    distance = np.abs(w - default).sum(axis=1)
    best = min(range(len(grid)), key=lambda i: (round(float(errors[i]), 4), distance[i]))
    return {m: round(float(v), 4) for m, v in zip(members, w[best], strict=True)}


def group_weights(
    val: pd.DataFrame, group: str, pooled: dict[str, float] | None = None, members: tuple[str, ...] = MEMBERS
) -> dict[str, float]:
    """A group's blend weights over ``members`` (the others 0): the mean of the weights chosen
    on its own rows of the validation window ``val`` and of those chosen on every group's
    (``pooled``, computed when not given): a group's 8 weeks are few rows, and the pooled
    choice steadies it."""
    pooled = choose_weights(val, members) if pooled is None else pooled
    own = choose_weights(val[val["group"] == group], members)
    return {m: round(0.5 * own.get(m, 0.0) + 0.5 * pooled.get(m, 0.0), 4) for m in MEMBERS}


def choose_old_weight(val: pd.DataFrame) -> float:
    """The old blend's rule: the LASSO weight in WEIGHTS with the lowest MAPE on ``val``."""
    if len(val) == 0:
        return 0.5
    actual = val["actual"].to_numpy(float)
    scores = {w: mape(actual, w * val["lasso"] + (1 - w) * val["mlp"]) for w in WEIGHTS}
    scores = {w: (s if np.isfinite(s) else np.inf) for w, s in scores.items()}
    return min(scores, key=lambda w: (round(scores[w], 4), abs(w - 0.5)))


#: forecast columns, in forecasts.csv order
FORECASTS = ("forecast", "lasso", "mlp", "lgbm", "seasonal", "old_blend", "baseline", "snaive")


def bound(pred: pd.DataFrame, cols: tuple[str, ...], upper: pd.Series) -> tuple[pd.DataFrame, np.ndarray]:
    """``pred`` with each of ``cols`` within [0, ``upper``] (NaN: 0), and per row how many of
    them were out of range by more than CLIP_TOLERANCE (or NaN)."""
    pred = pred.copy()
    hi = upper.to_numpy(float)
    clipped = np.zeros(len(pred), dtype=int)
    for col in cols:
        v = pred[col].to_numpy(float)
        bad = np.isnan(v) | (v < -CLIP_TOLERANCE) | (v > hi + CLIP_TOLERANCE)
        clipped += bad
        pred[col] = np.clip(np.where(np.isnan(v), 0.0, v), 0.0, hi)
    return pred, clipped


def member_forecasts(models: dict[str, GroupModel], booster, data, rows: pd.DataFrame, origin: str) -> pd.DataFrame:
    """Every member (bounded) and both baselines for ``rows`` (horizon rows of ``origin``,
    features known at it) of the groups with a model, in group order; with ``upper`` (each
    row's bound), ``clipped`` (members out of range), ``actual``, ``scale`` and ``origin``. Every
    column is row-wise: a group's rows alone give its rows of the whole frame."""
    rows = rows[rows["group"].isin(models)]
    if rows.empty:
        return pd.DataFrame()
    pred = data.baselines(rows, origin)
    pred["seasonal"] = data.pooled_seasonal(rows, origin)
    pred["lgbm"] = booster.predict(data, rows, origin) if booster is not None else pred["seasonal"]
    upper = pd.Series(data.upper_bound(rows, origin), index=rows.index)
    parts = []
    for group, part in rows.groupby("group", sort=True):
        p = pd.concat([pred.loc[part.index], models[group].members(part)], axis=1)
        p, clipped = bound(p, ("lasso", "mlp", "lgbm", "seasonal"), upper.loc[part.index])
        parts.append(p.assign(upper=upper.loc[part.index], clipped=clipped))
    out = pd.concat(parts)
    keys = rows.loc[out.index, ["group", "series", "store_id", "sku", "week_start", "split"]]
    members = ["lasso", "mlp", "lgbm", "seasonal", "baseline", "snaive"]
    out = pd.concat([keys, out[[*members, "upper", "clipped"]]], axis=1)
    out["actual"] = rows.loc[out.index, TARGET]
    out["scale"] = pred.loc[out.index, "scale"]
    out["origin"] = origin
    return out


def blend_forecasts(members: pd.DataFrame, models: dict[str, GroupModel]) -> pd.DataFrame:
    """``members`` (see ``member_forecasts``) with each group's blend and old blend (bounded),
    ``clipped`` counting them too, in ``forecast``'s columns."""
    if members.empty:
        return pd.DataFrame()
    parts = []
    for group, p in members.groupby("group", sort=False):
        b, clipped_blend = bound(models[group].blend(p), ("forecast", "old_blend"), p["upper"])
        parts.append(pd.concat([p, b], axis=1).assign(clipped=p["clipped"] + clipped_blend))
    out = pd.concat(parts)
    keys = ["group", "series", "store_id", "sku", "week_start", "split"]
    return out[[*keys, *FORECASTS, "clipped", "actual", "scale", "origin"]]


def forecast(models: dict[str, GroupModel], booster, data, rows: pd.DataFrame, origin: str) -> pd.DataFrame:
    """Every member, the blend, the old blend and both baselines for ``rows`` (horizon rows
    of ``origin``, features known at it); with ``actual`` (NaN for future weeks), ``scale``
    (MASE) and ``origin``. Groups without a model are left out."""
    return blend_forecasts(member_forecasts(models, booster, data, rows, origin), models)
