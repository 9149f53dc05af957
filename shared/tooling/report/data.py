"""The figures of a forecast run's report, from its outputs: one verdict per model by the health
policy (the watch's gates and the beat-the-baseline rule), the terminal's table and lines, the region x format table,
forecast against actual summed per group, and the ingest's data quality from its manifests."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from shared.health import HealthPolicy, policy
from shared.watch.gates import Gates, age_failure, finite, mape_failure


def read_csv(data: bytes) -> list[dict[str, str]]:
    """The rows of a UTF-8 CSV file."""
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def num(value: str | None) -> float | None:
    """A CSV cell as a finite number, or None (empty, not a number, NaN or infinite)."""
    if value is None or value == "":
        return None
    try:
        v = float(value)
    except ValueError:
        return None
    return v if finite(v) else None


def _problems(row: dict[str, str], gates: Gates, now: dt.datetime, rules: HealthPolicy) -> list[str]:
    """What keeps one model from being healthy: the watch's gates, then the policy's
    beat-the-baseline rule."""
    problems = []
    mape, trained, base = num(row.get("mape")), num(row.get("trained_at")), num(row.get("baseline_mape"))
    if mape is None:
        problems.append("no MAPE")
    elif failed := mape_failure(mape, gates):
        problems.append(f"MAPE {mape:.2f} > {failed['limit']}")
    if trained is None:
        problems.append("no trained_at")
    elif old := age_failure(trained, gates, now):
        problems.append(f"model {old['value']:.0f} days old")
    for kind in gates.required:
        if kind not in ("mape", "trained_at") and num(row.get(kind)) is None:
            problems.append(f"no {kind}")
    if mape is not None and not rules.beats_baseline(mape, base):
        by = f" by more than {rules.baseline.margin}" if rules.baseline.margin else ""
        problems.append(f"not better than the baseline{by} ({mape:.3f} vs {_fmt(base)})")
    return problems


def models(
    metrics_rows: list[dict[str, str]],
    now: dt.datetime,
    gates: Gates | None = None,
    rules: HealthPolicy | None = None,
) -> list[dict[str, Any]]:
    """One entry per model (the ``overall`` row excluded). Healthy, by the health policy
    (``rules``, the file's by default): it passes the watch's gates (MAPE, age, required
    metrics) *and* beats its baseline (MAPE below the historical average's by more than the
    policy's margin); ``problems`` names each that failed."""
    gates = gates or Gates()
    rules = rules or policy()
    out = []
    for row in metrics_rows:
        if row["model"] in gates.aggregates:
            continue
        problems = _problems(row, gates, now, rules)
        out.append(
            {
                "model": row["model"],
                "mape": num(row.get("mape")),
                "wape": num(row.get("wape")),
                "bias": num(row.get("bias")),
                "rmse_0": num(row.get("rmse_0")),
                "rmse_all": num(row.get("rmse_all")),
                "baseline_mape": num(row.get("baseline_mape")),
                "snaive_mape": num(row.get("snaive_mape")),
                "oracle_mape": num(row.get("oracle_mape")),
                "reduction": num(row.get("mape_reduction")),
                "n_actual_pos": num(row.get("n_actual_pos")),
                "healthy": not problems,
                "problems": problems,
            }
        )
    return out


def _fmt(v: float | None, fmt: str = ".3f") -> str:
    return "-" if v is None else format(v, fmt)


def summary_table(rows: list[dict[str, Any]]) -> str:
    """The models' metrics as a plain-text table."""
    width = max([len(r["model"]) for r in rows] + [5])
    lines = [
        f"{'model':<{width}}  {'MAPE':>6} {'RMSE_0':>7} {'RMSE_All':>8} {'base MAPE':>9} {'reduction':>9}  healthy"
    ]
    for r in rows:
        red = "-" if r["reduction"] is None else f"{100 * r['reduction']:.0f}%"
        lines.append(
            f"{r['model']:<{width}}  {_fmt(r['mape']):>6} {_fmt(r['rmse_0'], '.2f'):>7} "
            f"{_fmt(r['rmse_all'], '.2f'):>8} "
            f"{_fmt(r['baseline_mape']):>9} {red:>9}  {'yes' if r['healthy'] else 'no: ' + '; '.join(r['problems'])}"
        )
    return "\n".join(lines)


def verdict(
    rows: list[dict[str, Any]],
    overall: dict[str, str] | None,
    gates: Gates | None = None,
    rules: HealthPolicy | None = None,
) -> str:
    """The first summary line: how many models are healthy and beat the baseline."""
    gates = gates or Gates()
    rules = rules or policy()
    healthy = sum(r["healthy"] for r in rows)
    beat = sum(1 for r in rows if rules.beats_baseline(r["mape"], r["baseline_mape"]))
    text = f"{healthy} of {len(rows)} models healthy (MAPE <= {gates.max_mape}, trained within "
    by = f" by more than {rules.baseline.margin}" if rules.baseline.margin else ""
    text += f"{gates.max_age_days or 0:.0f} days, better than the historical average{by}); "
    text += f"{beat} of {len(rows)} beat the historical-average baseline{by}"
    if overall:
        m, b = num(overall.get("mape")), num(overall.get("baseline_mape"))
        if m is not None and b:
            text += f"; overall MAPE {m:.3f} against the baseline's {b:.3f} ({100 * (1 - m / b):.0f}% lower)"
    return text


def targets_line(overall: dict[str, str] | None, targets: dict[str, Any] | None) -> str:
    """The second summary line: WAPE and bias, the seasonal naive's and the oracle's MAPE/WAPE,
    and whether the targets in targets.json are met."""
    o = overall or {}
    parts = [f"overall WAPE {_fmt(num(o.get('wape')))}, bias {_fmt(num(o.get('bias')))}"]
    parts.append(f"seasonal naive MAPE {_fmt(num(o.get('snaive_mape')))}, WAPE {_fmt(num(o.get('snaive_wape')))}")
    if num(o.get("oracle_mape")) is None:
        parts.append("no oracle (not generated data)")
    else:
        parts.append(f"oracle MAPE {_fmt(num(o.get('oracle_mape')))}, WAPE {_fmt(num(o.get('oracle_wape')))}")
    checks = (targets or {}).get("checks") or []
    if checks:
        met = [c for c in checks if c.get("met")]
        missed = [str(c.get("target")) for c in checks if not c.get("met")]
        text = f"targets: {len(met)} of {len(checks)} met"
        parts.append(text + (f" (missed: {', '.join(missed)})" if missed else ""))
    else:
        parts.append("targets: none in targets.json")
    return "; ".join(parts)


def region_format(rows: list[dict[str, Any]]) -> tuple[list[str], list[str], dict[tuple[str, str], dict[str, Any]]]:
    """Regions, formats and per (region, format) cell: its models' MAPE pooled over their rows
    with an actual above zero (each model's MAPE weighted by that count), and how many of its
    models are healthy. Models are named ``<region>.<format>.<velocity>``."""
    acc: dict[tuple[str, str], dict[str, Any]] = defaultdict(lambda: {"w": 0.0, "sum": 0.0, "healthy": 0, "n": 0})
    for r in rows:
        parts = r["model"].split(".")
        if len(parts) != 3:
            continue
        cell = acc[(parts[0], parts[1])]
        cell["n"] += 1
        cell["healthy"] += int(r["healthy"])
        if r["mape"] is not None:
            w = r["n_actual_pos"] or 1.0
            cell["w"] += w
            cell["sum"] += w * r["mape"]
    cells = {
        k: {"mape": v["sum"] / v["w"] if v["w"] else None, "healthy": v["healthy"], "n": v["n"]} for k, v in acc.items()
    }
    return sorted({k[0] for k in cells}), sorted({k[1] for k in cells}), cells


@dataclass
class Quality:
    """The ingest as its manifests tell it, per dataset and format."""

    rows: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    #: (dataset, reason) -> quarantined files
    quarantined: dict[tuple[str, str], list[str]] = field(default_factory=dict)


def data_quality(manifests: Iterable[dict[str, Any]], errors: Iterable[dict[str, Any]]) -> Quality:
    """Sums the ``rows`` of every ingested file's manifest (``curated/**.manifest.json``) per
    dataset and format, and groups the quarantined files (``quarantine/**.error.json``) by reason."""
    q = Quality()
    for m in manifests:
        key = (str(m.get("dataset")), str((m.get("format") or {}).get("id")))
        tot = q.rows.setdefault(key, {"files": 0, "read": 0, "written": 0, "rejected": 0})
        tot["files"] += 1
        for k in ("read", "written", "rejected"):
            tot[k] += int((m.get("rows") or {}).get(k) or 0)
    for e in errors:
        key = (str(e.get("dataset")), str((e.get("error") or {}).get("reason")))
        q.quarantined.setdefault(key, []).append(str((e.get("raw") or {}).get("path")))
    return q


def parse_json(data: bytes) -> Any:
    """A UTF-8 JSON document."""
    return json.loads(data.decode("utf-8"))
