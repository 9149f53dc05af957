"""The score pipeline's step: every group of the lake forecasts the ``future`` weeks (the weeks
after the lake, from the week after the lake, as score's future rows) with the best thing that
may be served, decided here, per group, in this order (the fallback is part of the model's API,
as statsforecast's ``fallback_model``):

1. ``production``: the group's production model, with its own booster (models of different runs
   have different boosters): an MLflow model, loaded with ``mlflow.pyfunc.load_model`` (issue 23),
   or, for a version registered before, its pickle and booster files;
2. ``previous``: the previous production version, when production.json hands one (the batch
   hands it only while it passes the gates);
3. ``baseline``: the group's baseline, the historical average, or the seasonal naive where it
   did better over the backtest origins of this lake (``model`` then says which).

A model that cannot be read (a corrupt MLmodel or pickle, a missing artifact or booster file, code
of its own that does not run) or whose scoring raises costs its group only: the group falls to the
next in the chain and the reason is recorded: the error's type and first line, a file named by its
place in this folder (``<group>/artifacts/model/model.pkl``), never a path of the node (the whole
text is on stderr). An MLflow model loads and predicts with the code inside it (its ``code/``), not
this step's modules of the same names (model_versions.py): a previous version trained by older code
forecasts as it did.

``--production`` is a folder:

    production.json          {"week": "<YYYY-MM-DD>",
                              "models": {"<group>": {"name": "<group>", "version": <int>,
                                                     "previous": {"version": <int>} (optional)}}}
    <group>/MLmodel, ...     the group's model version in MLflow format (train's ``mlflow/<group>/``:
                             the model, the run's booster and the code inside it), or, for a
                             version registered before the models were MLflow models:
    <group>/model.pkl        the group's model (train's ``<group>.pkl``)
    <group>/lgbm.txt         the booster of the run that trained it, and its categories
    <group>/lgbm.json        (optional: both or neither; without them the LightGBM member is
                             the pooled seasonal naive, as in a run too short for a booster)
    <group>/previous/...     the previous production version's files, either way

Writes ``<out>/forecasts/<group>.csv`` for every group of the lake and every group listed:
exactly the columns ``store_id,sku,week_start,forecast,model,model_version,source,new_sku``
(model: the group, or ``baseline`` / ``snaive``; model_version: the registry's version, empty
for a baseline; source: production, previous or baseline; new_sku: the SKU is not in the
classes stored with the serving model, so it is scored by the baseline), sorted by store_id,
sku, week_start, the forecast in units rounded to 3 decimals (non-negative, finite); a listed
group the lake has no rows of gets the header only. And ``<out>/forecasts/summary.json``:
``week`` (production.json's), ``groups`` (rows per group), ``sources`` (per group: source,
model, version and the reasons it fell back), ``counts`` (groups per source) and ``missing``
(groups of the lake with no production model, served by their baseline). production.json
missing or invalid: exit 2 with one line. The summary's ``failed`` lists the groups whose
scoring gave no result (``[{group, reason}]``), each served by its baseline.

Fanned out (the score pipeline, issue 22): score_plan.py writes one work file per group,
score_groups.py (AML's parallel job, or the local backend's process pool) runs
:func:`score_each` on each, and ``--work W --served S --results R`` gathers them
(:func:`finish`; a group without a result, its mini-batch lost, is served by its baseline).
Alone (without ``--served``) this command does the three in one process, the same files.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from backtest import Data
from forecast_lib import TARGET, log_metrics, neutralise_formulas, write_json
from model_versions import Loaded, ProductionError, load_model, public
from pergroup import one_line, read_work_doc

#: the columns of a forecast file (the standard dataset ``forecasts`` v1)
COLUMNS = ["store_id", "sku", "week_start", "forecast", "model", "model_version", "source", "new_sku"]
#: the fallback chain, best first
SOURCES = ("production", "previous", "baseline")
#: a group's name, also a folder name: <region>.<format>.<velocity>, no path separators
GROUP_NAME = re.compile(r"^[^./\\\s]+\.[^./\\\s]+\.[^./\\\s]+$")


def read_production(
    folder: Path, previous: dict[str, int] | None = None, stale: set[str] | None = None
) -> tuple[str, dict[str, int]]:
    """production.json's week and its models (group -> registry version); ``previous``, when
    given, is filled with the previous production versions it hands (group -> version), and
    ``stale`` with the groups whose production model is past the age gate (``"stale": true``)."""
    previous = {} if previous is None else previous
    stale = set() if stale is None else stale
    path = Path(folder) / "production.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProductionError(f"no production.json in {folder}") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ProductionError(f"production.json is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ProductionError("production.json must be an object with week and models")
    week = doc.get("week")
    if not isinstance(week, str) or not _is_date(week):
        raise ProductionError(f"production.json: week must be a date YYYY-MM-DD, not {week!r}")
    listed = doc.get("models")
    if not isinstance(listed, dict) or not listed:
        raise ProductionError("production.json: models must be an object naming at least one group")
    models = {group: _entry(group, entry, previous, stale) for group, entry in listed.items()}
    return week, models


def _entry(group: str, entry: Any, previous: dict[str, int], stale: set[str]) -> int:
    """One group's entry of production.json: its registry version (its previous version and its
    staleness noted in ``previous`` and ``stale``)."""
    if not GROUP_NAME.match(group):
        raise ProductionError(f"production.json: {group!r} is not a group name (<region>.<format>.<velocity>)")
    if not isinstance(entry, dict) or entry.get("name") != group:
        raise ProductionError(f"production.json: models.{group} must be an object with name {group!r}")
    version = entry.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ProductionError(f"production.json: models.{group}.version must be an integer >= 1, not {version!r}")
    if entry.get("stale") is True:
        stale.add(group)
    prev = entry.get("previous")
    if prev is not None:
        pv = prev.get("version") if isinstance(prev, dict) else None
        if isinstance(pv, bool) or not isinstance(pv, int) or pv < 1:
            raise ProductionError(f"production.json: models.{group}.previous.version must be an integer >= 1")
        previous[group] = pv
    return version


def _is_date(text: str) -> bool:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def score_group(model: Loaded, data: Data, rows: pd.DataFrame, origin: str, version: int) -> pd.DataFrame:
    """One group's forecast file: its rows of ``rows`` (horizon rows of ``origin``) forecast by
    its own model version, in the dataset's columns and order."""
    rows = rows[rows["group"] == model.group]
    if rows.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    pred = model.forecast(data, rows, origin)
    out = pred[["store_id", "sku", "week_start"]].copy()
    out["forecast"] = np.round(pred["forecast"].to_numpy(float), 3)
    out["model"] = model.group
    out["model_version"] = int(version)
    out["source"] = "production"
    out["new_sku"] = False
    out = out.sort_values(["store_id", "sku", "week_start"], kind="stable").reset_index(drop=True)
    values = out["forecast"].to_numpy(float)
    if not (np.isfinite(values).all() and (values >= 0).all()):
        raise ArithmeticError(f"{model.group}: a forecast is negative or not a finite number")
    return out[COLUMNS]


