"""A forecast run's results for people: a summary table for the terminal and a self-contained
HTML report (inline SVG, no script, nothing to install) for business stakeholders."""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
from collections import defaultdict
from typing import Any

from shared.watch.gates import Gates, age_failure, mape_failure

#: the watch's default gates, drawn on the charts and named in the verdict
MAPE_GATE = float(Gates().max_mape or 0)
MAX_AGE_DAYS = float(Gates().max_age_days or 0)


def read_csv(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def _f(value: str | None) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        return None


def models(metrics_rows: list[dict[str, str]], now: dt.datetime, gates: Gates | None = None) -> list[dict[str, Any]]:
    """One entry per model (the ``overall`` row excluded), with its verdict by the watch's gates."""
    gates = gates or Gates()
    out = []
    for row in metrics_rows:
        if row["model"] == "overall":
            continue
        mape, trained = _f(row.get("mape")), _f(row.get("trained_at"))
        problems = []
        if mape is None:
            problems.append("no MAPE")
        elif failed := mape_failure(mape, gates):
            problems.append(f"MAPE {mape:.2f} > {failed['limit']}")
        if trained and (old := age_failure(trained, gates, now)):
            problems.append(f"model {old['value']:.0f} days old")
        out.append(
            {
                "model": row["model"],
                "mape": mape,
                "rmse_0": _f(row.get("rmse_0")),
                "rmse_all": _f(row.get("rmse_all")),
                "baseline_mape": _f(row.get("baseline_mape")),
                "reduction": _f(row.get("mape_reduction")),
                "healthy": not problems,
                "problems": problems,
            }
        )
    return out


def _num(v: float | None, fmt: str = ".3f") -> str:
    return "-" if v is None else format(v, fmt)


def summary_table(rows: list[dict[str, Any]]) -> str:
    width = max([len(r["model"]) for r in rows] + [5])
    lines = [
        f"{'model':<{width}}  {'MAPE':>6} {'RMSE_0':>7} {'RMSE_All':>8} {'base MAPE':>9} {'reduction':>9}  healthy"
    ]
    for r in rows:
        red = "-" if r["reduction"] is None else f"{100 * r['reduction']:.0f}%"
        lines.append(
            f"{r['model']:<{width}}  {_num(r['mape']):>6} {_num(r['rmse_0'], '.2f'):>7} "
            f"{_num(r['rmse_all'], '.2f'):>8} "
            f"{_num(r['baseline_mape']):>9} {red:>9}  {'yes' if r['healthy'] else 'no: ' + '; '.join(r['problems'])}"
        )
    return "\n".join(lines)


def verdict(rows: list[dict[str, Any]], overall: dict[str, str] | None, gates: Gates | None = None) -> str:
    gates = gates or Gates()
    healthy = sum(r["healthy"] for r in rows)
    beat = sum(1 for r in rows if r["reduction"] is not None and r["reduction"] > 0)
    text = f"{healthy} of {len(rows)} models healthy (MAPE <= {gates.max_mape}, trained within "
    text += f"{gates.max_age_days or 0:.0f} days); "
    text += f"{beat} of {len(rows)} beat the historical-average baseline"
    if overall:
        m, b = _f(overall.get("mape")), _f(overall.get("baseline_mape"))
        if m is not None and b:
            text += f"; overall MAPE {m:.3f} against the baseline's {b:.3f} ({100 * (1 - m / b):.0f}% lower)"
    return text


# HTML ------------------------------------------------------------------------------------------------
def _bars(rows: list[dict[str, Any]]) -> str:
    """MAPE per model (bars) against the baseline (ticks) and the 0.45 line."""
    bar_h, gap, label_w, plot_w = 14, 4, 230, 520
    top = max([r["mape"] or 0 for r in rows] + [r["baseline_mape"] or 0 for r in rows] + [MAPE_GATE]) * 1.05
    height = len(rows) * (bar_h + gap) + 40

    def x(v: float) -> float:
        return label_w + plot_w * v / top

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + plot_w + 20}" height="{height}" font-size="11">'
    ]
    for i, r in enumerate(rows):
        y = 20 + i * (bar_h + gap)
        colour = "#2e7d32" if r["healthy"] else "#c62828"
        parts.append(f'<text x="{label_w - 6}" y="{y + 11}" text-anchor="end">{html.escape(r["model"])}</text>')
        if r["mape"] is not None:
            parts.append(
                f'<rect x="{label_w}" y="{y}" width="{x(r["mape"]) - label_w:.1f}" height="{bar_h}" fill="{colour}">'
                f"<title>{html.escape(r['model'])}: MAPE {r['mape']:.3f}</title></rect>"
            )
        if r["baseline_mape"] is not None:
            bx = x(r["baseline_mape"])
            parts.append(
                f'<line x1="{bx:.1f}" x2="{bx:.1f}" y1="{y - 1}" y2="{y + bar_h + 1}" stroke="#000" stroke-width="2"/>'
            )
    gx = x(MAPE_GATE)
    parts.append(
        f'<line x1="{gx:.1f}" x2="{gx:.1f}" y1="10" y2="{height - 20}" stroke="#1565c0" stroke-dasharray="4 3"/>'
    )
    parts.append(f'<text x="{gx + 4:.1f}" y="{height - 6}" fill="#1565c0">MAPE {MAPE_GATE}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _lines(points: list[tuple[str, float | None, float | None]], title: str) -> str:
    """Forecast (blue) against actual (black) over weeks for one series."""
    w, h, pad = 520, 170, 34
    values = [v for _, a, f in points for v in (a, f) if v is not None] or [1.0]
    top = max(values) * 1.1 or 1.0
    n = max(len(points) - 1, 1)

    def xy(i: int, v: float) -> str:
        return f"{pad + (w - 2 * pad) * i / n:.1f},{h - pad - (h - 2 * pad) * v / top:.1f}"

    def path(k: int, colour: str, dash: str = "") -> str:
        series = [p[1] if k == 1 else p[2] for p in points]
        pts = " ".join(xy(i, v) for i, v in enumerate(series) if v is not None)
        return f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2" {dash}/>'

    first, last = html.escape(points[0][0]), html.escape(points[-1][0])
    actual, forecast = path(1, "#000"), path(2, "#1565c0", 'stroke-dasharray="5 3"')
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-size="11">'
        f'<text x="{pad}" y="14" font-weight="bold">{html.escape(title)}</text>'
        f'<line x1="{pad}" x2="{w - pad}" y1="{h - pad}" y2="{h - pad}" stroke="#999"/>'
        f'<text x="{pad}" y="{h - 12}">{first}</text><text x="{w - pad}" y="{h - 12}" text-anchor="end">{last}</text>'
        f'<text x="4" y="{pad}">{top:.0f}</text>'
        f"{actual}{forecast}</svg>"
    )


