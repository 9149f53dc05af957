"""A group's model as an MLflow ``pyfunc``: what a registered version loads with MLflow alone.

This module travels inside every MLflow model (``code/``, with ``models.py``, ``backtest.py`` and
``forecast_lib.py``: the code the model runs), so ``mlflow.pyfunc.load_model(<version folder>)``
needs neither this repo nor its ``sys.path``; the python model pickled beside it names this
module, never the repo's import path. Its artifact ``model/`` holds ``model.pkl`` (the
:class:`models.GroupModel`: the encoder, the LASSO and the MLP, the blend's weights and the
velocity classes, the SKUs the group had at training) and, when the run had one, the LightGBM
booster (``lgbm.txt``, ``lgbm.json``).

``predict`` takes the group's rows with what is known at their origin (:data:`INPUT`, built by
``mlflow_model.model_frame`` from prepare's output) and answers, per row, ``forecast`` (the blend,
bounded: the number the score step serves) and each member, through the very functions the score
step uses (``models.forecast``), so both give the same numbers.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from backtest import LGBM_NUMERIC, Booster
from forecast_lib import NUMERIC
from models import GroupModel, forecast

with warnings.catch_warnings():  # MLflow warns about its own type hints on import (the steps run with -W error)
    warnings.simplefilter("ignore")
    import mlflow.pyfunc

#: the identifying columns of an input row (text)
IDS = ("series", "store_id", "sku", "region", "store_format", "velocity", "week_start")
#: what a row needs beside the features: the SKU's pooled seasonal naive, the row's upper bound, and
#: the LightGBM member's features (``lgbm_<feature>``) and log offset, each known at the row's origin
KNOWN = ("pooled_seasonal", "upper", *(f"lgbm_{c}" for c in LGBM_NUMERIC), "lgbm_offset")
#: the input's columns, in order: text, then numbers
INPUT = (*IDS, *NUMERIC, *KNOWN)
#: the output's columns
OUTPUT = ("store_id", "sku", "week_start", "forecast", "lasso", "mlp", "lgbm", "seasonal", "new_sku")


class _Known:
    """What ``models.forecast`` asks of prepare's data, answered from the input's own columns."""

    def baselines(self, rows: pd.DataFrame, origin: str) -> pd.DataFrame:
        empty = np.full(len(rows), np.nan)
        return pd.DataFrame({"baseline": empty, "snaive": empty, "scale": empty}, index=rows.index)

    def pooled_seasonal(self, rows: pd.DataFrame, origin: str) -> np.ndarray:
        return rows["pooled_seasonal"].to_numpy(float)

    def upper_bound(self, rows: pd.DataFrame, origin: str) -> np.ndarray:
        return rows["upper"].to_numpy(float)

    def lgbm_features(self, rows: pd.DataFrame, origin: str) -> tuple[pd.DataFrame, np.ndarray]:
        x = pd.DataFrame({c: rows[f"lgbm_{c}"].to_numpy(float) for c in LGBM_NUMERIC}, index=rows.index)
        return x, rows["lgbm_offset"].to_numpy(float)


class GroupForecaster(mlflow.pyfunc.PythonModel):
    """The pyfunc: its state is read from the model's artifact ``model`` on load."""

    def load_context(self, context: Any) -> None:
        import pickle

        folder = Path(context.artifacts["model"])
        with open(folder / "model.pkl", "rb") as f:
            model = pickle.load(f)
        if not isinstance(model, GroupModel):
            raise TypeError(f"model.pkl holds a {type(model).__name__}, not a group model")
        self.model = model
        self.booster = Booster.load(folder) if (folder / "lgbm.txt").is_file() else None

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        return predict_rows(self.model, self.booster, model_input)


def predict_rows(model: GroupModel, booster: Booster | None, frame: pd.DataFrame) -> pd.DataFrame:
    """Each row of ``frame`` (:data:`INPUT`) forecast by ``model`` and ``booster``, in :data:`OUTPUT`'s
    columns and the input's order; ``new_sku``: the SKU is not one of the model's velocity classes
    (the score step serves such a row by the group's baseline)."""
    missing = [c for c in INPUT if c not in frame.columns]
    if missing:
        raise ValueError(f"the input lacks {len(missing)} column(s): {', '.join(missing[:8])}")
    rows = frame.reset_index(drop=True).assign(group=model.group, split="future", units=np.nan)
    if rows.empty:
        return pd.DataFrame({c: pd.Series(dtype=bool if c == "new_sku" else object) for c in OUTPUT})
    pred = forecast({model.group: model}, booster, _Known(), rows, "")
    out = pred[["store_id", "sku", "week_start", "forecast", "lasso", "mlp", "lgbm", "seasonal"]].copy()
    skus = getattr(model, "skus", None)
    out["new_sku"] = ~out["sku"].isin(skus) if skus is not None else False
    return out.reset_index(drop=True)