def baseline_choice(data: Data) -> dict[str, str]:
    """Per group: ``snaive`` where the seasonal naive's MAPE over the backtest origins' horizons
    (rows with units above zero) is below the historical average's, else ``baseline``."""
    frames = []
    for origin in data.origins:
        rows = data.horizon_rows(origin)
        b = data.baselines(rows, origin)
        frame = {"group": rows["group"].to_numpy(), "actual": rows[TARGET].to_numpy(float)}
        frames.append(pd.DataFrame(frame | {k: b[k].to_numpy(float) for k in ("baseline", "snaive")}))
    if not frames:
        return {}
    table = pd.concat(frames)
    table = table[np.isfinite(table["actual"]) & (table["actual"] > 0)]
    chosen = {}
    for group, rows in table.groupby("group"):
        err = {k: float(np.mean(np.abs(rows[k] - rows["actual"]) / rows["actual"])) for k in ("baseline", "snaive")}
        chosen[str(group)] = "snaive" if err["snaive"] < err["baseline"] else "baseline"
    return chosen


def score_baseline(data: Data, rows: pd.DataFrame, origin: str, kind: str) -> pd.DataFrame:
    """``rows`` (horizon rows of ``origin``) forecast by a baseline (``baseline``, the historical
    average, or ``snaive``), in the dataset's columns and order."""
    if rows.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    values = data.baselines(rows, origin)[kind].to_numpy(float)
    out = rows[["store_id", "sku", "week_start"]].copy()
    out["forecast"] = np.round(np.clip(np.nan_to_num(values, nan=0.0, posinf=0.0), 0, None), 3)
    out["model"] = kind
    out["model_version"] = pd.array([None] * len(out), dtype="Int64")
    out["source"] = "baseline"
    out["new_sku"] = False
    return out.sort_values(["store_id", "sku", "week_start"], kind="stable").reset_index(drop=True)[COLUMNS]


