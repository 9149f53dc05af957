"""The per-group model: an ensemble of a LASSO regression and a small neural network
(scikit-learn's MLPRegressor over one-hot encoded categorical features), both on log1p(units),
and the historical-average baseline (each series' mean of its train weeks).

One model per group (region x store format x product velocity). The ensemble forecast is a
weighted mean of the two members' forecasts in units (the weight chosen on the last train
weeks, see ``fit_group``), clipped at 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from forecast_lib import CATEGORICAL, NUMERIC, SKU_INTERACTIONS, TARGET, mape
from sklearn.linear_model import LassoCV
from sklearn.model_selection import TimeSeriesSplit
from sklearn.neural_network import MLPRegressor

#: the LASSO's candidate weights in the ensemble (the MLP has the rest)
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
#: train weeks needed before the linear trend is used
MIN_WEEKS_FOR_TREND = 52


@dataclass
class Encoder:
    """Standardised numeric features, one-hot categories (unseen -> all zeros) and, for the
    LASSO, per-SKU copies of the seasonal, weather and event features."""

    categories: dict[str, list[str]] = field(default_factory=dict)
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)
    low: dict[str, float] = field(default_factory=dict)
    high: dict[str, float] = field(default_factory=dict)

    def fit(self, df: pd.DataFrame) -> Encoder:
        self.categories = {c: sorted(df[c].astype(str).unique()) for c in CATEGORICAL}
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

    def onehot(self, df: pd.DataFrame, col: str) -> np.ndarray:
        cats = self.categories[col]
        values = df[col].astype(str).to_numpy()
        return (values[:, None] == np.asarray(cats, dtype=object)[None, :]).astype(float)

    def transform(self, df: pd.DataFrame, *, interactions: bool) -> np.ndarray:
        parts = [self.numeric(df)] + [self.onehot(df, c) for c in CATEGORICAL]
        if interactions:
            sku = self.onehot(df, "sku")
            inter = np.column_stack([self.scaled(df, c) for c in SKU_INTERACTIONS])
            parts.append((sku[:, :, None] * inter[:, None, :]).reshape(len(df), -1))
        return np.hstack(parts)


@dataclass
class GroupModel:
    group: str
    encoder: Encoder
    lasso: LassoCV
    mlp: MLPRegressor
    y_mean: float
    y_std: float
    y_max: float
    baseline: dict[str, float]
    n_train: int
    trained_at: float
    lasso_weight: float = 0.5

    def predict(self, df: pd.DataFrame) -> pd.DataFrame:
        """Forecasts (units) of every member, the ensemble and the baseline for ``df``'s rows."""
        x_lasso = self.encoder.transform(df, interactions=True)
        x_mlp = self.encoder.transform(df, interactions=False)
        # at most 1.5 x the group's largest train week (log1p scale): a guard, not a model
        top = self.y_max + np.log(1.5)
        lasso = np.expm1(np.clip(self.lasso.predict(x_lasso), 0, top))
        mlp = np.expm1(np.clip(self.mlp.predict(x_mlp) * self.y_std + self.y_mean, 0, top))
        # a series new since training has no train mean: the mean known at its forecast origin
        fallback = np.expm1(df["expmean"].to_numpy(float))
        baseline = df["series"].map(self.baseline).to_numpy(float)
        baseline = np.where(np.isnan(baseline), fallback, baseline)
        ensemble = self.lasso_weight * lasso + (1 - self.lasso_weight) * mlp
        return pd.DataFrame({"forecast": ensemble, "lasso": lasso, "mlp": mlp, "baseline": baseline}, index=df.index)


def _members(train: pd.DataFrame, seed: int) -> tuple[Encoder, LassoCV, MLPRegressor, float, float, float]:
    train = train.sort_values(["week_start", "series"], kind="stable")
    enc = Encoder().fit(train)
    y = np.log1p(train[TARGET].to_numpy(float))
    x_lasso = enc.transform(train, interactions=True)
    x_mlp = enc.transform(train, interactions=False)
    n_splits = 3 if len(train) >= 60 else 2
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
    mlp = MLPRegressor(
        hidden_layer_sizes=(32, 16),
        alpha=1e-2,
        learning_rate_init=3e-3,
        batch_size=min(64, n_fit),
        early_stopping=early,
        validation_fraction=0.15,
        n_iter_no_change=15,
        max_iter=2000,
        random_state=seed,
    ).fit(x_mlp, (y - y_mean) / y_std)
    return enc, lasso, mlp, y_mean, y_std, float(y.max())


def fit_group(group: str, train: pd.DataFrame, seed: int, trained_at: float, val_weeks: int = 8) -> GroupModel:
    """Both members on the group's train rows. The ensemble weight of the LASSO (0, 0.25, ..,
    1) is the one with the lowest MAPE on the last ``val_weeks`` train weeks when the members
    are fit on the weeks before them (0.5 when there is too little history); then both members
    are refit on every train row."""
    baseline = train.groupby("series")[TARGET].mean().to_dict()
    weeks = sorted(train["week_start"].unique())
    weight = 0.5
    if len(weeks) >= 4 * val_weeks:
        cut = weeks[-val_weeks]
        fit, val = train[train["week_start"] < cut], train[train["week_start"] >= cut]
        probe = GroupModel(group, *_members(fit, seed), {}, len(fit), trained_at)
        pred = probe.predict(val)
        actual = val[TARGET].to_numpy(float)
        scores = {w: mape(actual, w * pred["lasso"] + (1 - w) * pred["mlp"]) for w in WEIGHTS}
        weight = min(scores, key=lambda w: (round(scores[w], 4), abs(w - 0.5)))
    model = GroupModel(group, *_members(train, seed), baseline, len(train), trained_at, weight)
    return model
