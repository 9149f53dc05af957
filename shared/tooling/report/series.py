"""Forecast against actual for a group, summed over its series, with the backtest around it:
what the forecast chart draws."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from shared.tooling.report.data import num


@dataclass
class GroupSeries:
    """One group (or every series: ``overall``) summed per week. ``actual`` over every week with
    one; ``forecast`` the holdout's and the future weeks'; ``low``/``high`` the band: that
    forecast x the range of actual / forecast at the same lead over the earlier backtest origins;
    ``origins`` each earlier origin's forecast of its horizon."""

    name: str
    actual: dict[str, float] = field(default_factory=dict)
    forecast: dict[str, float] = field(default_factory=dict)
    low: dict[str, float] = field(default_factory=dict)
    high: dict[str, float] = field(default_factory=dict)
    origins: dict[str, dict[str, float]] = field(default_factory=dict)


def _sums(rows: list[dict[str, str]], group: str | None, column: str) -> dict[tuple[str, str], float]:
    """(origin, week) -> the column summed over the group's series (None: every series)."""
    out: dict[tuple[str, str], float] = defaultdict(float)
    for r in rows:
        if group is not None and r["group"] != group:
            continue
        v = num(r.get(column))
        if v is not None:
            out[(r.get("origin") or "", r["week_start"])] += v
    return out


def _ratios(actual: dict[tuple[str, str], float], forecast: dict[tuple[str, str], float]) -> dict[int, list[float]]:
    """lead (0 = the origin's week) -> actual / forecast at each origin."""
    by_origin: dict[str, list[str]] = defaultdict(list)
    for origin, week in forecast:
        by_origin[origin].append(week)
    out: dict[int, list[float]] = defaultdict(list)
    for origin, weeks in by_origin.items():
        for lead, week in enumerate(sorted(weeks)):
            f, a = forecast[(origin, week)], actual.get((origin, week))
            if f > 0 and a is not None:
                out[lead].append(a / f)
    return out


def group_series(
    backtest: list[dict[str, str]], forecasts: list[dict[str, str]], group: str | None, holdout_from: str
) -> GroupSeries:
    """``backtest``: train's backtest.csv (every origin's horizon, ``role`` validation or
    backtest); ``forecasts``: score's forecasts.csv (``split`` holdout or future)."""
    s = GroupSeries(group or "overall")
    earlier = [r for r in backtest if r.get("role") == "backtest" and r.get("origin") != holdout_from]
    past_actual = _sums(backtest, group, "actual")
    past_forecast = _sums(earlier, group, "forecast")
    for (_, week), v in sorted(past_actual.items()):
        s.actual[week] = v
    for (origin, week), v in past_forecast.items():
        s.origins.setdefault(origin, {})[week] = v
    ratios = _ratios(past_actual, past_forecast)
    for split in ("holdout", "future"):
        rows = [r for r in forecasts if r.get("split") == split]
        for lead, ((_, week), v) in enumerate(sorted(_sums(rows, group, "forecast").items())):
            s.forecast[week] = v
            if ratios.get(lead):
                s.low[week], s.high[week] = v * min(ratios[lead]), v * max(ratios[lead])
        if split == "holdout":
            for (_, week), v in _sums(rows, group, "actual").items():
                s.actual[week] = v
    return s
