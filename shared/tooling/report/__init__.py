"""A forecast run's results for people: a summary for the terminal, and a self-contained HTML
report per run (matplotlib charts inline as SVG; no script, nothing fetched) with an index over
every report, written to the lake's ``reports/``.

The report reads the run's outputs (``runs/<run_id>/outputs/...``: evaluate's metrics.csv and
targets.json, score's forecasts.csv, train's backtest.csv and manifest.json, prepare's
meta.json) and the ingest's manifests (``curated/**.manifest.json``,
``quarantine/**.error.json``).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from shared.lake import Lake
from shared.tooling.report.data import (
    data_quality,
    models,
    num,
    parse_json,
    read_csv,
    summary_table,
    targets_line,
    verdict,
)
from shared.tooling.report.page import ReportInputs, html_report, index_page
from shared.tooling.report.series import GroupSeries, group_series
from shared.watch.gates import Gates

__all__ = [
    "RunResults",
    "html_report",
    "load",
    "models",
    "read_csv",
    "summary_table",
    "targets_line",
    "verdict",
    "write_index",
    "write_report",
]

REPORTS = "reports"
OUTPUTS = {
    "metrics": "evaluate/metrics/metrics.csv",
    "targets": "evaluate/metrics/targets.json",
    "summary": "evaluate/metrics/summary.csv",
    "forecasts": "score/scores/forecasts.csv",
    "backtest": "train/models/backtest.csv",
    "manifest": "train/models/manifest.json",
    "meta": "prepare/features/meta.json",
}
#: groups drawn besides the total: the worst and the best by MAPE (a few charts, not one per group)
WORST, BEST = 3, 2


@dataclass
class RunResults:
    """A completed forecast run's outputs; the optional ones empty when absent."""

    run_id: str
    metrics: list[dict[str, str]]
    forecasts: list[dict[str, str]]
    targets: dict[str, Any] = field(default_factory=dict)
    summary: list[dict[str, str]] = field(default_factory=list)
    backtest: list[dict[str, str]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    trained_at: float | None = None

    @property
    def overall(self) -> dict[str, str] | None:
        return next((r for r in self.metrics if r["model"] == "overall"), None)


def output_path(run_id: str, name: str) -> str:
    """The lake path of one of a run's outputs."""
    return f"runs/{run_id}/outputs/{OUTPUTS[name]}"


def load(lake: Lake, run_id: str) -> RunResults:
    """The run's outputs from the lake: metrics.csv and forecasts.csv must be there."""

    def optional(name: str) -> bytes | None:
        path = output_path(run_id, name)
        return lake.read_bytes(path) if lake.exists(path) else None

    res = RunResults(
        run_id,
        read_csv(lake.read_bytes(output_path(run_id, "metrics"))),
        read_csv(lake.read_bytes(output_path(run_id, "forecasts"))),
    )
    if (data := optional("targets")) is not None:
        res.targets = parse_json(data)
    if (data := optional("summary")) is not None:
        res.summary = read_csv(data)
    if (data := optional("backtest")) is not None:
        res.backtest = read_csv(data)
    if (data := optional("meta")) is not None:
        res.meta = parse_json(data)
    if (data := optional("manifest")) is not None:
        res.trained_at = num(str(parse_json(data).get("trained_at")))
    if res.trained_at is None and res.overall:
        res.trained_at = num(res.overall.get("trained_at"))
    return res


def _panels(res: RunResults, rows: list[dict[str, Any]]) -> list[GroupSeries]:
    ranked = sorted((r for r in rows if r["mape"] is not None), key=lambda r: (-r["mape"], r["model"]))
    names = [r["model"] for r in ranked[:WORST]]
    names += [r["model"] for r in ranked[WORST:][-BEST:]]
    holdout_from = str(res.meta.get("holdout_from", ""))
    return [group_series(res.backtest, res.forecasts, g, holdout_from) for g in [None, *names]]


def _json_files(lake: Lake, prefix: str, suffix: str) -> list[dict[str, Any]]:
    return [parse_json(lake.read_bytes(p)) for p in lake.list(prefix) if p.endswith(suffix)]


def write_report(
    lake: Lake, res: RunResults, gates: Gates, now: dt.datetime, batch: dict[str, Any] | None = None
) -> str:
    """Writes ``reports/forecast-<run_id>.html`` (and its figures for the index, ``.json``
    beside it), rewrites ``reports/index.html``; returns the report's path. With ``batch``
    (the weekly batch's summary), the report shows its decisions per group."""
    rows = models(res.metrics, now, gates)
    quality = data_quality(
        _json_files(lake, "curated", ".manifest.json"), _json_files(lake, "quarantine", ".error.json")
    )
    inputs = ReportInputs(
        run_id=res.run_id,
        now=now,
        gates=gates,
        rows=rows,
        overall=res.overall,
        targets=res.targets,
        meta=res.meta,
        trained_at=res.trained_at,
        quality=quality,
        panels=_panels(res, rows),
        summary=res.summary,
        forecasts_link=f"../{output_path(res.run_id, 'forecasts')}",
        batch=batch,
    )
    page = f"{REPORTS}/forecast-{res.run_id}.html"
    lake.write_bytes(page, html_report(inputs).encode())
    overall = res.overall or {}
    checks = res.targets.get("checks") or []
    entry = {
        "run_id": res.run_id,
        "page": page.removeprefix(f"{REPORTS}/"),
        "reported_at": now.isoformat(timespec="seconds"),
        "mape": num(overall.get("mape")),
        "wape": num(overall.get("wape")),
        "healthy": sum(r["healthy"] for r in rows),
        "models": len(rows),
        "targets": f"{sum(bool(c.get('met')) for c in checks)} of {len(checks)} met" if checks else None,
    }
    lake.write_bytes(f"{REPORTS}/forecast-{res.run_id}.json", json.dumps(entry, indent=2).encode())
    write_index(lake, now)
    return page


def write_index(lake: Lake, now: dt.datetime) -> str:
    """Rewrites ``reports/index.html`` over every report in the lake, newest first (a report
    without its figures, from before they were written, is listed last with none)."""
    entries: dict[str, dict[str, Any]] = {}
    for path in lake.list(REPORTS):
        name = path.removeprefix(f"{REPORTS}/")
        if not name.startswith("forecast-"):
            continue
        if name.endswith(".json"):
            entry = parse_json(lake.read_bytes(path))
            entries[entry["page"]] = entry
        elif name.endswith(".html"):
            entries.setdefault(name, {"page": name, "run_id": name.removeprefix("forecast-").removesuffix(".html")})
    ordered = sorted(entries.values(), key=lambda e: (str(e.get("reported_at") or ""), e["page"]), reverse=True)
    path = f"{REPORTS}/index.html"
    lake.write_bytes(path, index_page(ordered, now).encode())
    return path
