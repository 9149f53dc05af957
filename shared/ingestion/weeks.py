"""Weeks: which sales weeks a curated file covers, and the lake's index of them.

A week ``W`` is named by the Monday ISO date of curated shipments' ``week_start``
(``2026-12-21``); a sales week runs Sunday..Saturday, so the Sunday before ``W`` belongs to
``W`` (:func:`week_of`).

Every ingested file's manifest carries its ``coverage`` (:class:`Coverage`, gathered batch by
batch as the curated rows are written). After the file's outputs are committed, :func:`index`
marks every week it covers in ``batches/index/<dataset>/<W>.json`` (``static.json`` for a
timeless dataset), each marker created only if absent, so that any number of ingests may race.
:func:`readiness` says which of the :data:`REQUIRED` datasets a week has.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from shared import clock
from shared.lake import Lake

#: the datasets a week's batch needs
REQUIRED = ("weather_daily", "shipments_weekly", "store_demographics")
#: datasets with no date: a file of one covers every week (``static.json`` in the index)
TIMELESS = frozenset({"store_demographics"})
#: the column whose distinct values a manifest's coverage lists, per dataset
KEY_COLUMN = {"shipments_weekly": "store_id", "weather_daily": "zip_code", "store_demographics": "store_id"}
#: the column a dataset's weeks are read from (timeless datasets have none)
DATE_COLUMN = {"shipments_weekly": "week_start", "weather_daily": "date"}
#: beyond this many distinct keys a manifest lists none (``keys: null, keys_truncated: true``)
MAX_KEYS = 5000
#: the index's marker of a timeless dataset
STATIC = "static"

_WEEK = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ONE_WEEK = dt.timedelta(days=7)


def _monday(d: dt.date) -> dt.date:
    return d - dt.timedelta(days=d.weekday())


def week_of(d: dt.date) -> str:
    """The week a day belongs to: the Monday after its Sunday (``monday(d + 1 day)``), ISO."""
    if isinstance(d, dt.datetime):
        d = d.date()
    return _monday(d + dt.timedelta(days=1)).isoformat()


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


class Coverage:
    """The weeks and keys a dataset's curated rows cover, gathered batch by batch in bounded
    memory: the earliest and latest date, and at most :data:`MAX_KEYS` distinct keys.

    Weather counts observed rows only (a forecast covers no week), and its last week only if
    it is observed through its Saturday (else the week before)."""

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset
        self._date = DATE_COLUMN.get(dataset)
        self._key = KEY_COLUMN.get(dataset)
        self._keys: set[str] | None = set()
        self._lo: dt.date | None = None
        self._hi: dt.date | None = None

    def add(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        if self.dataset == "weather_daily":
            table = table.filter(pc.equal(table["kind"], "observed"))
            if not table.num_rows:
                return
        if self._date is not None:
            span = pc.min_max(table[self._date])
            lo, hi = span["min"].as_py(), span["max"].as_py()
            if lo is not None:
                self._lo = lo if self._lo is None else min(self._lo, lo)
                self._hi = hi if self._hi is None else max(self._hi, hi)
        if self._key is not None and self._keys is not None:
            self._keys.update(v for v in pc.unique(table[self._key]).to_pylist() if v is not None)
            if len(self._keys) > MAX_KEYS:
                self._keys = None  # memory stays bounded: past the cap, no key is kept

    def result(self) -> dict[str, Any]:
        """The manifest's ``coverage`` object."""
        first = last = None
        if self._lo is not None and self._hi is not None:
            first, last = week_of(self._lo), week_of(self._hi)
            if self.dataset == "weather_daily" and self._hi.weekday() != 5:  # not through Saturday
                last = (dt.date.fromisoformat(last) - _ONE_WEEK).isoformat()
            if last < first:
                first = last = None
        keys = None
        if self._key is not None and self._keys is not None:
            keys = {self._key: sorted(self._keys)}
        return {
            "first_week": first,
            "last_week": last,
            "keys": keys,
            "keys_truncated": self._key is not None and self._keys is None,
        }


def covered(manifest: dict[str, Any]) -> list[str]:
    """The index markers an ingested file's manifest stands for: its weeks, ``["static"]``
    for a timeless dataset, none for anything else (quarantined, no coverage, no full week)."""
    if manifest.get("status") != "ingested" or not isinstance(manifest.get("coverage"), dict):
        return []
    if manifest["dataset"] in TIMELESS:
        return [STATIC]
    cov = manifest["coverage"]
    if not cov.get("first_week") or not cov.get("last_week"):
        return []
    return weeks_between(cov["first_week"], cov["last_week"])


def _folder(dataset: str) -> str:
    return f"batches/index/{dataset}"


def _marker(dataset: str, name: str) -> str:
    return f"{_folder(dataset)}/{name}.json"


def index(lake: Lake, manifest: dict[str, Any]) -> list[str]:
    """Mark every week an ingested file covers in ``batches/index/<dataset>/<W>.json``
    (``static.json`` for a timeless dataset); return the markers it stands for (the weeks, or
    ``["static"]``), whether this call created them or they existed.

    Call it once the file's outputs are committed. One listing of the dataset's index, then
    a create-if-absent for each missing marker only: a marker holds the first raw file that
    covered the week, and a redelivered or unchanged file costs one listing."""
    names = covered(manifest)
    if not names:
        return []
    dataset = manifest["dataset"]
    folder = _folder(dataset)
    present = {p.rsplit("/", 1)[-1].removesuffix(".json") for p in lake.list(folder)}
    missing = [n for n in names if n not in present]
    if missing:
        raw = manifest["raw"]["path"]
        at = clock.now_iso()
        for name in missing:
            body = {"dataset": dataset, "week": name, "raw": raw, "at": at}
            lake.create(_marker(dataset, name), (json.dumps(body) + "\n").encode())
    return names


@dataclass(frozen=True)
class Readiness:
    """Which of the :data:`REQUIRED` datasets a week has."""

    week: str
    present: tuple[str, ...]
    missing: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return not self.missing


def readiness(lake: Lake, week: str) -> Readiness:
    """Which required datasets have an index marker for ``week`` (a timeless one: its
    ``static.json``)."""
    if not _WEEK.match(week):
        raise ValueError(f"{week!r} is not a week (YYYY-MM-DD, a Monday)")
    present: list[str] = []
    missing: list[str] = []
    for dataset in REQUIRED:
        name = STATIC if dataset in TIMELESS else week
        (present if lake.exists(_marker(dataset, name)) else missing).append(dataset)
    return Readiness(week, tuple(present), tuple(missing))


def latest_week(lake: Lake, dataset: str = "shipments_weekly") -> str | None:
    """The latest week ``dataset`` has in the index (one listing), or None."""
    weeks = [
        name for p in lake.list(_folder(dataset)) if _WEEK.match(name := p.rsplit("/", 1)[-1].removesuffix(".json"))
    ]
    return max(weeks, default=None)
