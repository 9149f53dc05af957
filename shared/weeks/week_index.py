"""The lake's index of weeks: every ingested file's manifest carries its ``coverage`` (the weeks
it covers and its keys, :mod:`shared.ingestion.coverage`); after the file's outputs are committed,
:func:`index` writes one marker per week and file, ``batches/index/<dataset>/<W>/<id>.json``
(``static/<id>.json`` for a timeless dataset; ``<id>``: :func:`file_id` of the curated path),
holding the file's keys, so that any number of ingests may race (:mod:`shared.weeks.layout`)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from shared import clock, sources
from shared.lake import Lake, NotFoundError
from shared.weeks import layout
from shared.weeks.calendar import WEEK, weeks_between

#: datasets with no date: a file of one covers every week (``static/`` in the index)
TIMELESS = frozenset(name for name, d in sources.DATASETS.items() if d.timeless)
STATIC = layout.STATIC
_WEEK = WEEK


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


def _curated_path(manifest: dict[str, Any], given: str | None) -> str:
    curated = ((manifest.get("outputs") or {}).get("curated")) or {}
    if isinstance(curated.get("path"), str) and curated["path"]:
        return str(curated["path"])
    if given:
        return given
    raise ValueError(f"the manifest of {manifest['raw']['path']} names no curated file, and none was given")


def _manifest_keys(manifest: dict[str, Any]) -> dict[str, list[str]] | None:
    """The coverage's keys, or None when they are not known (truncated, or an old manifest)."""
    cov = manifest.get("coverage") or {}
    keys = cov.get("keys")
    if cov.get("keys_truncated") or not isinstance(keys, dict):
        return None
    return {str(k): sorted(str(v) for v in vs) for k, vs in keys.items() if isinstance(vs, list)}


def _read_json(lake: Lake, path: str) -> Any:
    return json.loads(lake.read_bytes(path))


def index(lake: Lake, manifest: dict[str, Any], curated: str | None = None) -> list[str]:
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
    redone by the next. ``curated``: the file's curated path, for a manifest that does not name
    it (one written before ``outputs``): the ingestion's layout says where it is."""
    names = covered(manifest)
    dataset = manifest.get("dataset")
    if not names or not isinstance(dataset, str):
        return []
    curated = _curated_path(manifest, curated)
    fid = file_id(curated)
    keys = _manifest_keys(manifest)
    record_path = layout.file_record(dataset, fid)
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
            lake.write_bytes(layout.marker(dataset, week, fid), body(week))
        else:
            lake.create(layout.marker(dataset, week, fid), body(week))
    before = record.get("weeks") if isinstance(record, dict) else None
    for week in set(before if isinstance(before, list) else []) - set(names):
        lake.delete(layout.marker(dataset, str(week), fid))
    lake.write_bytes(record_path, json.dumps({"curated": curated, "weeks": names, "keys": keys}).encode())
    return names


def latest_week(lake: Lake, dataset: str = "shipments_weekly") -> str | None:
    """The latest week ``dataset`` has in the index (the names one level below its folder:
    ``<W>`` folders, old-layout ``<W>.json`` markers too; nothing deeper is listed), or None."""
    weeks = {name.removesuffix(".json") for name in lake.children(layout.index_folder(dataset))}
    return max((w for w in weeks if _WEEK.match(w)), default=None)
