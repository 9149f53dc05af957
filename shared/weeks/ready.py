"""Readiness: whether a week has every required dataset (:mod:`shared.sources`) for every
region of the store master, read from the index's markers (:mod:`shared.weeks.week_index`)."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from shared import sources
from shared.lake import Lake, NotFoundError
from shared.weeks import layout
from shared.weeks.calendar import WEEK
from shared.weeks.week_index import TIMELESS

log = logging.getLogger(__name__)

#: the datasets a week's batch needs (the registry's facts)
REQUIRED = sources.required()
#: the store master's key of each dated dataset: a region has the dataset for a week when a
#: file of the week lists one of the region's stores (shipments) or of their zip codes (weather)
REGION_KEY = {name: d.region_key for name, d in sources.DATASETS.items() if d.region_key}
#: where the store master is read from (its curated CSVs: a few small files)
STORE_MASTER = "curated/store_demographics/v1"
#: marker reads in parallel (a week has tens of markers)
READ_WORKERS = 8
_WEEK = WEEK


def _read_json(lake: Lake, path: str) -> Any:
    return json.loads(lake.read_bytes(path))


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


_CORRUPT = object()


def _week_keys(lake: Lake, dataset: str, week: str) -> list[frozenset[str] | None]:
    """The keys of every file that covers ``week`` (one listing of the week's markers, each
    read; None: not known, the file covers every key). An old-layout marker (``<W>.json``,
    from before markers per file) counts as one file of unknown keys; a corrupt marker as none."""
    paths = list(lake.list(f"{layout.index_folder(dataset)}/{week}"))
    column = REGION_KEY[dataset]

    def read(path: str) -> list[frozenset[str] | None]:
        try:
            doc = _read_json(lake, path)
        except NotFoundError:
            return []  # removed since the listing: a new version of the file left the week
        except ValueError:
            doc = None
        # only a marker that says ``"keys": null`` is a file of unknown keys: a corrupt one
        # (truncated, ill-typed) makes its week less ready, never more, and says so
        keys = doc.get("keys", _CORRUPT) if isinstance(doc, dict) else _CORRUPT
        if keys is None:
            return [None]
        values = keys.get(column) if isinstance(keys, dict) else None
        if not isinstance(values, list):
            record = layout.file_record(dataset, path.rsplit("/", 1)[-1].removesuffix(".json"))
            log.warning(
                "index marker %s could not be read: it covers no region (delete %s and ingest its file again)",
                path,
                record,
            )
            return []
        return [frozenset(str(v) for v in values)]

    with ThreadPoolExecutor(max_workers=max(1, min(READ_WORKERS, len(paths)))) as pool:
        found = [k for one in pool.map(read, paths) for k in one]
    if lake.exists(layout.old_marker(dataset, week)):
        found.append(None)
    return found


def _has_static(lake: Lake, dataset: str) -> bool:
    return any(
        p.endswith(".json")
        and (
            p.startswith(f"{layout.index_folder(dataset)}/{layout.STATIC}/")
            or p == layout.old_marker(dataset, layout.STATIC)
        )
        for p in lake.list(layout.index_folder(dataset))
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
