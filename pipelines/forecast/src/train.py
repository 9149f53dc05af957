"""Step 2, train: the backtest and the models. At every forecast origin of prepare's
``meta.json`` (oldest first), on the rows before that origin only: the global LightGBM member
and, per group (region x store format x product velocity), the LASSO and the MLP; each origin
forecasts its horizon. An origin's blend weights (per group, steadied by those of all groups)
are chosen on the previous origin's horizon, which is its validation window; the first origin
only validates.

``--groups`` (default ``all``; comma-separated group names) fits the per-group members and
weights of the listed groups only, at every origin; the global LightGBM still learns from every
row of the lake (it is one model per run). A listed group that is not in the data is named on
stderr and left out (the weekly batch lists both velocities of a new region and format before
the data says which it has); none of them in the data is an error (exit 2). A group's blend
weights are steadied by those of the groups trained with it.

Writes ``<out>/<group>.pkl`` per group and ``lgbm.txt`` / ``lgbm.json`` (the models of the
last origin, the holdout's, which score uses; a group's pickle and the run's booster are the
group's whole model, registered as a model version's ``model.pkl``, ``lgbm.txt`` and
``lgbm.json``), ``backtest.csv`` (every backtest origin's horizon: each member, the blend, the
old blend, both baselines, the actual, the MASE scale; ``role`` validation for the first
origin, which only validates, else backtest; with a single origin, too short a history for
more, it is the backtest and the weights are the defaults) and ``manifest.json``
(``trained_at`` in epoch seconds, ``groups``: the groups asked for, ``all`` or their sorted
names; the origins, per-group row counts, weights, the LASSO's alpha, the MLP's iterations,
seconds; ``not_fitted``: the groups with too few train rows at the holdout's origin for their
members (``models.MIN_TRAIN_ROWS``), each with a one-line reason: they get no model, the other
groups are trained, and scoring serves them by their baseline). Logs ``<group>.trained_at`` and
the train row counts of the groups trained.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
from backtest import Booster, Data
from forecast_lib import log_metrics, now_epoch, write_json
from models import (
    FORECASTS,
    MEMBERS,
    choose_old_weight,
    choose_weights,
    fit_group,
    forecast,
    group_weights,
    too_few_rows,
)
from threadpoolctl import threadpool_limits


def _fit(args: tuple[str, pd.DataFrame, int, float, str]):
    group, rows, seed, trained_at, origin = args
    t0 = time.monotonic()
    with threadpool_limits(limits=1):
        model = fit_group(group, rows, seed, trained_at, origin)
    return model, round(time.monotonic() - t0, 2)


def parse_groups(text: str) -> list[str] | None:
    """``all`` (any case) -> None (every group); else the comma-separated names, sorted."""
    if text.strip().lower() == "all":
        return None
    return sorted({g.strip() for g in text.split(",") if g.strip()})


def known_groups(text: str, present: set[str]) -> tuple[list[str] | None, str | None]:
    """The groups ``--groups`` asks for that the data has (None: every group), or the problem."""
    groups = parse_groups(text)
    if groups is None:
        return None, None
    if not groups:
        return None, f"--groups names no group: {text!r}"
    unknown = sorted(set(groups) - present)
    if unknown:
        print(f"train: group(s) not in the data, left out: {', '.join(unknown)}", file=sys.stderr)
    groups = [g for g in groups if g in present]
    return (groups, None) if groups else (None, "none of the listed groups is in the data")


def run_backtest(data: Data, seed: int, jobs: int, trained_at: float, log=print, groups: list[str] | None = None):
    """Fit every origin in turn; returns the last origin's group models and booster, every
    origin's forecasts of its horizon and per-origin notes. ``groups``: the groups whose
    members are fit (None: every group); the booster learns from every row either way."""
    wanted = None if groups is None else set(groups)
    origins = data.origins
    previous: pd.DataFrame | None = None
    previous_has: dict[str, bool] = {}
    frames, notes = [], []
    models: dict = {}
    booster = None
    pool = ProcessPoolExecutor(max_workers=jobs) if jobs > 1 else None
    try:
        for k, origin in enumerate(origins):
            t0 = time.monotonic()
            train = data.train_rows(origin)
            booster = Booster.fit(data, origin, seed, threads=1)
            t_lgbm = time.monotonic() - t0
            work = [
                (g, rows, seed, trained_at, origin)
                for g, rows in train.groupby("group", sort=True)
                if wanted is None or g in wanted
            ]
            # a group too small for its members is not fitted at this origin: no model, a reason
            not_fitted = {w[0]: too_few_rows(len(w[1])) for w in work if too_few_rows(len(w[1]))}
            work = [w for w in work if w[0] not in not_fitted]
            fitted = list(pool.map(_fit, work)) if pool else [_fit(w) for w in work]
            models = {m.group: m for m, _ in fitted}
            seconds = {m.group: s for m, s in fitted}
            if previous is not None:  # the validation window: the previous origin's horizon
                # a member the window did not have (no LightGBM on too short a history) weighs 0
                members = tuple(m for m in MEMBERS if previous_has.get(m))
                pooled = choose_weights(previous, members)
                for group, model in models.items():
                    model.weights = group_weights(previous, group, pooled, members)
                    model.lasso_weight = choose_old_weight(previous[previous["group"] == group])
            horizon = data.horizon_rows(origin)
            pred = forecast(models, booster, data, horizon, origin)
            role = "validation" if k == 0 and len(origins) > 1 else "backtest"
            frames.append(pred.assign(role=role))
            previous = pred
            previous_has = {m: m != "lgbm" or booster is not None for m in MEMBERS}
            notes.append(
                {
                    "origin": origin,
                    "role": role,
                    "lgbm": booster is not None,
                    "train_rows": len(train),
                    "lgbm_seconds": round(t_lgbm, 2),
                    "seconds": round(time.monotonic() - t0, 2),
                    "group_seconds": seconds,
                    "not_fitted": not_fitted,
                }
            )
            log(f"train: origin {origin} ({notes[-1]['role']}): {len(models)} groups, {notes[-1]['seconds']:.1f}s")
    finally:
        if pool:
            pool.shutdown()
    backtest = pd.concat(frames) if frames else pd.DataFrame(columns=["origin", *FORECASTS])
    return models, booster, backtest, notes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--features", type=Path, required=True, help="prepare's output folder")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--jobs", type=int, default=1, help="groups trained in parallel (processes)")
    p.add_argument("--groups", default="all", help='"all" or comma-separated groups (<region>.<format>.<velocity>)')
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    t0 = time.monotonic()
    data = Data(a.features)
    if not (data.table["split"] == "train").any():
        print("train: no train rows", file=sys.stderr)
        return 2
    groups, problem = known_groups(a.groups, set(data.table["group"]))
    if problem:
        print(f"train: {problem}", file=sys.stderr)
        return 2
    a.out.mkdir(parents=True, exist_ok=True)
    trained_at = now_epoch()
    # one thread per process for BLAS and OpenMP: on a shared machine their spinning threads
    # made training 3x slower; --jobs trains groups in parallel processes instead
    with threadpool_limits(limits=1):
        models, booster, backtest, notes = run_backtest(data, a.seed, a.jobs, trained_at, groups=groups)
    not_fitted = notes[-1]["not_fitted"] if notes else {}
    for group, reason in sorted(not_fitted.items()):
        print(f"train: {group} not fitted: {reason}", file=sys.stderr)
    if not models and not not_fitted:
        print("train: no train rows", file=sys.stderr)
        return 2
    untrained = sorted(set(groups or ()) - set(models) - set(not_fitted))
    if untrained:
        print(f"train: no train rows at the holdout's origin for: {', '.join(untrained)}", file=sys.stderr)
    for stale in a.out.glob("*.pkl"):  # a model of another run's groups must not be scored with this run's
        if stale.stem not in models:
            stale.unlink()
    # the velocity classes, decided once: the SKUs of each group at training go with its model,
    # and scoring serves a SKU by this model only when it is one of them (a new SKU: the baseline)
    skus = data.table.groupby("group")["sku"].unique()
    for group, model in models.items():
        model.skus = sorted(str(k) for k in skus.get(group, []))
        with open(a.out / f"{group}.pkl", "wb") as f:
            pickle.dump(model, f, protocol=pickle.HIGHEST_PROTOCOL)
    for stale in ("lgbm.txt", "lgbm.json"):
        (a.out / stale).unlink(missing_ok=True)
    if booster is not None:
        booster.save(a.out)
    backtest.to_csv(a.out / "backtest.csv", index=False, float_format="%.6g")
    last = notes[-1]
    manifest = [
        {
            "group": g,
            "file": f"{g}.pkl",
            "origin": m.origin,
            "n_train": m.n_train,
            "lasso_alpha": float(m.lasso.alpha_),
            "lasso_nonzero": int((m.lasso.coef_ != 0).sum()),
            "mlp_iterations": int(m.mlp.n_iter_),
            "lasso_weight": m.lasso_weight,
            "weights": m.weights,
            "seconds": last["group_seconds"][g],
        }
        for g, m in sorted(models.items())
    ]
    seconds = round(time.monotonic() - t0, 2)
    write_json(
        a.out / "manifest.json",
        {
            "trained_at": trained_at,
            "seed": a.seed,
            "groups": "all" if groups is None else groups,
            "origins": notes,
            "models": manifest,
            # groups too small for their members at the holdout's origin: no model, the baseline
            "not_fitted": [{"group": g, "reason": r} for g, r in sorted(not_fitted.items())],
            "seconds": seconds,
        },
    )
    metrics = {f"{m['group']}.trained_at": trained_at for m in manifest}
    metrics.update({f"{m['group']}.n_train": m["n_train"] for m in manifest})
    metrics["models_trained"] = len(manifest)
    metrics["groups_not_fitted"] = len(not_fitted)
    metrics["train_seconds"] = seconds
    listed = "all" if groups is None else ",".join(groups)[:500]  # MLflow's limit on a param's length
    params = {"seed": a.seed, "models": len(manifest), "origins": len(notes), "groups": listed}
    log_metrics(metrics, run_name="train", params=params)
    print(f"train: {len(manifest)} models, {len(notes)} origins in {seconds:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
