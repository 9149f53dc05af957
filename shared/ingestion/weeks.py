"""Weeks: which sales weeks a curated file covers, the lake's index of them, and readiness.

A week ``W`` is named by the Monday ISO date of curated shipments' ``week_start``
(``2026-12-21``); a sales week runs Sunday..Saturday, so the Sunday before ``W`` belongs to
``W`` (:func:`week_of`).

Every ingested file's manifest carries its ``coverage`` (:class:`Coverage`, gathered batch by
batch as the curated rows are written): the exact weeks it covers and its keys (store ids or
zip codes). After the file's outputs are committed, :func:`index` writes one marker per week
and file, ``batches/index/<dataset>/<W>/<id>.json`` (``static/<id>.json`` for a timeless
dataset; ``<id>``: :func:`file_id` of the curated path), holding the file's keys, so that any
number of ingests may race. :func:`readiness` says whether a week has every
:data:`REQUIRED` dataset for every region of the store master.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import logging
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared import clock, sources
from shared.ingestion.layout import outputs_for
from shared.lake import Lake, NotFoundError

if TYPE_CHECKING:  # pyarrow is imported where rows are counted: the bridge, which only reads
    import pyarrow as pa  # the index (readiness, the latest week), never loads it

log = logging.getLogger(__name__)

#: the datasets a week's batch needs (the registry's facts, :mod:`shared.sources`)
REQUIRED = sources.required()
#: datasets with no date: a file of one covers every week (``static/`` in the index)
TIMELESS = frozenset(name for name, d in sources.DATASETS.items() if d.timeless)
#: the column whose distinct values a manifest's coverage lists, per dataset
KEY_COLUMN = {name: d.key_column for name, d in sources.DATASETS.items()}
#: the column a dataset's weeks are read from (timeless datasets have none)
DATE_COLUMN = {name: d.date_column for name, d in sources.DATASETS.items() if d.date_column}
#: the store master's key of each dated dataset: a region has the dataset for a week when a
#: file of the week lists one of the region's stores (shipments) or of their zip codes (weather)
REGION_KEY = {name: d.region_key for name, d in sources.DATASETS.items() if d.region_key}
#: beyond this many distinct keys a manifest lists none (``keys: null, keys_truncated: true``)
MAX_KEYS = 5000
#: the index's folder of a timeless dataset
STATIC = "static"
#: where the store master is read from (its curated CSVs: a few small files)
STORE_MASTER = "curated/store_demographics/v1"
#: marker reads in parallel (a week has tens of markers)
READ_WORKERS = 8

_WEEK = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ONE_WEEK = dt.timedelta(days=7)
_SATURDAY = 5


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
    memory: the set of weeks (a few hundred at most) and at most :data:`MAX_KEYS` distinct keys.

    Weather counts observed rows only (a forecast covers no week), and a week only if its
    Saturday is observed (a week observed up to its Friday is not over in the file)."""

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset
        self._date = DATE_COLUMN.get(dataset)
        self._key = KEY_COLUMN.get(dataset)
        self._keys: set[str] | None = set()
        self._weeks: set[str] = set()

    def add(self, table: pa.Table) -> None:
        import pyarrow.compute as pc

        if not table.num_rows:
            return
        if self.dataset == "weather_daily":
            table = table.filter(pc.equal(table["kind"], "observed"))
            if not table.num_rows:
                return
        if self._date is not None:
            days = [d for d in pc.unique(table[self._date]).to_pylist() if d is not None]
            if self.dataset == "weather_daily":
                days = [d for d in days if d.weekday() == _SATURDAY]
            self._weeks.update(week_of(d) for d in days)
        if self._key is not None and self._keys is not None:
            self._keys.update(v for v in pc.unique(table[self._key]).to_pylist() if v is not None)
            if len(self._keys) > MAX_KEYS:
                self._keys = None  # memory stays bounded: past the cap, no key is kept

    def result(self) -> dict[str, Any]:
        """The manifest's ``coverage`` object: ``weeks`` (sorted; null for a timeless dataset),
        ``first_week`` and ``last_week`` (the first and last of them, or null), the keys."""
        weeks = sorted(self._weeks) if self._date is not None else None
        keys = None
        if self._key is not None and self._keys is not None:
            keys = {self._key: sorted(self._keys)}
        return {
            "first_week": weeks[0] if weeks else None,
            "last_week": weeks[-1] if weeks else None,
            "weeks": weeks,
            "keys": keys,
            "keys_truncated": self._key is not None and self._keys is None,
        }


