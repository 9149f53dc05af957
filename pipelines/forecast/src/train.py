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

The work is in three parts (pergroup.py): the LightGBM member at every origin, once per batch;
each group's fit, one group at a time, never past a group's failure; the blend of them. This
command does all three; the pipeline runs them as three steps (``train_global.py``; the
parallel step ``train_groups.py``, one mini-batch per group; then this command with
``--boosters`` and ``--fitted``, which fits nothing and writes the same folder).

Writes ``<out>/<group>.pkl`` per group and ``lgbm.txt`` / ``lgbm.json`` (the models of the
last origin, the holdout's, which score uses), ``<out>/mlflow/<group>/`` per group (the group's
model in MLflow format, mlflow_model.py: its pickle and the run's booster inside it, the code it
runs, a signature and an input example; the register step registers this folder as the model
version, and it loads with MLflow alone), ``backtest.csv`` (every backtest origin's horizon:
each member, the blend, the old blend, both baselines, the actual, the MASE scale; ``role`` validation for the first
origin, which only validates, else backtest; with a single origin, too short a history for
more, it is the backtest and the weights are the defaults) and ``manifest.json``
(``trained_at`` in epoch seconds, ``groups``: the groups asked for, ``all`` or their sorted
names; the origins, per-group row counts, weights, the LASSO's alpha, the MLP's iterations,
seconds, ``mlflow``: the MLflow model's folder, save seconds and bytes; ``not_fitted``: the
groups with too few train rows at the holdout's origin for their members
(``models.MIN_TRAIN_ROWS``), each with a one-line reason: they get no model, the other groups
are trained, and scoring serves them by their baseline); ``failed``: the groups whose fit
raised, or whose MLflow model's save did ("its MLflow model was not saved (<type>: <line>)", its
partial folder removed), each with a one-line reason (no model, no pickle: nothing of it is
registered; every other group is trained and saved)). Logs
``<group>.trained_at`` and the train row counts of the groups trained.
"""

from __future__ import annotations

import argparse
import pickle
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import mlflow_model
import pandas as pd
from backtest import Booster, Data
from forecast_lib import log_metrics, now_epoch, write_json
from models import (
    DEFAULT_WEIGHTS,
    FORECASTS,
    MEMBERS,
    GroupModel,
    blend_forecasts,
    choose_old_weight,
    choose_weights,
    group_weights,
)
from pergroup import GroupFit, fit_boosters, fit_one, load_boosters, load_fits, save_boosters, work_groups


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


def check_data(data: Data, groups_text: str) -> tuple[list[str] | None, str | None]:
    """The groups to train (None: every group), or why the step cannot train (exit 2)."""
    if not (data.table["split"] == "train").any():
        return None, "no train rows"
    return known_groups(groups_text, set(data.table["group"]))


@dataclass
class Blend:
    """A group's blend weights at one origin (``blend`` as a GroupModel's)."""

    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    lasso_weight: float = 0.5
    blend = GroupModel.blend


def blend_all(data: Data, fits: dict[str, GroupFit], boosters: dict[str, Booster | None], lgbm_notes: list[dict]):
    """Every origin in turn: each fitted group's blend weights, chosen on the previous origin's
    horizon (its own rows, steadied by every group's), and the blend of its members' forecasts.
    Returns the holdout origin's models (weights set), every origin's forecasts and notes."""
    by_origin = {n["origin"]: n for n in lgbm_notes}
    usable = [f for _, f in sorted(fits.items()) if f.outcome != "failed" and len(f.members)]
    previous: pd.DataFrame | None = None
    previous_has: dict[str, bool] = {}
    frames, notes = [], []
    blends: dict[str, Blend] = {}
    for k, origin in enumerate(data.origins):
        parts = [p for p in (f.members[f.members["origin"] == origin] for f in usable) if len(p)]
        members_k = pd.concat(parts) if parts else pd.DataFrame()
        fitted = [str(p["group"].iloc[0]) for p in parts]
        blends = {g: Blend() for g in fitted}
        if previous is not None and len(previous):  # the validation window: the previous origin's horizon
            # a member the window did not have (no LightGBM on too short a history) weighs 0
            members = tuple(m for m in MEMBERS if previous_has.get(m))
            pooled = choose_weights(previous, members)
            for g in fitted:
                mine = previous[previous["group"] == g]
                blends[g] = Blend(group_weights(previous, g, pooled, members), choose_old_weight(mine))
        pred = blend_forecasts(members_k, blends)
        role = "validation" if k == 0 and len(data.origins) > 1 else "backtest"
        frames.append(pred.assign(role=role))
        previous = pred
        previous_has = {m: m != "lgbm" or boosters.get(origin) is not None for m in MEMBERS}
        group_seconds = {g: f.notes[origin]["seconds"] for g, f in sorted(fits.items()) if origin in f.notes}
        note = by_origin.get(origin, {})
        notes.append(
            {
                "origin": origin,
                "role": role,
                "lgbm": boosters.get(origin) is not None,
                "train_rows": note.get("train_rows", 0),
                "lgbm_seconds": note.get("lgbm_seconds", 0.0),
                "seconds": round(note.get("lgbm_seconds", 0.0) + sum(group_seconds.values()), 2),
                "group_seconds": {g: group_seconds[g] for g in fitted},
                "not_fitted": {
                    g: f.notes[origin]["not_fitted"]
                    for g, f in sorted(fits.items())
                    if origin in f.notes and f.notes[origin]["not_fitted"]
                },
            }
        )
    models = {}
    for f in usable:
        if f.outcome == "ok" and f.model is not None and f.group in blends:
            f.model.weights, f.model.lasso_weight = blends[f.group].weights, blends[f.group].lasso_weight
            models[f.group] = f.model
    backtest = pd.concat(frames) if frames else pd.DataFrame(columns=["origin", *FORECASTS])
    return models, backtest, notes


_POOL: dict = {}


def _pool_init(features: str, boosters: str, seed: int, trained_at: float) -> None:
    _POOL.update(data=Data(Path(features)), boosters=load_boosters(Path(boosters))[0], seed=seed, at=trained_at)


def _pool_fit(group: str) -> GroupFit:
    return fit_one(_POOL["data"], group, _POOL["boosters"], _POOL["seed"], _POOL["at"])


def fit_all(data: Data, features: Path, groups: list[str], boosters, seed: int, trained_at: float, jobs: int):
    """Every group's ``fit_one``, in turn or in ``jobs`` processes (each loads the data once)."""
    if jobs <= 1 or len(groups) <= 1:
        return {g: fit_one(data, g, boosters, seed, trained_at) for g in groups}
    with tempfile.TemporaryDirectory() as tmp:
        save_boosters(
            Path(tmp), boosters, {"origins": [{"origin": o, "lgbm": b is not None} for o, b in boosters.items()]}
        )
        with ProcessPoolExecutor(jobs, initializer=_pool_init, initargs=(str(features), tmp, seed, trained_at)) as pool:
            return {f.group: f for f in pool.map(_pool_fit, groups)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--features", type=Path, required=True, help="prepare's output folder")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--jobs", type=int, default=1, help="groups trained in parallel (processes)")
    p.add_argument("--groups", default="all", help='"all" or comma-separated groups (<region>.<format>.<velocity>)')
    p.add_argument("--boosters", type=Path, help="train_global.py's boosters (with --fitted: fit nothing)")
    p.add_argument("--fitted", type=Path, help="the parallel step's per-group fits")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    t0 = time.monotonic()
    data = Data(a.features)
    if a.fitted is not None:
        if a.boosters is None:
            p.error("--fitted needs --boosters")
        boosters, meta = load_boosters(a.boosters)
        groups, trained_at, seed, lgbm_notes = meta["groups"], meta["trained_at"], meta["seed"], meta["origins"]
        groups = None if groups == "all" else groups
        fits = load_fits(a.fitted, meta["work"])
    else:
        groups, problem = check_data(data, a.groups)
        if problem:
            print(f"train: {problem}", file=sys.stderr)
            return 2
        trained_at, seed = now_epoch(), a.seed
        boosters, lgbm_notes = fit_boosters(data, seed)
        fits = fit_all(data, a.features, work_groups(data, groups), boosters, seed, trained_at, a.jobs)
    for f in fits.values():
        print(f"train: {f.group}: {f.outcome} in {f.seconds:.1f}s" + (f" ({f.reason})" if f.reason else ""), flush=True)
    return write_models(a.out, data, fits, boosters, lgbm_notes, groups, trained_at, seed, t0)


def save_mlflow_models(
    folder: Path, data: Data, models: dict[str, GroupModel], booster: Booster | None
) -> tuple[dict[str, dict], dict[str, str]]:
    """Each group's model in MLflow format (``<folder>/<group>/``, mlflow_model.py), its input example
    the first of its holdout rows: per group saved, the seconds it took and its bytes; per group whose
    save raised, a one-line reason (its partial folder removed: every other group is saved). A folder
    of a group this run has no model for is removed (it must not be registered with this run's)."""
    if folder.exists():
        for stale in folder.iterdir():
            if stale.name not in models:
                _remove(stale)
    origin = data.origins[-1] if data.origins else data.meta["holdout_from"]
    saved: dict[str, dict] = {}
    failed: dict[str, str] = {}
    for group, model in sorted(models.items()):
        t0 = time.monotonic()
        try:
            rows = data.horizon_rows(origin, group=group)
            mlflow_model.save(folder / group, model, booster, mlflow_model.model_frame(data, rows, origin))
        except Exception as e:  # one group's save costs that group only (its whole text: the node's log)
            print(f"train: {group}: its MLflow model was not saved: {type(e).__name__}: {e}", file=sys.stderr)
            failed[group] = (
                f"its MLflow model was not saved ({mlflow_model.public_error(e, folder / group, f'mlflow/{group}')})"
            )
            _remove(folder / group)
            continue
        size = sum(f.stat().st_size for f in (folder / group).rglob("*") if f.is_file())
        saved[group] = {"seconds": round(time.monotonic() - t0, 3), "bytes": size}
    return saved, failed


def _remove(path: Path) -> None:
    """``path`` gone, whatever it is (a link is removed, never what it points to)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def write_models(out: Path, data: Data, fits, boosters, lgbm_notes, groups, trained_at, seed, t0) -> int:
    """The blend (``blend_all``) and the models folder: pickles, booster, backtest, manifest."""
    models, backtest, notes = blend_all(data, fits, boosters, lgbm_notes)
    failed = {g: f.reason for g, f in sorted(fits.items()) if f.outcome == "failed"}
    not_fitted = notes[-1]["not_fitted"] if notes else {}
    for group, reason in sorted(not_fitted.items()):
        print(f"train: {group} not fitted: {reason}", file=sys.stderr)
    for group, reason in failed.items():
        print(f"train: {group} failed: {reason}", file=sys.stderr)
    if not models and not not_fitted and not failed:
        print("train: no train rows", file=sys.stderr)
        return 2
    untrained = sorted(set(groups or ()) - set(models) - set(not_fitted) - set(failed))
    if untrained:
        print(f"train: no train rows at the holdout's origin for: {', '.join(untrained)}", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    # the velocity classes, decided once: the SKUs of each group at training go with its model,
    # and scoring serves a SKU by this model only when it is one of them (a new SKU: the baseline)
    skus = data.table.groupby("group")["sku"].unique()
    for group, model in models.items():
        model.skus = sorted(str(k) for k in skus.get(group, []))
    booster = boosters.get(data.origins[-1]) if data.origins else None
    # the model version the register step registers: a group whose MLflow model is not saved fails
    # alone (no model, no pickle: it is not registered; its baseline serves it), listed with its reason
    saved, unsaved = save_mlflow_models(out / "mlflow", data, models, booster)
    for group, reason in unsaved.items():
        print(f"train: {group} failed: {reason}", file=sys.stderr)
        failed[group] = reason
        del models[group]
    for stale in out.glob("*.pkl"):  # a model of another run's groups must not be scored with this run's
        if stale.stem not in models:
            stale.unlink()
    for group, model in models.items():
        with open(out / f"{group}.pkl", "wb") as f:
            pickle.dump(model, f, protocol=pickle.HIGHEST_PROTOCOL)
    for stale in ("lgbm.txt", "lgbm.json"):
        (out / stale).unlink(missing_ok=True)
    if booster is not None:
        booster.save(out)
    backtest.to_csv(out / "backtest.csv", index=False, float_format="%.6g")
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
            "mlflow": {"folder": f"mlflow/{g}", **saved[g]},
        }
        for g, m in sorted(models.items())
    ]
    seconds = round(time.monotonic() - t0, 2)
    write_json(
        out / "manifest.json",
        {
            "trained_at": trained_at,
            "seed": seed,
            "groups": "all" if groups is None else groups,
            "origins": notes,
            "models": manifest,
            # groups too small for their members at the holdout's origin: no model, the baseline
            "not_fitted": [{"group": g, "reason": r} for g, r in sorted(not_fitted.items())],
            # groups whose fit raised: no model, every other group trained (the batch summary lists them)
            "failed": [{"group": g, "reason": r} for g, r in sorted(failed.items())],
            "seconds": seconds,
        },
    )
    metrics = {f"{m['group']}.trained_at": trained_at for m in manifest}
    metrics.update({f"{m['group']}.n_train": m["n_train"] for m in manifest})
    metrics["models_trained"] = len(manifest)
    metrics["groups_not_fitted"] = len(not_fitted)
    metrics["groups_failed"] = len(failed)
    metrics["train_seconds"] = seconds
    listed = "all" if groups is None else ",".join(groups)[:500]  # MLflow's limit on a param's length
    params = {"seed": seed, "models": len(manifest), "origins": len(notes), "groups": listed}
    log_metrics(metrics, run_name="train", params=params)
    print(f"train: {len(manifest)} models, {len(notes)} origins in {seconds:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
