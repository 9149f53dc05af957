"""Time, in one place: the current UTC time and ISO 8601 timestamps with a ``Z``.

Durable orchestrators never call :func:`now` (they take ``context.current_utc_datetime``);
everything else does, so that a test can see one clock.

``FORECASTOPS_TEST_CLOCK_OFFSET_DAYS`` (read once, at import) moves this clock, and the
pipeline steps' (``pipelines/forecast/src/forecast_lib.py``), by that many days: CI runs the
whole suite a year ahead to prove that no test depends on today's date. Unset in production.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from typing import Literal

OFFSET_SETTING = "FORECASTOPS_TEST_CLOCK_OFFSET_DAYS"


def _offset(text: str | None) -> dt.timedelta:
    """The offset a setting's text asks for; an empty, unreadable or non-finite one is none."""
    try:
        days = float(text or 0)
    except ValueError:
        return dt.timedelta(0)
    return dt.timedelta(days=days) if math.isfinite(days) and abs(days) < 36500 else dt.timedelta(0)


OFFSET = _offset(os.environ.get(OFFSET_SETTING))


def now() -> dt.datetime:
    """The current time, timezone-aware, in UTC (moved by :data:`OFFSET` where one is set)."""
    return dt.datetime.now(dt.UTC) + OFFSET


def iso(t: dt.datetime, timespec: Literal["seconds", "milliseconds"] = "seconds") -> str:
    """``2026-11-28T09:30:00Z``: UTC, with a ``Z`` rather than ``+00:00``."""
    return t.astimezone(dt.UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def now_iso(timespec: Literal["seconds", "milliseconds"] = "milliseconds") -> str:
    """The current time as :func:`iso` writes it (milliseconds by default, for records)."""
    return iso(now(), timespec)


def parse_iso(text: str) -> dt.datetime:
    """An ISO 8601 timestamp, ``Z`` or offset; a naive one is taken as UTC."""
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)
