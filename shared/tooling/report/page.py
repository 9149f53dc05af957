"""The report's HTML: one self-contained page per run (charts inline as SVG, no script, nothing
fetched) and the index over every report."""

from __future__ import annotations

import datetime as dt
import html
from dataclasses import dataclass
from typing import Any

from shared.health import policy
from shared.tooling.report import charts
from shared.tooling.report.data import Quality, num, region_format, targets_line, verdict
from shared.tooling.report.series import GroupSeries
from shared.watch.gates import Gates

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1100px; }
table { border-collapse: collapse; font-size: 13px; }
td, th { padding: 3px 8px; border-bottom: 1px solid #ddd; text-align: right; }
td:first-child, th:first-child { text-align: left; } tr.bad td { color: #c62828; }
.grid { display: inline-grid; font-size: 13px; margin: 0.5em 0; }
.grid [role=row] { display: contents; }
.grid [role=cell], .grid [role=columnheader], .grid [role=rowheader] { padding: 3px 10px;
  border-bottom: 1px solid #ddd; text-align: right; }
.grid [role=columnheader], .grid [role=rowheader] { font-weight: bold; }
.grid [role=rowheader] { text-align: left; } .ok { background: #e8f5e9; } .no { background: #ffebee; }
svg { max-width: 100%; height: auto; }
.met { color: #2e7d32; } .missed { color: #c62828; }
"""


@dataclass
class ReportInputs:
    """Everything one run's HTML report shows."""

    run_id: str
    now: dt.datetime
    gates: Gates
    rows: list[dict[str, Any]]
    overall: dict[str, str] | None
    targets: dict[str, Any] | None
    meta: dict[str, Any]
    trained_at: float | None
    quality: Quality
    panels: list[GroupSeries]
    summary: list[dict[str, str]]
    forecasts_link: str
    #: the weekly batch's summary (:mod:`shared.mlops.steps`), when the run was one
    batch: dict[str, Any] | None = None


def grid(headers: list[str], rows: list[list[tuple[str, str]]], label: str) -> str:
    """A table laid out as a CSS grid with ARIA table roles; a cell is (text, class). The first
    cell of a row is its header."""
    out = [f'<div class=grid role=table aria-label="{html.escape(label)}" style="grid-template-columns: ']
    out.append(f'repeat({len(headers)}, auto)"><div role=row>')
    out += [f"<div role=columnheader>{html.escape(h)}</div>" for h in headers]
    out.append("</div>")
    for row in rows:
        cells = [
            f"<div role={'rowheader' if i == 0 else 'cell'} class='{cls}'>{html.escape(text)}</div>"
            for i, (text, cls) in enumerate(row)
        ]
        out.append(f"<div role=row>{''.join(cells)}</div>")
    out.append("</div>")
    return "".join(out)


def _f(v: float | None, fmt: str = ".3f") -> str:
    return "-" if v is None else format(v, fmt)


def _model_row(r: dict[str, Any]) -> str:
    reduction = "-" if r["reduction"] is None else f"{100 * r['reduction']:.0f}%"
    health = "yes" if r["healthy"] else html.escape("no: " + "; ".join(r["problems"]))
    cells = [
        html.escape(r["model"]),
        _f(r["mape"]),
        _f(r["wape"]),
        _f(r["bias"]),
        _f(r["baseline_mape"]),
        _f(r["snaive_mape"]),
        _f(r["oracle_mape"]),
        reduction,
        health,
    ]
    return f"<tr class={'ok' if r['healthy'] else 'bad'}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _margin() -> str:
    margin = policy().baseline.margin
    return f" by more than {margin}" if margin else ""


def _region_format(inp: ReportInputs) -> str:
    regions, formats, cells = region_format(inp.rows)
    limit = inp.gates.max_mape
    rows = []
    for region in regions:
        row = [(region, "")]
        for fmt in formats:
            c = cells.get((region, fmt))
            if c is None:
                row.append(("-", ""))
                continue
            ok = c["mape"] is not None and (limit is None or c["mape"] <= limit)
            row.append((f"{_f(c['mape'])} ({c['healthy']}/{c['n']} healthy)", "ok" if ok else "no"))
        rows.append(row)
    return grid(["region", *formats], rows, "MAPE per region and store format")


def _quality(q: Quality) -> str:
    rows = [
        [(ds, ""), (fmt, ""), (str(v["files"]), ""), (str(v["read"]), ""), (str(v["written"]), "")]
        + [(str(v["rejected"]), "no" if v["rejected"] else "")]
        for (ds, fmt), v in sorted(q.rows.items())
    ]
    text = grid(["dataset", "format", "files", "rows read", "rows written", "rows rejected"], rows, "rows per source")
    if not q.quarantined:
        return text + "<p>No file was quarantined.</p>"
    qrows = [
        [(ds, ""), (reason, "no"), (str(len(files)), ""), (", ".join(sorted(files)[:5]), "")]
        for (ds, reason), files in sorted(q.quarantined.items())
    ]
    return text + grid(["dataset", "reason", "files quarantined", "files (up to 5)"], qrows, "quarantined files")


def _windows(inp: ReportInputs) -> str:
    m = inp.meta
    first, last = (m.get("weeks") or ["?", "?"])[:2]
    holdout_from, weeks = m.get("holdout_from", "?"), int(m.get("holdout_weeks") or 0)
    trained = "-" if inp.trained_at is None else f"{dt.datetime.fromtimestamp(inp.trained_at, dt.UTC):%Y-%m-%d %H:%M}"
    origins = ", ".join(m.get("origins") or [])
    return (
        f"<ul><li>Trained at {trained} UTC; data from the week of {first} to the week of {last}.</li>"
        f"<li>Training window (the holdout's models): {first} to the week before {holdout_from}.</li>"
        f"<li>Horizon: the holdout, {weeks} weeks from {holdout_from}; the future, "
        f"{m.get('future_weeks', '?')} weeks from {m.get('future_from', '?')}.</li>"
        f"<li>Backtest origins: {html.escape(origins)} (the first only validates the second).</li>"
        f'<li>Every forecast: <a href="{html.escape(inp.forecasts_link)}">forecasts.csv</a>.</li></ul>'
    )


def _targets(inp: ReportInputs) -> str:
    checks = (inp.targets or {}).get("checks") or []
    items = "".join(
        f"<li class={'met' if c.get('met') else 'missed'}>{'met' if c.get('met') else 'missed'}: "
        f"{html.escape(str(c.get('text')))}</li>"
        for c in checks
    )
    return f"<p>{html.escape(targets_line(inp.overall, inp.targets))}.</p><ul>{items}</ul>"


def _decisions(summary: dict[str, Any] | None) -> str:
    """The weekly batch's decisions: per group, retrained or skipped, promoted or kept, and what
    served the coming weeks (its version, the source: production, previous or baseline, and why
    it fell back), each with its reason; and the groups per source."""
    if not summary or not summary.get("groups"):
        return ""
    esc = html.escape
    rows = []
    for name, g in summary["groups"].items():
        decision = g.get("decision") or "-"
        bad = "no" if g["training"] == "failed" or decision == "kept" else ""
        source = g.get("source") or ""
        if g.get("scored_with"):
            serving = f"v{g['scored_with']}"
        else:
            serving = str(g.get("served_by") or source) if source else "not scored"
        mark = "ok" if source == "production" else ("no" if source in ("", "baseline") else "")
        rows.append(
            [
                (name, ""),
                (g["training"], bad if g["training"] == "failed" else ""),
                (str(g.get("why") or ""), ""),
                (decision, bad if decision == "kept" else ("ok" if decision == "promoted" else "")),
                (str(g.get("decision_why") or ""), ""),
                (serving, ""),
                (source or "-", mark),
                (str(g.get("fallback_why") or ""), ""),
            ]
        )
    counts = summary.get("counts") or {}
    told = ", ".join(f"{v} {esc(k)}" for k, v in counts.items() if k not in ("-", "not scored"))
    sources = summary.get("sources") or {}
    served = ", ".join(f"{v} {esc(str(k))}" for k, v in sources.items())
    share = summary.get("fallback_share")
    if served and isinstance(share, int | float):
        served += f"; {share:.0%} served by fallback"
    served = f": {served}" if served else ""
    data = summary.get("data") or {}
    headers = ["model", "training", "why", "decision", "why", "serving", "source", "why"]
    return f"""<h2>The weekly batch: week of {esc(str(summary["week"]))}</h2>
<p>Started by {esc(str(summary["by"]).replace("_", " "))}; data {esc(str(data.get("reference", "")))};
{told}. Forecasts of the coming weeks, each group by the best that may serve it (its production
model, else the previous production version, else its baseline){served}:
<code>{esc(str(summary.get("forecasts", "")))}</code>.</p>
{grid(headers, rows, "decisions")}"""


def html_report(inp: ReportInputs) -> str:
    """The run's report as one HTML page."""
    m = inp.meta
    holdout_from = str(m.get("holdout_from", ""))
    weeks = int(m.get("holdout_weeks") or 0)
    holdout_end = str(dt.date.fromisoformat(holdout_from) + dt.timedelta(weeks=weeks)) if holdout_from else ""
    error = charts.error_chart(inp.rows, inp.gates.max_mape)
    forecast = charts.forecast_chart(inp.panels, (holdout_from, holdout_end), str(m.get("future_from", holdout_end)))
    table = "".join(_model_row(r) for r in inp.rows)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Demand forecast: run {html.escape(inp.run_id)}</title>
<style>{STYLE}</style></head><body>
<h1>Weekly demand forecast</h1>
<p>Run <code>{html.escape(inp.run_id)}</code>, reported {inp.now:%Y-%m-%d %H:%M} UTC.
<a href="index.html">Every report</a>.</p>
<p><strong>{html.escape(verdict(inp.rows, inp.overall, inp.gates))}.</strong></p>
{_targets(inp)}
{_windows(inp)}
{_decisions(inp.batch)}
<h2>Error per model</h2>
<p>Each model's MAPE, mean over the backtest origins, from the lowest (green: healthy, red: not).
Black ticks: the historical-average baseline's MAPE. Dashed line: the {inp.gates.max_mape} gate.</p>
<figure>{error}</figure>
<h2>The backtest, origin by origin</h2>
<p>Every series pooled, at each forecast origin: the forecast against the two baselines and, on generated
data, the oracle (the expected demand the data was drawn from: the noise floor).</p>
<figure>{charts.origins_chart(inp.summary)}</figure>
<h2>Region x store format</h2>
<p>MAPE over each cell's models (weighted by their rows with an actual above zero), and how many are healthy.</p>
{_region_format(inp)}
<h2>Forecast against actual</h2>
<p>Units per week summed over each group's series: every series, then the worst and the best groups.
Shaded: the holdout (the last backtest origin's horizon); the dotted line: the last week with actuals,
after it the future. Blue band: the holdout's and future's forecast times the range of actual / forecast
at the same lead over the earlier backtest origins. Grey dashes: the earlier origins' forecasts.</p>
<figure>{forecast}</figure>
<h2>All models</h2>
<table><tr><th>model</th><th>MAPE</th><th>WAPE</th><th>bias</th><th>baseline MAPE</th><th>seasonal naive MAPE</th>
<th>oracle MAPE</th><th>reduction</th><th>healthy</th></tr>
{table}</table>
<p>MAPE: mean absolute percentage error over rows whose actual is above zero. WAPE: absolute errors over actuals.
Bias: forecast total over actual total. Healthy, by the health policy: passes the watch's gates (MAPE at most
{inp.gates.max_mape}, trained within {inp.gates.max_age_days or 0:.0f} days) and its MAPE is below the
historical-average baseline's{_margin()}.</p>
<h2>Data quality</h2>
<p>Every ingested file's manifest, summed per dataset and format; quarantined files by reason.</p>
{_quality(inp.quality)}
</body></html>
"""


def index_page(entries: list[dict[str, Any]], now: dt.datetime) -> str:
    """Every report, newest first, with its overall figures; ``entries`` newest first."""
    rows = []
    for e in entries:
        healthy = "-" if e.get("healthy") is None else f"{e['healthy']} of {e.get('models')}"
        rows.append(
            f"<tr><td>{html.escape(str(e.get('reported_at') or '-'))}</td>"
            f'<td><a href="{html.escape(e["page"])}">{html.escape(e["run_id"])}</a></td>'
            f"<td>{_f(num(str(e.get('mape'))))}</td><td>{_f(num(str(e.get('wape'))))}</td><td>{healthy}</td>"
            f"<td>{html.escape(str(e.get('targets') or '-'))}</td></tr>"
        )
    trend = charts.trend_chart(entries) if sum(e.get("mape") is not None for e in entries) > 1 else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Demand forecast reports</title>
<style>{STYLE}</style></head><body>
<h1>Demand forecast reports</h1>
<p>{len(entries)} report(s), newest first; rewritten {now:%Y-%m-%d %H:%M} UTC.</p>
{f"<figure>{trend}</figure>" if trend else ""}
<table><tr><th>reported (UTC)</th><th>run</th><th>MAPE</th><th>WAPE</th><th>healthy</th><th>targets</th></tr>
{"".join(rows)}</table>
</body></html>
"""
