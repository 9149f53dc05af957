"""Step 3, score: every group's model forecasts its ``holdout`` weeks (actuals known) and its
``future`` weeks (no actuals yet).

Writes ``<out>/forecasts.csv``: group, series, store_id, sku, week_start, split, forecast (the
ensemble), lasso, mlp, baseline, actual (empty when not known).
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from forecast_lib import TARGET


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--features", type=Path, required=True, help="prepare's output folder")
    p.add_argument("--models", type=Path, required=True, help="train's output folder")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    t0 = time.monotonic()
    table = pd.read_csv(a.features / "features.csv", dtype={"store_id": str, "sku": str, "zip_code": str})
    rows = table[table["split"].isin(["holdout", "future"])]
    frames, missing = [], []
    for group, part in rows.groupby("group", sort=True):
        path = a.models / f"{group}.pkl"
        if not path.exists():
            missing.append(group)
            continue
        with open(path, "rb") as f:
            model = pickle.load(f)
        pred = model.predict(part)
        frames.append(pd.concat([part[["group", "series", "store_id", "sku", "week_start", "split"]], pred], axis=1))
        frames[-1]["actual"] = part[TARGET]
    if missing:
        print(f"score: no model for {len(missing)} group(s): {', '.join(missing)}", file=sys.stderr)
    if not frames:
        print("score: nothing to score", file=sys.stderr)
        return 2
    out = pd.concat(frames).sort_values(["group", "series", "week_start"])
    for col in ("forecast", "lasso", "mlp", "baseline"):
        out[col] = np.round(out[col], 3)
    a.out.mkdir(parents=True, exist_ok=True)
    out.to_csv(a.out / "forecasts.csv", index=False)
    counts = out.groupby("split").size().to_dict()
    print(f"score: {counts} rows, {out['group'].nunique()} groups, {time.monotonic() - t0:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
