"""Time, in one place: the current UTC time and ISO 8601 timestamps with a ``Z``.

Durable orchestrators never call :func:`now` (they take ``context.current_utc_datetime``);
everything else does, so that a test can see one clock.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal


def now() -> dt.datetime:
    """The current time, timezone-aware, in UTC."""
    return dt.datetime.now(dt.UTC)


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
