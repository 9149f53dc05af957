"""Step 2, train: one ensemble model (LASSO + MLP, see models.py) per group (region x store
format x product velocity) on the prepared table's ``train`` rows.

Writes ``<out>/<group>.pkl`` per group and ``<out>/manifest.json`` (``trained_at`` in epoch
seconds, per-group row counts, the LASSO's alpha, the MLP's iterations). Logs
``<group>.trained_at`` and the train row counts.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
from forecast_lib import log_metrics, write_json
from models import fit_group


def _fit(args: tuple[str, pd.DataFrame, int, float, Path]) -> dict:
    group, rows, seed, trained_at, out = args
    t0 = time.monotonic()
    model = fit_group(group, rows, seed, trained_at)
    with open(out / f"{group}.pkl", "wb") as f:
        pickle.dump(model, f, protocol=pickle.HIGHEST_PROTOCOL)
    return {
        "group": group,
        "file": f"{group}.pkl",
        "n_train": model.n_train,
        "n_series": int(rows["series"].nunique()),
        "lasso_alpha": float(model.lasso.alpha_),
        "lasso_nonzero": int((model.lasso.coef_ != 0).sum()),
        "mlp_iterations": int(model.mlp.n_iter_),
        "lasso_weight": model.lasso_weight,
        "seconds": round(time.monotonic() - t0, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--features", type=Path, required=True, help="prepare's output folder")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--jobs", type=int, default=1, help="groups trained in parallel (processes)")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    t0 = time.monotonic()
    table = pd.read_csv(a.features / "features.csv", dtype={"store_id": str, "sku": str, "zip_code": str})
    train = table[table["split"] == "train"]
    a.out.mkdir(parents=True, exist_ok=True)
    trained_at = time.time()
    work = [(g, rows, a.seed, trained_at, a.out) for g, rows in train.groupby("group", sort=True)]
    if not work:
        print("train: no train rows", file=sys.stderr)
        return 2
    if a.jobs > 1:
        with ProcessPoolExecutor(max_workers=a.jobs) as pool:
            models = list(pool.map(_fit, work))
    else:
        models = [_fit(w) for w in work]
    write_json(a.out / "manifest.json", {"trained_at": trained_at, "seed": a.seed, "models": models})
    metrics = {f"{m['group']}.trained_at": trained_at for m in models}
    metrics.update({f"{m['group']}.n_train": m["n_train"] for m in models})
    metrics["models_trained"] = len(models)
    log_metrics(metrics, run_name="train", params={"seed": a.seed, "models": len(models)})
    print(f"train: {len(models)} models in {time.monotonic() - t0:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
