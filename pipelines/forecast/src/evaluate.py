"""Step 4, evaluate: the backtest's metrics per forecast origin, their mean and spread, per model
(group), per velocity and overall, for every model family next to both baselines and (given
``--oracle``) the generator's expected demand; logged to MLflow and to
FORECASTOPS_METRICS_FILE, and written to ``<out>/metrics.csv``, ``backtest_metrics.csv``,
``summary.csv`` and ``targets.json``.

The forecasts are train's ``backtest.csv`` (every backtest origin's horizon, forecast by the
models fit before that origin; without it, score's holdout rows as a single origin). Families:
``blend`` (the ``forecast`` column), ``old_blend`` (LASSO + MLP weighted on MAPE), ``lasso``,
``mlp``, ``lgbm``, ``seasonal`` (the seasonal naive pooled over the SKU's stores), ``baseline``
(the historical average), ``snaive`` (the seasonal naive) and ``oracle``.

Metrics, per origin (a model's are the mean over the origins, ``_sd`` their spread):

* ``mape``: mean |forecast - actual| / actual over the rows whose actual is > ``--mape-floor``
  (default 0: rows with actual 0 are left out of MAPE and measured by ``rmse_0``). For a
  target in currency, a floor (e.g. 10) keeps a few tiny actuals from dominating it.
* ``rmse_0``: RMSE over the rows whose actual is 0 (absent when there are none).
* ``rmse_all``: RMSE over every row.
* ``wape``: sum |forecast - actual| / sum actual; ``bias``: sum forecast / sum actual.
* ``mase``: mean |forecast - actual| / the series' mean absolute week-on-week change before
  the origin.
* ``baseline_mape`` and ``mape_reduction`` = (baseline_mape - mape) / baseline_mape against the
  historical average, as before; ``beats_baseline``: mape below baseline_mape by more than
  ``--baseline-margin`` (the health policy's rule).
* ``beats_baselines``: the blend's MAPE and WAPE below both baselines' at every origin.

metrics.csv keeps its columns (``mape``, ``rmse_0``, ``rmse_all``, ``baseline_*``,
``mape_reduction``, ``lasso_mape``, ``mlp_mape`` ... ``trained_at``; the blend's, now the mean
over the backtest origins) and adds ``<family>_<metric>`` columns. The ``overall`` row pools
every row of every model per origin. Only the blend's metric is named ``mape`` (the health
gates look for that leaf name).

``--max-mape`` (the MAPE gate: ``models_le_045`` counts the models within it) and
``--baseline-margin`` are the health policy's (pipelines/health_policy.json); the catalog passes
them on every run, and this step knows no threshold of its own.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from forecast_lib import bias, log_metrics, mape, mase, rmse, rmse_0, wape, write_json

COLUMNS = [
    "model", "n_rows", "n_actual_pos", "mape", "rmse_0", "rmse_all", "baseline_mape", "baseline_rmse_0",
    "baseline_rmse_all", "mape_reduction", "lasso_mape", "mlp_mape", "beats_baseline", "trained_at",
]  # fmt: skip
LOGGED = ("mape", "rmse_0", "rmse_all", "baseline_mape", "mape_reduction", "lasso_mape", "mlp_mape", "trained_at")
LOGGED_NEW = (
    "mape_sd", "wape", "bias", "mase", "baseline_wape", "baseline_bias", "snaive_mape", "snaive_wape",
    "lgbm_mape", "lgbm_wape", "seasonal_mape", "seasonal_wape", "oracle_mape", "oracle_wape", "clipped",
)  # fmt: skip
#: family -> forecast column
FAMILIES = {
    "blend": "forecast",
    "old_blend": "old_blend",
    "lasso": "lasso",
    "mlp": "mlp",
    "lgbm": "lgbm",
    "seasonal": "seasonal",
    "baseline": "baseline",
    "snaive": "snaive",
    "oracle": "oracle",
}
METRICS = ("mape", "wape", "bias", "mase", "rmse_0", "rmse_all")
#: the targets against the oracle (issue 14)
TARGET_WAPE = 1.10
TARGET_MAPE = 1.05
TARGET_BIAS = 0.05


def read_oracle(path: Path | None) -> pd.DataFrame | None:
    """The generator's expected demand (store_id, sku, week_start, expected_units): a file, or
    a folder holding ``expected_demand.csv``; None when not given or absent."""
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        path = path / "expected_demand.csv"
    if not path.is_file():
        print(f"evaluate: no oracle at {path}", file=sys.stderr)
        return None
    oracle = pd.read_csv(path, dtype={"store_id": str, "sku": str})
    return oracle[["store_id", "sku", "week_start", "expected_units"]]


def measure_rows(rows: pd.DataFrame, col: str, floor: float) -> dict[str, float]:
    a, f = rows["actual"].to_numpy(float), rows[col].to_numpy(float)
    if np.isnan(f).any():
        return dict.fromkeys(METRICS, math.nan)
    return {
        "mape": mape(a, f, floor),
        "wape": wape(a, f),
        "bias": bias(a, f),
        "mase": mase(a, f, rows["scale"].to_numpy(float)),
        "rmse_0": rmse_0(a, f),
        "rmse_all": rmse(a, f),
    }


def per_origin(bt: pd.DataFrame, floor: float) -> pd.DataFrame:
    """One row per (origin, model, family): the metrics of that origin's horizon rows; models
    are the groups, ``overall`` and ``overall.<velocity>``."""
    families = {k: v for k, v in FAMILIES.items() if v in bt.columns}
    out = []
    velocity = bt["group"].str.rsplit(".", n=1).str[-1]
    for origin, rows in bt.groupby("origin", sort=True):
        scopes = [(g, part) for g, part in rows.groupby("group", sort=True)]
        scopes.append(("overall", rows))
        scopes += [(f"overall.{v}", part) for v, part in rows.groupby(velocity.loc[rows.index], sort=True)]
        for model, part in scopes:
            n_pos = int((part["actual"] > floor).sum())
            for family, col in families.items():
                out.append({"origin": origin, "model": model, "family": family, "n_rows": len(part),
                            "n_actual_pos": n_pos, **measure_rows(part, col, floor)})  # fmt: skip
    return pd.DataFrame(out)


def summarise(long: pd.DataFrame, max_mape: float) -> pd.DataFrame:
    """Per origin and their mean, per velocity (all, fast, slow) and family: MAPE, WAPE,
    bias, MASE, the MAPE reduction against the historical average, and how many models
    (groups) have MAPE <= ``max_mape`` (the gate; for the mean: their mean MAPE over the
    origins), in the column ``models_le_045`` (its name kept from when the gate was a constant)."""
    groups = long[~long["model"].str.startswith("overall")].copy()
    groups["velocity"] = groups["model"].str.rsplit(".", n=1).str[-1]
    rows = []
    origins = sorted(long["origin"].unique())
    for scope, model in (("all", "overall"), ("fast", "overall.fast"), ("slow", "overall.slow")):
        pooled = long[long["model"] == model]
        if pooled.empty:
            continue
        members = groups if scope == "all" else groups[groups["velocity"] == scope]
        base = pooled[pooled["family"] == "baseline"].set_index("origin")["mape"]
        for family, part in pooled.groupby("family", sort=False):
            part = part.set_index("origin")
            mine = members[members["family"] == family]
            for origin in origins:
                if origin not in part.index:
                    continue
                r = part.loc[origin]
                healthy = int((mine.loc[mine["origin"] == origin, "mape"] <= max_mape).sum())
                red = (base[origin] - r["mape"]) / base[origin] if base.get(origin) else math.nan
                rows.append({"origin": origin, "velocity": scope, "family": family, "mape": r["mape"],
                             "wape": r["wape"], "bias": r["bias"], "mase": r["mase"], "reduction": red,
                             "models_le_045": healthy, "models": int(mine["model"].nunique())})  # fmt: skip
            mean_mape = mine.groupby("model")["mape"].mean()
            m = part[["mape", "wape", "bias", "mase"]].mean()
            b = base.mean()
            rows.append({"origin": "mean", "velocity": scope, "family": family, **m.to_dict(),
                         "reduction": (b - m["mape"]) / b if b else math.nan,
                         "models_le_045": int((mean_mape <= max_mape).sum()), "models": len(mean_mape)})  # fmt: skip
    return pd.DataFrame(rows)


def clipped_counts(bt: pd.DataFrame, models: pd.Series) -> np.ndarray:
    """Per model (group, ``overall``): the forecasts (members' and the blend's) of the backtest
    that were out of range and bounded (train's ``clipped``; 0 for models of an older train)."""
    if "clipped" not in bt.columns:
        return np.zeros(len(models), dtype=int)
    per_group = bt.groupby("group")["clipped"].sum()
    total = int(per_group.sum())
    return np.array([total if m == "overall" else int(per_group.get(m, 0)) for m in models], dtype=int)


def model_table(long: pd.DataFrame, trained_at: float, last_origin: str, baseline_margin: float) -> pd.DataFrame:
    """metrics.csv: one row per model (groups, then ``overall``), the mean over the origins;
    ``beats_baseline`` by the health policy's rule (MAPE below the baseline's by more than
    ``baseline_margin``)."""
    long = long[long["model"].isin(set(long["model"]) - {"overall.fast", "overall.slow"})]
    wide = long.pivot_table(index=["model", "origin"], columns="family", values=list(METRICS), dropna=False)
    wide.columns = [f"{fam}_{metric}" for metric, fam in wide.columns]
    wide = wide.reset_index()
    counts = long.drop_duplicates(["model", "origin"]).groupby("model")[["n_rows", "n_actual_pos"]].sum()
    out = []
    for model, part in wide.groupby("model", sort=False):
        mean = part.drop(columns=["model", "origin"]).mean(numeric_only=True)
        row: dict = {"model": model, **counts.loc[model].to_dict()}
        for col, v in mean.items():
            row[col] = v
        row["mape"], row["rmse_0"], row["rmse_all"] = mean["blend_mape"], mean["blend_rmse_0"], mean["blend_rmse_all"]
        row["wape"], row["bias"], row["mase"] = mean["blend_wape"], mean["blend_bias"], mean["blend_mase"]
        b, m = row["baseline_mape"], row["mape"]
        row["mape_reduction"] = (b - m) / b if b and not (math.isnan(b) or math.isnan(m)) else math.nan
        row["beats_baseline"] = bool(b - m > baseline_margin) if not (math.isnan(m) or math.isnan(b)) else False
        row["trained_at"] = trained_at
        row["n_origins"] = len(part)
        row["mape_sd"] = float(part["blend_mape"].std(ddof=0))
        row["wape_sd"] = float(part["blend_wape"].std(ddof=0))
        last = part[part["origin"] == last_origin]
        row["mape_holdout"] = float(last["blend_mape"].iloc[0]) if len(last) else math.nan
        better = [
            (r["blend_mape"] < min(r["baseline_mape"], r["snaive_mape"]))
            and (r["blend_wape"] < min(r["baseline_wape"], r["snaive_wape"]))
            for _, r in part.iterrows()
        ]
        row["beats_baselines"] = bool(all(better))
        if "oracle_mape" in row and row["oracle_mape"]:
            row["mape_vs_oracle"] = row["mape"] / row["oracle_mape"]
            row["wape_vs_oracle"] = row["wape"] / row["oracle_wape"]
        out.append(row)
    table = pd.DataFrame(out)
    table = table.drop(columns=[c for c in table.columns if c.startswith("blend_")])
    extra = sorted(c for c in table.columns if c not in COLUMNS)
    order = [c for c in COLUMNS if c in table.columns] + extra
    groups = table[table["model"] != "overall"].sort_values("model")
    return pd.concat([groups, table[table["model"] == "overall"]], ignore_index=True)[order]


def targets(summary: pd.DataFrame, table: pd.DataFrame, max_mape: float) -> dict:
    """The issue's targets on the mean over the backtest origins (``max_mape``: the gate the
    models are counted within)."""
    mean = summary[(summary["origin"] == "mean") & (summary["velocity"] == "all")].set_index("family")
    per = summary[(summary["origin"] != "mean") & (summary["velocity"] == "all")]
    blend = mean.loc["blend"]
    out: dict = {"origins": sorted(per["origin"].unique())}
    checks = []
    if "oracle" in mean.index and np.isfinite(mean.loc["oracle", "wape"]):
        o = mean.loc["oracle"]
        w, m = TARGET_WAPE * o["wape"], TARGET_MAPE * o["mape"]
        checks += [
            ("wape", blend["wape"], w, blend["wape"] <= w,
             f"WAPE {blend['wape']:.3f} <= {TARGET_WAPE:.2f} x the oracle's {o['wape']:.3f} = {w:.3f}"),
            ("mape", blend["mape"], m, blend["mape"] <= m,
             f"MAPE {blend['mape']:.3f} <= {TARGET_MAPE:.2f} x the oracle's {o['mape']:.3f} = {m:.3f}"),
            ("models_le_045", blend["models_le_045"], o["models_le_045"],
             blend["models_le_045"] >= o["models_le_045"],
             f"models at MAPE <= {max_mape}: {blend['models_le_045']:.0f} >= the oracle's {o['models_le_045']:.0f}"),
        ]  # fmt: skip
    checks.append(
        ("bias", blend["bias"], TARGET_BIAS, abs(blend["bias"] - 1) <= TARGET_BIAS,
         f"|bias - 1| {abs(blend['bias'] - 1):.3f} <= {TARGET_BIAS} (bias {blend['bias']:.3f})")
    )  # fmt: skip
    wins = 0
    for _, part in per.groupby("origin"):
        p = part.set_index("family")
        b = p.loc["blend"]
        wins += bool(
            b["mape"] < min(p.loc["baseline", "mape"], p.loc["snaive", "mape"])
            and b["wape"] < min(p.loc["baseline", "wape"], p.loc["snaive", "wape"])
        )
    n = per["origin"].nunique()
    checks.append(
        ("beats_baselines", wins, n, wins == n,
         f"better than both baselines (MAPE and WAPE) at {wins} of {n} origins")
    )  # fmt: skip
    out["checks"] = [
        {"target": k, "value": float(v), "limit": float(lim), "met": bool(ok), "text": text}
        for k, v, lim, ok, text in checks
    ]
    out["met"] = all(c["met"] for c in out["checks"])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scores", type=Path, required=True, help="score's output folder")
    p.add_argument("--models", type=Path, required=True, help="train's output folder")
    p.add_argument("--oracle", type=Path, help="the generator's expected_demand.csv (or its folder); optional")
    p.add_argument("--mape-floor", type=float, default=0.0, help="MAPE over actuals above this (currency targets)")
    p.add_argument("--max-mape", type=float, required=True, help="the health policy's MAPE gate")
    p.add_argument(
        "--baseline-margin", type=float, required=True, help="the health policy's beat-the-baseline margin (MAPE)"
    )
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    trained_at = float(json.loads((a.models / "manifest.json").read_text())["trained_at"])
    fc = pd.read_csv(a.scores / "forecasts.csv", dtype={"store_id": str, "sku": str})
    hold = fc[fc["split"] == "holdout"]
    if (a.models / "backtest.csv").exists():
        bt = pd.read_csv(a.models / "backtest.csv", dtype={"store_id": str, "sku": str})
        bt = bt[bt["role"] == "backtest"]
    else:  # models of an older train: the holdout as the only origin
        bt = hold.assign(origin=hold.get("origin", "holdout"))
    if bt.empty:
        print("evaluate: no holdout rows", file=sys.stderr)
        return 2
    if "scale" not in bt.columns:
        bt = bt.assign(scale=np.nan)
    oracle = read_oracle(a.oracle)
    if oracle is not None:
        bt = bt.merge(oracle, on=["store_id", "sku", "week_start"], how="left").rename(
            columns={"expected_units": "oracle"}
        )
    long = per_origin(bt, a.mape_floor)
    last_origin = str(max(bt["origin"]))
    table = model_table(long, trained_at, last_origin, a.baseline_margin)
    table["clipped"] = clipped_counts(bt, table["model"])
    summary = summarise(long, a.max_mape)
    goals = targets(summary, table, a.max_mape)
    goals["mape_floor"] = a.mape_floor
    a.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(a.out / "metrics.csv", index=False, float_format="%.12g")
    long.to_csv(a.out / "backtest_metrics.csv", index=False, float_format="%.6g")
    summary.to_csv(a.out / "summary.csv", index=False, float_format="%.6g")
    write_json(a.out / "targets.json", goals)

    models = table[table["model"] != "overall"]
    metrics = {}
    for r in table.to_dict("records"):
        for k in (*LOGGED, *LOGGED_NEW):
            if k in r:
                metrics[f"{r['model']}.{k}"] = r[k]
    for r in summary.to_dict("records"):
        scope = f"backtest.{r['origin']}.{r['velocity']}.{r['family']}"
        for k in ("mape", "wape", "bias", "mase", "models_le_045"):
            metrics[f"{scope}_{k}"] = r[k]
    beating = int(models["beats_baseline"].sum())
    metrics.update(
        models=len(models),
        models_beating_baseline=beating,
        models_beating_baselines=int(models["beats_baselines"].sum()),
        backtest_origins=len(goals["origins"]),
        targets_met=sum(c["met"] for c in goals["checks"]),
    )
    log_metrics(metrics, run_name="evaluate", params={"models": len(models), "origins": len(goals["origins"])})
    print(report(summary, goals, a.max_mape), flush=True)
    print(f"evaluate: {beating}/{len(models)} models beat the historical average on MAPE", flush=True)
    clipped = models.loc[models["clipped"] > 0, ["model", "clipped"]]
    if len(clipped):
        listed = ", ".join(f"{r.model} {r.clipped}" for r in clipped.itertuples())
        print(f"evaluate: forecasts out of range, bounded (backtest, members and blend): {listed}", flush=True)
    return 0


def report(summary: pd.DataFrame, goals: dict, max_mape: float) -> str:
    """The summary per family and velocity (the mean over the origins, then each origin) and
    the targets, as text."""
    order = {f: i for i, f in enumerate(FAMILIES)}
    lines = []
    for origin in ["mean", *sorted(o for o in summary["origin"].unique() if o != "mean")]:
        part = summary[summary["origin"] == origin].copy()
        part["k"] = part["family"].map(order)
        part = part.sort_values(["velocity", "k"])
        title = "mean of the backtest origins" if origin == "mean" else f"origin {origin}"
        lines.append(f"\n{title}")
        head = f"{'MAPE':>6} {'WAPE':>6} {'bias':>6} {'MASE':>6} {'reduct':>7} <={max_mape:g}"
        lines.append(f"  {'velocity':<8} {'family':<10} {head}")
        for r in part.to_dict("records"):
            red = "-" if r["reduction"] is None or math.isnan(r["reduction"]) else f"{100 * r['reduction']:.0f}%"
            lines.append(
                f"  {r['velocity']:<8} {r['family']:<10} {r['mape']:6.3f} {r['wape']:6.3f} {r['bias']:6.3f} "
                f"{r['mase']:6.3f} {red:>7} {r['models_le_045']:>3}/{r['models']}"
            )
    lines.append("\ntargets (mean of the backtest origins):")
    for c in goals["checks"]:
        lines.append(f"  {'met    ' if c['met'] else 'NOT MET'}  {c['text']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