def covered(manifest: dict[str, Any]) -> list[str]:
    """The weeks an ingested file's manifest covers, sorted: its coverage's ``weeks``;
    ``["static"]`` for a timeless dataset; none for anything else (quarantined, no coverage,
    no full week). A manifest written before ``weeks`` existed covers its
    ``first_week..last_week``."""
    if manifest.get("status") != "ingested" or not isinstance(manifest.get("coverage"), dict):
        return []
    if manifest["dataset"] in TIMELESS:
        return [STATIC]
    cov = manifest["coverage"]
    if isinstance(cov.get("weeks"), list):
        return sorted({w for w in cov["weeks"] if isinstance(w, str) and _WEEK.match(w)})
    if not cov.get("first_week") or not cov.get("last_week"):
        return []
    return weeks_between(cov["first_week"], cov["last_week"])


def file_id(curated: str) -> str:
    """The index's name of a curated file: 16 hex digits of the sha256 of its path (stable
    across versions of the file; distinct files, distinct names)."""
    return hashlib.sha256(curated.encode("utf-8")).hexdigest()[:16]


def _folder(dataset: str) -> str:
    return f"batches/index/{dataset}"


def _marker(dataset: str, week: str, fid: str) -> str:
    return f"{_folder(dataset)}/{week}/{fid}.json"


def _old_marker(dataset: str, week: str) -> str:
    """The layout before markers per file: one per week, by the first file that covered it."""
    return f"{_folder(dataset)}/{week}.json"


def _curated_path(manifest: dict[str, Any]) -> str:
    curated = ((manifest.get("outputs") or {}).get("curated")) or {}
    if isinstance(curated.get("path"), str) and curated["path"]:
        return str(curated["path"])
    return outputs_for(manifest["raw"]["path"]).curated


def _manifest_keys(manifest: dict[str, Any]) -> dict[str, list[str]] | None:
    """The coverage's keys, or None when they are not known (truncated, or an old manifest)."""
    cov = manifest.get("coverage") or {}
    keys = cov.get("keys")
    if cov.get("keys_truncated") or not isinstance(keys, dict):
        return None
    return {str(k): sorted(str(v) for v in vs) for k, vs in keys.items() if isinstance(vs, list)}


def _read_json(lake: Lake, path: str) -> Any:
    return json.loads(lake.read_bytes(path))


def _record(dataset: str, fid: str) -> str:
    """What the index knows of one file: the weeks it marked and the keys it marked them with
    (not a week: ``files`` never matches a week's name)."""
    return f"{_folder(dataset)}/files/{fid}.json"


