"""The report's charts: matplotlib figures rendered to SVG text for inlining into one HTML page
(no display, no JavaScript, nothing fetched when the page opens)."""

from __future__ import annotations

import datetime as dt
import io
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.tooling.report.data import num
from shared.tooling.report.series import GroupSeries

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BLUE, GREEN, RED, GREY = "#1565c0", "#2e7d32", "#c62828", "#9e9e9e"


@contextmanager
def _matplotlib(name: str) -> Iterator[None]:
    """matplotlib set up for SVG text: its cache in a folder of ours (a home folder may be
    read-only), text kept as text, ids salted per chart so two inline SVGs never share one."""
    # matplotlib reads MPLCONFIGDIR once, on its first import: set it before that
    cache = Path(tempfile.gettempdir()) / "forecastops-matplotlib"
    cache.mkdir(exist_ok=True)
    os.environ.setdefault("MPLCONFIGDIR", str(cache))
    import matplotlib

    with matplotlib.rc_context(
        {"svg.fonttype": "none", "svg.hashsalt": name, "font.size": 9, "axes.spines.top": False}
    ):
        yield


def _svg(fig: Figure) -> str:
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    buf = io.StringIO()
    FigureCanvasSVG(fig).print_svg(buf, metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    return text[text.index("<svg") :]  # inline: without the XML declaration and DOCTYPE


def error_chart(rows: list[dict[str, Any]], gate: float | None) -> str:
    """Every model's MAPE, sorted from the lowest, green when healthy and red when not; the
    historical average's MAPE as a black tick; the gate as a dashed line."""
    shown = sorted((r for r in rows if r["mape"] is not None), key=lambda r: (r["mape"], r["model"]))
    with _matplotlib("errors"):
        from matplotlib.figure import Figure

        fig = Figure(figsize=(8, 1.2 + 0.2 * len(shown)), layout="constrained")
        ax = fig.add_subplot()
        y = list(range(len(shown)))
        ax.barh(y, [r["mape"] for r in shown], color=[GREEN if r["healthy"] else RED for r in shown], label="MAPE")
        base = [(i, r["baseline_mape"]) for i, r in enumerate(shown) if r["baseline_mape"] is not None]
        ax.scatter([b for _, b in base], [i for i, _ in base], marker="|", s=120, color="black", label="baseline MAPE")
        if gate is not None:
            ax.axvline(gate, color=BLUE, linestyle="--", label=f"gate {gate}")
        ax.set_yticks(y, [r["model"] for r in shown])
        ax.invert_yaxis()  # the lowest error on top
        ax.set_xlabel("MAPE (mean over the backtest origins)")
        ax.set_ylim(len(shown) - 0.5, -0.5)
        fig.legend(loc="outside upper center", ncols=3)
        ax.grid(axis="x", alpha=0.3)
        return _svg(fig)


def _dates(weeks: Iterable[str]) -> list[dt.date]:
    return [dt.date.fromisoformat(w) for w in weeks]


def _panel(ax: Any, s: GroupSeries, holdout: tuple[str, str], future_from: str) -> None:
    for i, (_, values) in enumerate(sorted(s.origins.items())):
        weeks = sorted(values)
        label = "earlier origins' forecasts" if i == 0 else None
        ax.plot(_dates(weeks), [values[w] for w in weeks], color=GREY, linewidth=1, linestyle="--", label=label)
    band = sorted(s.low)
    if band:
        ax.fill_between(
            _dates(band), [s.low[w] for w in band], [s.high[w] for w in band], color=BLUE, alpha=0.15, label="band"
        )
    weeks = sorted(s.actual)
    ax.plot(_dates(weeks), [s.actual[w] for w in weeks], color="black", linewidth=1.5, label="actual")
    weeks = sorted(s.forecast)
    ax.plot(_dates(weeks), [s.forecast[w] for w in weeks], color=BLUE, linewidth=1.8, label="forecast")
    start, end = _dates(holdout)
    ax.axvspan(start, end, color="#fff3c4", zorder=0, label="holdout")
    ax.axvline(dt.date.fromisoformat(future_from), color=RED, linewidth=1, linestyle=":", label="last actual week")
    ax.set_title(s.name, fontsize=9, loc="left")
    ax.set_ylabel("units per week")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)


def forecast_chart(panels: list[GroupSeries], holdout: tuple[str, str], future_from: str) -> str:
    """Forecast against actual, one panel per group (summed over its series)."""
    with _matplotlib("forecast"):
        from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
        from matplotlib.figure import Figure

        cols = 2
        nrows = (len(panels) + cols - 1) // cols
        fig = Figure(figsize=(10, 0.4 + 2.4 * nrows), layout="constrained")
        axes = fig.subplots(nrows, cols, squeeze=False).ravel()
        for ax, s in zip(axes, panels, strict=False):
            _panel(ax, s, holdout, future_from)
            locator = AutoDateLocator(maxticks=6)
            ax.xaxis.set_major_locator(locator)
            ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        for ax in axes[len(panels) :]:
            ax.set_visible(False)
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=6)
        return _svg(fig)


#: the families drawn per origin, with their names for people
FAMILIES = {
    "blend": "forecast (blend)",
    "baseline": "historical average",
    "snaive": "seasonal naive",
    "oracle": "oracle",
}


def origins_chart(summary: list[dict[str, str]]) -> str:
    """MAPE and WAPE at each backtest origin, every series pooled: the forecast against both
    baselines and the oracle (``summary.csv``'s rows for velocity ``all``)."""
    rows = [r for r in summary if r.get("velocity") == "all" and r.get("origin") != "mean"]
    origins = sorted({r["origin"] for r in rows})
    with _matplotlib("origins"):
        from matplotlib.figure import Figure

        fig = Figure(figsize=(10, 2.8), layout="constrained")
        for i, metric in enumerate(("mape", "wape")):
            ax = fig.add_subplot(1, 2, i + 1)
            for family, label in FAMILIES.items():
                values = {r["origin"]: num(r.get(metric)) for r in rows if r.get("family") == family}
                ys = [values.get(o) for o in origins]
                if any(v is not None for v in ys):
                    ax.plot(origins, [float("nan") if v is None else v for v in ys], marker="o", label=label)
            ax.set_title(f"{metric.upper()} at each backtest origin", fontsize=9, loc="left")
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
            ax.set_xlabel("origin (the last is the holdout)")
        handles, labels = fig.axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=4)
        return _svg(fig)


def trend_chart(runs: list[dict[str, Any]]) -> str:
    """Overall MAPE and WAPE per run, oldest first."""
    runs = [r for r in reversed(runs) if r.get("mape") is not None]
    with _matplotlib("trend"):
        from matplotlib.figure import Figure

        fig = Figure(figsize=(8, 2.6), layout="constrained")
        ax = fig.add_subplot()
        x = list(range(len(runs)))
        ax.plot(x, [r["mape"] for r in runs], marker="o", color=BLUE, label="MAPE")
        ax.plot(x, [r.get("wape") or float("nan") for r in runs], marker="s", color=GREEN, label="WAPE")
        ax.set_xticks(x, [str(r.get("reported_at", ""))[:10] for r in runs], rotation=30, ha="right")
        ax.set_ylabel("overall, mean over origins")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend()
        return _svg(fig)
