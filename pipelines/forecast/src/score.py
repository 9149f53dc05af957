"""Step 3, score: the models of the holdout's origin forecast the ``holdout`` weeks (actuals
known) from the holdout's origin, and the ``future`` weeks (no actuals yet) from the week
after the lake, each with the features known at its origin.

Writes ``<out>/forecasts.csv``: group, series, store_id, sku, week_start, split, forecast (the
blend), lasso, mlp, lgbm, snaive (the seasonal naive), old_blend, baseline (the historical
average), actual (empty when not known), scale (the MASE scale), origin. The file is for
people (the run's report links it): a text cell that starts like a formula is written behind a
single quote (forecast_lib.neutralise_formulas), numbers as they are.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from backtest import Booster, Data
from forecast_lib import neutralise_formulas
from models import FORECASTS, forecast


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--features", type=Path, required=True, help="prepare's output folder")
    p.add_argument("--models", type=Path, required=True, help="train's output folder")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    t0 = time.monotonic()
    data = Data(a.features)
    groups = sorted(data.table.loc[data.table["split"].isin(["holdout", "future"]), "group"].unique())
    models, missing = {}, []
    for group in groups:
        path = a.models / f"{group}.pkl"
        if not path.exists():
            missing.append(group)
            continue
        with open(path, "rb") as f:
            models[group] = pickle.load(f)
    if not models:  # one line: nothing is scored, and why
        print(f"score: nothing to score: no model in {a.models} for any of the {len(missing)} group(s): "
              f"{', '.join(missing)}", file=sys.stderr)  # fmt: skip
        return 2
    if missing:
        print(f"score: no model for {len(missing)} group(s): {', '.join(missing)}", file=sys.stderr)
    booster = Booster.load(a.models) if (a.models / "lgbm.txt").exists() else None
    holdout, future = data.meta["holdout_from"], data.meta["future_from"]
    frames = [
        forecast(models, booster, data, data.horizon_rows(holdout), holdout),
        forecast(models, booster, data, data.horizon_rows(future, data.meta["future_weeks"]), future),
    ]
    out = pd.concat([f for f in frames if len(f)]).sort_values(["group", "series", "week_start"])
    for col in FORECASTS:
        out[col] = np.round(out[col], 3)
    a.out.mkdir(parents=True, exist_ok=True)
    # for people (the report links it): a text cell never runs as a formula in a spreadsheet
    neutralise_formulas(out).to_csv(a.out / "forecasts.csv", index=False, float_format="%.6g")
    counts = out.groupby("split").size().to_dict()
    print(f"score: {counts} rows, {out['group'].nunique()} groups, {time.monotonic() - t0:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