def index(lake: Lake, manifest: dict[str, Any]) -> list[str]:
    """Mark every week an ingested file covers with the file's own marker,
    ``batches/index/<dataset>/<W>/<id>.json`` (``static/<id>.json`` for a timeless dataset):
    ``{dataset, week, curated, raw, at, keys}``; return the weeks (or ``["static"]``), whether
    this call wrote their markers or they existed.

    Call it once the file's outputs are committed. The file's record
    (``batches/index/<dataset>/files/<id>.json``: its weeks and keys) is read first: when it
    says what the manifest says, nothing is written (a redelivered or unchanged file costs one
    read, whatever the size of the index). Otherwise the markers are written (created, or
    rewritten with the new version's keys), the markers of weeks the new version no longer
    covers are removed, and the record is written last, so that a call that stops half-way is
    redone by the next."""
    names = covered(manifest)
    dataset = manifest.get("dataset")
    if not names or not isinstance(dataset, str):
        return []
    curated = _curated_path(manifest)
    fid = file_id(curated)
    keys = _manifest_keys(manifest)
    record_path = _record(dataset, fid)
    try:
        record = _read_json(lake, record_path)
    except (NotFoundError, ValueError):
        record = None
    if isinstance(record, dict) and record.get("weeks") == names and record.get("keys") == keys:
        return names
    at = clock.now_iso()
    raw = manifest["raw"]["path"]

    def body(week: str) -> bytes:
        doc = {"dataset": dataset, "week": week, "curated": curated, "raw": raw, "at": at, "keys": keys}
        return (json.dumps(doc) + "\n").encode()

    rewrite = isinstance(record, dict) and record.get("keys") != keys
    for week in names:
        if rewrite:
            lake.write_bytes(_marker(dataset, week, fid), body(week))
        else:
            lake.create(_marker(dataset, week, fid), body(week))
    before = record.get("weeks") if isinstance(record, dict) else None
    for week in set(before if isinstance(before, list) else []) - set(names):
        lake.delete(_marker(dataset, str(week), fid))
    lake.write_bytes(record_path, json.dumps({"curated": curated, "weeks": names, "keys": keys}).encode())
    return names


def _stale_keys(lake: Lake, path: str, keys: dict[str, list[str]] | None) -> bool:
    try:
        return bool(_read_json(lake, path).get("keys") != keys)
    except (NotFoundError, ValueError, AttributeError):
        return True


# readiness ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Readiness:
    """Whether a week has every :data:`REQUIRED` dataset, for every region of the store master.

    ``present``: the datasets the week has in full; ``missing``: the others (no file at all,
    or files that leave regions out), so that the week is complete when nothing is missing;
    ``gaps``: of the missing datasets that have files for the week, the regions they lack."""

    week: str
    present: tuple[str, ...]
    missing: tuple[str, ...]
    gaps: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.missing

    def describe(self) -> str:
        """One line: what the week lacks (``no curated weather_daily for the week of
        2026-12-21; shipments_weekly lacks regions plains, west``), or that it is complete."""
        if self.complete:
            return f"the week of {self.week} is complete"
        parts = []
        for dataset in self.missing:
            regions = self.gaps.get(dataset)
            if regions:
                noun = "region" if len(regions) == 1 else "regions"
                parts.append(f"{dataset} lacks {noun} {', '.join(regions)}")
            else:
                parts.append(f"no curated {dataset}")
        parts[0] += f" for the week of {self.week}"
        return "; ".join(parts)


@dataclass
class StoreMaster:
    """Each store's region, zip code and store format, from the curated store_demographics
    files (readiness reads regions and zip codes; the weekly batch's groups the formats too)."""

    region: dict[str, str] = field(default_factory=dict)
    zip_code: dict[str, str] = field(default_factory=dict)
    store_format: dict[str, str] = field(default_factory=dict)

    def regions(self) -> set[str]:
        return set(self.region.values())

    def pairs(self) -> set[tuple[str, str]]:
        """Every (region, store format) with at least one store."""
        return {(self.region[s], self.store_format[s]) for s in self.region if s in self.store_format}

    def keys_of(self, region: str, key: str) -> set[str]:
        """The region's store ids (``key`` store_id) or their zip codes (``key`` zip_code)."""
        stores = {s for s, r in self.region.items() if r == region}
        if key == "zip_code":
            return {self.zip_code[s] for s in stores if s in self.zip_code}
        return stores


def store_master(lake: Lake) -> StoreMaster:
    """The store master: every curated store_demographics CSV (a few small files; the later
    path wins for a store). A file that is not CSV in UTF-8, or is gone since the listing, is
    left out, with a warning; a storage error raises (a transient failure must not make a week
    look complete by the rule without regions)."""
    master = StoreMaster()
    for path in lake.list(STORE_MASTER):
        if not path.endswith(".csv"):
            continue
        try:
            text = lake.read_bytes(path).decode("utf-8")
            rows = list(csv.DictReader(io.StringIO(text)))
        except (NotFoundError, UnicodeDecodeError, csv.Error) as e:
            log.warning("store master %s could not be read: left out of readiness (%s)", path, e)
            continue
        for row in rows:
            store = (row.get("store_id") or "").strip()
            region = (row.get("region") or "").strip().lower()
            if not store or not region:
                continue
            master.region[store] = region
            zip_code = (row.get("zip_code") or "").strip()
            if zip_code:
                master.zip_code[store] = zip_code
            store_format = (row.get("store_format") or "").strip().lower()
            if store_format:
                master.store_format[store] = store_format
    return master