def _series_charts(forecast_rows: list[dict[str, str]], models_shown: list[str], per_model: int = 1) -> list[str]:
    by_series: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for row in forecast_rows:
        by_series[(row["group"], row["series"])].append(row)
    charts = []
    for model in models_shown:
        series = sorted((k for k in by_series if k[0] == model), key=lambda k: k[1])[:per_model]
        for key in series:
            rows = sorted(by_series[key], key=lambda r: r["week_start"])
            points = [(r["week_start"], _f(r.get("actual")), _f(r.get("forecast"))) for r in rows]
            charts.append(_lines(points, f"{model} / {key[1]}: forecast (blue) and actual (black)"))
    return charts


def _table_row(r: dict[str, Any]) -> str:
    reduction = "-" if r["reduction"] is None else f"{100 * r['reduction']:.0f}%"
    health = "yes" if r["healthy"] else html.escape("; ".join(r["problems"]))
    return (
        f"<tr class={'ok' if r['healthy'] else 'bad'}><td>{html.escape(r['model'])}</td><td>{_num(r['mape'])}</td>"
        f"<td>{_num(r['rmse_0'], '.2f')}</td><td>{_num(r['rmse_all'], '.2f')}</td><td>{_num(r['baseline_mape'])}</td>"
        f"<td>{reduction}</td><td>{health}</td></tr>"
    )


def html_report(
    run_id: str,
    rows: list[dict[str, Any]],
    overall: dict[str, str] | None,
    forecast_rows: list[dict[str, str]],
    now: dt.datetime,
) -> str:
    worst = sorted((r for r in rows if r["mape"] is not None), key=lambda r: -r["mape"])[:2]
    best = sorted((r for r in rows if r["mape"] is not None), key=lambda r: r["mape"])[:2]
    shown = [r["model"] for r in best + worst]
    table = "".join(_table_row(r) for r in rows)
    charts = "".join(f"<div class=chart>{c}</div>" for c in _series_charts(forecast_rows, shown))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Demand forecast: run {html.escape(run_id)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; font-size: 13px; }}
td, th {{ padding: 3px 8px; border-bottom: 1px solid #ddd; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }} tr.bad td {{ color: #c62828; }}
.chart {{ display: inline-block; margin: 6px; }}
</style></head><body>
<h1>Weekly demand forecast</h1>
<p>Run <code>{html.escape(run_id)}</code>, reported {now:%Y-%m-%d %H:%M} UTC.</p>
<p><strong>{html.escape(verdict(rows, overall))}.</strong></p>
<h2>Error per model</h2>
<p>Bars: each model's MAPE on the held-out weeks (green: healthy, red: not). Black ticks: the
historical-average baseline's MAPE. Dashed line: the {MAPE_GATE} target.</p>
{_bars(rows)}
<h2>Forecast against actual</h2>
<p>The two best and the two worst models, one series each, over the held-out and future weeks.</p>
{charts}
<h2>All models</h2>
<table><tr><th>model</th><th>MAPE</th><th>RMSE_0</th><th>RMSE_All</th><th>baseline MAPE</th><th>reduction</th>
<th>healthy</th></tr>
{table}</table>
<p>MAPE: mean absolute percentage error over rows whose actual is above zero. RMSE_0: root mean squared
error over rows whose actual is zero. RMSE_All: over all rows. Healthy: MAPE at most {MAPE_GATE} and the
model trained within {MAX_AGE_DAYS:.0f} days.</p>
</body></html>
"""