def serve_group(
    group: str,
    folder: Path,
    versions: dict[str, int],
    previous: dict[str, int],
    data: Data,
    rows: pd.DataFrame,
    origin: str,
    baseline: str,
    stale: frozenset[str] = frozenset(),
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One group's forecast by the chain (production, previous, baseline) and what served it:
    ``source``, ``model``, ``version``, ``reasons`` (why each better link was passed over). A
    production model past the age gate (``stale``) fails the gates, so it is never served."""
    mine = rows[rows["group"] == group]
    reasons: list[str] = []
    links = []
    if group in versions:
        if group in stale:
            reasons.append(f"production v{versions[group]} is past the age gate: a stale model is never served")
        else:
            links.append(("production", "", versions[group]))
        if group in previous:
            links.append(("previous", "previous", previous[group]))
    else:
        reasons.append("no production model")
    for source, sub, version in links:
        try:
            model = load_model(folder, group, sub)
            known = mine if model.skus is None else mine[mine["sku"].isin(model.skus)]
            out = score_group(model, data, known, origin, version)
        except Exception as e:  # any failure of one model costs its group only: the next link
            reasons.append(f"{source} v{version}: {_why(e, folder, group, sub)}"[:300])
            if source == "production" and group not in previous:
                reasons.append("no previous production version may be served")
            continue
        out["source"] = source
        new = mine[~mine.index.isin(known.index)]
        if not new.empty:  # SKUs new since training: the baseline, flagged
            extra = score_baseline(data, new, origin, baseline).assign(new_sku=True)
            out = pd.concat([out, extra]).sort_values(["store_id", "sku", "week_start"], kind="stable")
            out = out.reset_index(drop=True)[COLUMNS]
        return out, {"source": source, "model": group, "version": version, "reasons": reasons,
                     "new_skus": int(new["sku"].nunique())}  # fmt: skip
    out = score_baseline(data, mine, origin, baseline)
    return out, {"source": "baseline", "model": baseline, "version": None, "reasons": reasons, "new_skus": 0}


def _why(error: Exception, folder: Path, group: str, sub: str) -> str:
    """Why a link of the chain was passed over, as published: a ProductionError's line; any other
    error (the model's scoring raised) by its type and first line, no path of the node in it."""
    if isinstance(error, ProductionError):
        return " ".join(str(error).split())
    return public(error, Path(folder) / group / sub if sub else Path(folder) / group, group)


def write_forecasts(out: pd.DataFrame, path: Path) -> None:
    """A group's forecasts as CSV: the file is published for people (a spreadsheet, Power BI),
    so text cells that would run as a formula are neutralised (docs/lake.md)."""
    neutralise_formulas(out).to_csv(path, index=False)


@dataclass(frozen=True)
class Scoring:
    """What every group's scoring shares: production.json's week, versions, previous versions
    and stale groups, the features, and the horizon rows of the week after the lake."""

    production: Path
    week: str
    versions: dict[str, int]
    previous: dict[str, int]
    stale: frozenset[str]
    data: Data
    origin: str
    rows: pd.DataFrame

    def groups(self) -> list[str]:
        """The groups to score: every group listed and every group of the lake."""
        return sorted(set(self.versions) | set(self.rows["group"]))


def open_scoring(features: Path, production: Path) -> Scoring:
    """The production folder read (ProductionError: why it cannot be scored with) and the
    features of ``features``."""
    previous: dict[str, int] = {}
    stale: set[str] = set()
    week, versions = read_production(production, previous, stale)
    data = Data(features)
    origin = data.meta["future_from"]
    rows = data.horizon_rows(origin, int(data.meta["future_weeks"]))
    return Scoring(production, week, versions, previous, frozenset(stale), data, origin, rows)


def open_or_refuse(features: Path, production: Path) -> Scoring | None:
    """:func:`open_scoring`, or None once its one line (why the production folder cannot be
    scored with) is on stderr: the step then exits 2 and writes nothing."""
    try:
        return open_scoring(features, production)
    except ProductionError as e:
        print(f"score_production: {' '.join(str(e).split())}", file=sys.stderr)
        return None


def read_work_files(paths: list[Path]) -> list[tuple[str, str]]:
    """score_plan.py's work files as ``(group, baseline kind)``."""
    docs = [read_work_doc(Path(path)) for path in paths]
    return [(str(d["group"]), str(d.get("baseline", "baseline"))) for d in docs]


def score_each(scoring: Scoring, work: list[tuple[str, str]], folder: Path) -> list[dict[str, Any]]:
    """Each ``(group, baseline kind)`` of ``work`` served by its chain into ``folder/<group>.csv``;
    one row per group (``group``, ``outcome`` ok or failed, ``reason``, and for ok what served it
    and its ``rows``). Never raises: a group whose scoring raises is its row, ``failed``. The
    per-group work of both the whole command and the parallel step (score_groups.py)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for group, baseline in work:
        s = scoring
        try:
            out, served = serve_group(group, s.production, s.versions, s.previous, s.data, s.rows, s.origin,
                                      baseline, s.stale)  # fmt: skip
            write_forecasts(out, folder / f"{group}.csv")
        except Exception as e:  # nothing raises past one group
            rows.append({"group": group, "outcome": "failed", "reason": one_line(e)})
            continue
        rows.append({"group": group, "outcome": "ok", "reason": "", "rows": len(out), "served": served})
    return rows


def finish(scoring: Scoring, work: list[tuple[str, str]], results: list[dict[str, Any]], served: Path,
           out: Path, t0: float) -> int:  # fmt: skip
    """The step's output from each group's result: ``<out>/forecasts/<group>.csv`` (the served
    file; a group without a result, whose mini-batch died or whose scoring raised, its baseline,
    and it is listed ``failed``), ``summary.json``, the metrics and the step's lines."""
    folder = out / "forecasts"
    folder.mkdir(parents=True, exist_ok=True)
    by_group = {r["group"]: r for r in results}
    counts: dict[str, int] = {}
    sources: dict[str, dict[str, Any]] = {}
    failed = []
    for group, baseline in work:
        row = _result(by_group.get(group, {})) or {"outcome": "failed", "reason": "no result"}
        if row["outcome"] == "ok" and (served / f"{group}.csv").is_file():
            if served.resolve() != folder.resolve():
                shutil.copyfile(served / f"{group}.csv", folder / f"{group}.csv")
            counts[group], sources[group] = int(row["rows"]), row["served"]
            continue
        reason = row["reason"] if row["outcome"] != "ok" else "no forecast file"
        failed.append({"group": group, "reason": reason})
        try:
            mine = scoring.rows[scoring.rows["group"] == group]
            table = score_baseline(scoring.data, mine, scoring.origin, baseline)
            write_forecasts(table, folder / f"{group}.csv")
        except Exception as e:  # nothing can serve it: no file, and the summary says why
            failed[-1]["reason"] = f"{reason}; its baseline: {one_line(e)}"
            continue
        counts[group] = len(table)
        sources[group] = {"source": "baseline", "model": baseline, "version": None,
                          "reasons": [f"scoring failed: {reason}"], "new_skus": 0}  # fmt: skip
    for group, how in sources.items():
        if how["source"] != "production" and group in scoring.versions:
            print(f"score_production: {group} served by {how['source']} ({how['model']}): "
                  f"{'; '.join(how['reasons'])}", file=sys.stderr)  # fmt: skip
    missing = sorted(set(scoring.rows["group"]) - set(scoring.versions))
    by_source = {s: sum(1 for v in sources.values() if v["source"] == s) for s in SOURCES}
    write_json(folder / "summary.json", {"week": scoring.week, "groups": counts, "sources": sources,
                                         "counts": by_source, "missing": missing, "failed": failed})  # fmt: skip
    empty = sorted(g for g, n in counts.items() if n == 0)
    if missing:
        print(f"score_production: no production model for {len(missing)} group(s), served by the baseline: "
              f"{', '.join(missing)}", file=sys.stderr)  # fmt: skip
    if empty:
        print(f"score_production: no rows in the lake for {', '.join(empty)}", file=sys.stderr)
    if failed:
        named = "; ".join(f"{f['group']}: {f['reason']}" for f in failed)
        print(f"score_production: scoring failed for {len(failed)} group(s): {named}", file=sys.stderr)
    total = sum(counts.values())
    seconds = time.monotonic() - t0
    log_metrics(
        {"forecast_rows": total, "groups_scored": len(counts) - len(empty), "groups_missing": len(missing),
         "groups_failed": len(failed), **{f"groups_{k}": v for k, v in by_source.items()}, "score_seconds": seconds},
        run_name="score_production",
        params={"week": scoring.week, "future_from": scoring.origin},
    )  # fmt: skip
    print(
        f"score_production: week {scoring.week}, {total} rows from {scoring.origin}, {len(counts) - len(empty)} "
        f"groups ({', '.join(f'{v} {k}' for k, v in by_source.items())}), {seconds:.1f}s",
        flush=True,
    )
    return 0


def read_results(folder: Path) -> list[dict[str, Any]]:
    """The parallel step's rows (``parallel_run_step.txt``, one JSON object per line); a line
    that is not a JSON object with a string ``group`` is skipped, and said in one stderr line."""
    rows, skipped = [], []
    for path in sorted(Path(folder).rglob("*.txt")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                row = None
            if isinstance(row, dict) and isinstance(row.get("group"), str):
                rows.append(row)
            else:
                skipped.append(f"{path.name}:{n}")
    if skipped:
        print(f"score_production: skipped {len(skipped)} results line(s) that are not a JSON object with a "
              f"string group: {', '.join(skipped[:10])}", file=sys.stderr)  # fmt: skip
    return rows


def _result(row: dict[str, Any]) -> dict[str, Any] | None:
    """A group's result row if it has its outcome's fields (ok: ``rows`` and ``served``; failed:
    ``reason``), else None: no result."""
    if row.get("outcome") == "failed":
        return row if isinstance(row.get("reason"), str) else None
    how = row.get("served")
    fields = isinstance(how, dict) and {"source", "model", "reasons"} <= how.keys()
    ok = row.get("outcome") == "ok" and isinstance(row.get("rows"), int) and fields
    return row if ok else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--features", type=Path, required=True, help="prepare's output folder")
    p.add_argument("--production", type=Path, required=True, help="production.json and <group>/MLmodel, ...")
    p.add_argument("--work", type=Path, help="score_plan.py's work files (with --served and --results: score nothing)")
    p.add_argument("--served", type=Path, help="the parallel step's <group>.csv files")
    p.add_argument("--results", type=Path, help="the parallel step's rows")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    t0 = time.monotonic()
    scoring = open_or_refuse(a.features, a.production)
    if scoring is None:
        return 2
    if a.served is not None:
        if a.work is None or a.results is None:
            p.error("--served needs --work and --results")
        work = read_work_files(sorted(a.work.glob("*.json")))
        return finish(scoring, work, read_results(a.results), a.served, a.out, t0)
    baselines = baseline_choice(scoring.data)
    work = [(g, baselines.get(g, "baseline")) for g in scoring.groups()]
    results = score_each(scoring, work, a.out / "forecasts")
    return finish(scoring, work, results, a.out / "forecasts", a.out, t0)


if __name__ == "__main__":
    sys.exit(main())
