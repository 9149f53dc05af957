"""Step 4, evaluate: per model (group) metrics on the holdout weeks, logged to MLflow and to
FORECASTOPS_METRICS_FILE as ``<group>.<metric>``, and written to ``<out>/metrics.csv``.

* ``mape``: mean |forecast - actual| / actual over the holdout rows whose actual is > 0
  (rows with actual 0 are left out of MAPE and measured by ``rmse_0``); the ensemble's.
* ``rmse_0``: RMSE over the holdout rows whose actual is 0 (absent when there are none).
* ``rmse_all``: RMSE over every holdout row.
* ``baseline_mape``: the same MAPE for the historical average (series mean of its train weeks).
* ``mape_reduction``: (baseline_mape - mape) / baseline_mape (0.4 = 40% lower than the baseline).
* ``lasso_mape``, ``mlp_mape``: the members'; ``trained_at``: the training time, epoch seconds.

The ``overall`` row pools every holdout row of every model. Only the ensemble's metric is
named ``mape`` (the health gates look for that leaf name).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import pandas as pd
from forecast_lib import log_metrics, mape, rmse, rmse_0

COLUMNS = [
    "model", "n_rows", "n_actual_pos", "mape", "rmse_0", "rmse_all", "baseline_mape", "baseline_rmse_0",
    "baseline_rmse_all", "mape_reduction", "lasso_mape", "mlp_mape", "beats_baseline", "trained_at",
]  # fmt: skip
LOGGED = ("mape", "rmse_0", "rmse_all", "baseline_mape", "mape_reduction", "lasso_mape", "mlp_mape", "trained_at")


def measure(name: str, rows: pd.DataFrame, trained_at: float) -> dict:
    a = rows["actual"].to_numpy(float)
    m, b = mape(a, rows["forecast"]), mape(a, rows["baseline"])
    return {
        "model": name,
        "n_rows": len(rows),
        "n_actual_pos": int((a > 0).sum()),
        "mape": m,
        "rmse_0": rmse_0(a, rows["forecast"]),
        "rmse_all": rmse(a, rows["forecast"]),
        "baseline_mape": b,
        "baseline_rmse_0": rmse_0(a, rows["baseline"]),
        "baseline_rmse_all": rmse(a, rows["baseline"]),
        "mape_reduction": (b - m) / b if b and not math.isnan(b) and not math.isnan(m) else math.nan,
        "lasso_mape": mape(a, rows["lasso"]),
        "mlp_mape": mape(a, rows["mlp"]),
        "beats_baseline": bool(m < b) if not (math.isnan(m) or math.isnan(b)) else False,
        "trained_at": trained_at,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scores", type=Path, required=True, help="score's output folder")
    p.add_argument("--models", type=Path, required=True, help="train's output folder")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    fc = pd.read_csv(a.scores / "forecasts.csv", dtype={"store_id": str, "sku": str})
    trained_at = float(json.loads((a.models / "manifest.json").read_text())["trained_at"])
    hold = fc[fc["split"] == "holdout"]
    if hold.empty:
        print("evaluate: no holdout rows", file=sys.stderr)
        return 2
    table = [measure(g, rows, trained_at) for g, rows in hold.groupby("group", sort=True)]
    models = pd.DataFrame(table, columns=COLUMNS)
    overall = measure("overall", hold, trained_at)
    result = pd.concat([models, pd.DataFrame([overall], columns=COLUMNS)], ignore_index=True)
    a.out.mkdir(parents=True, exist_ok=True)
    result.to_csv(a.out / "metrics.csv", index=False, float_format="%.12g")
    metrics = {f"{r['model']}.{k}": r[k] for r in [*table, overall] for k in LOGGED}
    beating = int(models["beats_baseline"].sum())
    metrics.update(models=len(models), models_beating_baseline=beating)
    log_metrics(metrics, run_name="evaluate", params={"models": len(models)})
    print(result.to_string(index=False, float_format=lambda v: f"{v:.3f}"), flush=True)
    print(f"evaluate: {beating}/{len(models)} models beat the baseline on MAPE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