def _week_keys(lake: Lake, dataset: str, week: str) -> list[frozenset[str] | None]:
    """The keys of every file that covers ``week`` (one listing of the week's markers, each
    read; None: not known, the file covers every key). An old-layout marker (``<W>.json``,
    from before markers per file) counts as one file of unknown keys."""
    paths = list(lake.list(f"{_folder(dataset)}/{week}"))
    column = REGION_KEY[dataset]

    def read(path: str) -> list[frozenset[str] | None]:
        try:
            keys = _read_json(lake, path).get("keys")
        except NotFoundError:
            return []  # removed since the listing: a new version of the file left the week
        except (ValueError, AttributeError):
            log.warning("index marker %s could not be read: taken as a file of unknown keys", path)
            return [None]
        values = keys.get(column) if isinstance(keys, dict) else None
        return [frozenset(str(v) for v in values) if isinstance(values, list) else None]

    with ThreadPoolExecutor(max_workers=max(1, min(READ_WORKERS, len(paths)))) as pool:
        found = [k for one in pool.map(read, paths) for k in one]
    if lake.exists(_old_marker(dataset, week)):
        found.append(None)
    return found


def _has_static(lake: Lake, dataset: str) -> bool:
    return any(
        p.endswith(".json") and (p.startswith(f"{_folder(dataset)}/{STATIC}/") or p == _old_marker(dataset, STATIC))
        for p in lake.list(_folder(dataset))
    )


def _lacking(files: Iterable[frozenset[str] | None], master: StoreMaster, key: str) -> tuple[str, ...]:
    files = list(files)
    if any(f is None for f in files):
        return ()
    known: set[str] = set().union(*(f for f in files if f is not None))
    return tuple(sorted(r for r in master.regions() if not (master.keys_of(r, key) & known)))


def readiness(lake: Lake, week: str) -> Readiness:
    """Whether ``week`` is complete: a store_demographics file exists, and every region of the
    store master (:func:`store_master`) has shipments rows for the week (a file whose store
    ids hold one of the region's stores) and observed weather (a file whose zip codes hold one
    of the region's stores' zip codes); a file of unknown keys covers every region. With no
    store master (none, empty or unreadable), a dataset is there when any file covers the week.

    Reads the week's markers only (tens of files), the store master and one listing of the
    timeless dataset's index: not every manifest."""
    if not _WEEK.match(week):
        raise ValueError(f"{week!r} is not a week (YYYY-MM-DD, a Monday)")
    master = store_master(lake)
    present: list[str] = []
    missing: list[str] = []
    gaps: dict[str, tuple[str, ...]] = {}
    for dataset in REQUIRED:
        if dataset in TIMELESS:
            (present if _has_static(lake, dataset) else missing).append(dataset)
            continue
        files = _week_keys(lake, dataset, week)
        if not files:
            missing.append(dataset)
            continue
        lacking = _lacking(files, master, REGION_KEY[dataset]) if master.regions() else ()
        if lacking:
            gaps[dataset] = lacking
            missing.append(dataset)
        else:
            present.append(dataset)
    return Readiness(week, tuple(present), tuple(missing), gaps)


def latest_week(lake: Lake, dataset: str = "shipments_weekly") -> str | None:
    """The latest week ``dataset`` has in the index (the names one level below its folder:
    ``<W>`` folders, old-layout ``<W>.json`` markers too; nothing deeper is listed), or None."""
    weeks = {name.removesuffix(".json") for name in lake.children(_folder(dataset))}
    return max((w for w in weeks if _WEEK.match(w)), default=None)
