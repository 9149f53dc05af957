"""The sales calendar: a week ``W`` is named by the Monday ISO date of curated shipments'
``week_start`` (``2026-12-21``); a sales week runs Sunday..Saturday, so the Sunday before ``W``
belongs to ``W`` (:func:`week_of`)."""

from __future__ import annotations

import datetime as dt
import re

#: a week's name: an ISO date
WEEK = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ONE_WEEK = dt.timedelta(days=7)


def week_start(d: dt.date) -> dt.date:
    """The Monday naming the sales week (Sunday..Saturday) a day belongs to: the Monday after
    its Sunday, ``monday(d + 1 day)``. The one week rule: the index of weeks (:func:`week_of`)
    and ingestion's mappings (``week = "sales_week"``) both apply it. Computed in one step
    (at most one day on, five back), so that no date Python holds overflows."""
    if isinstance(d, dt.datetime):
        d = d.date()
    return d - dt.timedelta(days=(d.weekday() + 1) % 7 - 1)


def week_of(d: dt.date) -> str:
    """The week a day belongs to, by its name: :func:`week_start`, ISO (``2026-12-21``)."""
    return week_start(d).isoformat()


def last_finished_week(now: dt.datetime) -> str:
    """The latest week whose Saturday has ended by ``now`` (UTC; a naive time is taken as UTC)."""
    utc = now.astimezone(dt.UTC) if now.tzinfo is not None else now.replace(tzinfo=dt.UTC)
    today = utc.date()
    # the latest Sunday at or before today: its midnight ended the Saturday before it
    sunday = today - dt.timedelta(days=(today.weekday() + 1) % 7)
    return (sunday - dt.timedelta(days=6)).isoformat()


def weeks_between(first: str, last: str) -> list[str]:
    """Every week from ``first`` to ``last``, both included (empty when ``last`` is earlier)."""
    start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    out = []
    while start <= end:
        out.append(start.isoformat())
        start += _ONE_WEEK
    return out
