"""What each model was trained on: the curated files behind a group, and their fingerprint.

A group (model) is ``<region>.<format>.<velocity>``. Its inputs are the curated files whose
rows touch its stores: shipments and demographics files that hold one of the region's stores
of that format, weather files that hold one of their zip codes, read from the manifests'
``coverage.keys`` (:func:`shared.mlops.data_assets.manifests`; no CSV is read but the store
master's, :func:`shared.weeks.store_master`). A file whose keys are not known (an old
manifest, or more keys than a manifest lists) touches every group. Velocity classes are the
pipeline's (per SKU), so both velocities of a region and format share their inputs.

The fingerprint is the files' :func:`~shared.mlops.data_assets.content_hash`: the same files
with the same content give the same fingerprint, whatever order they were ingested in.

The plan reads only the manifests that changed since the last plan: :data:`CACHE` keeps what
each manifest said with the ETag it was listed with; a manifest listed with the same ETag is
not read again, a new or re-ingested one (another ETag) is, and one no longer listed is
dropped. The listing names every manifest (one request per 5,000 on Blob Storage); the reads,
one request each, follow what changed. The cache is only a cache: a missing or corrupt one is
rebuilt from the manifests.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from shared.ingestion.datasets import SCHEMA_VERSION
from shared.lake import Lake, NotFoundError, ObjectInfo
from shared.mlops.data_assets import DATASETS, READ_WORKERS, content_hash, ingested_manifest
from shared.weeks import StoreMaster, layout

__all__ = ["CACHE", "CuratedFile", "curated_files", "fingerprint", "group_files", "split_group"]

log = logging.getLogger(__name__)

#: what each curated file's manifest said, by the ETag the manifest was listed with
CACHE = f"{layout.TOP}/plan/manifests.json"
_CACHE_VERSION = 1


@dataclass(frozen=True)
class CuratedFile:
    """One curated CSV, as its manifest describes it."""

    dataset: str
    path: str
    sha256: str
    #: store ids (shipments, demographics) or zip codes (weather) in it; None: not known
    keys: frozenset[str] | None


def curated_files(
    lake: Lake,
    datasets: Iterable[str] = DATASETS,
    skipped: dict[str, str] | None = None,
    counts: dict[str, int] | None = None,
) -> list[CuratedFile]:
    """Every ingested curated file of ``datasets``, from its manifest, sorted by path. A corrupt
    manifest is left out and named in ``skipped`` (as
    :func:`~shared.mlops.data_assets.manifests` says), every time. Only the manifests that
    changed since the last call are read (see the module); ``counts`` gets ``listed`` and
    ``read``."""
    cache = _load_cache(lake)
    listed = [
        info
        for dataset in datasets
        for info in lake.list_info(f"curated/{dataset}/v{SCHEMA_VERSION}")
        if info.path.endswith(".manifest.json")
    ]
    stale = [info for info in listed if cache.get(info.path, {}).get("etag") != info.etag]
    with ThreadPoolExecutor(max_workers=READ_WORKERS) as pool:
        for info, entry in zip(stale, pool.map(lambda i: _read_entry(lake, i), stale), strict=True):
            cache[info.path] = entry
    names = {info.path for info in listed}
    kept = {path: entry for path, entry in cache.items() if path in names}
    if stale or len(kept) != len(cache):
        _save_cache(lake, kept)
    if counts is not None:
        counts.update(listed=len(listed), read=len(stale))
    if stale:
        log.info("curated files: %d manifests, %d read (new or changed since the last plan)", len(listed), len(stale))
    found = []
    for path, entry in kept.items():
        if entry.get("problem"):
            log.warning("snapshot: manifest %s %s: skipped", path, entry["problem"])
            if skipped is not None:
                skipped[path] = f"manifest {entry['problem']}: left out"
        elif isinstance(file := entry.get("file"), dict):
            keys = file.get("keys")
            found.append(
                CuratedFile(
                    dataset=str(file["dataset"]),
                    path=str(file["path"]),
                    sha256=str(file["sha256"]),
                    keys=frozenset(keys) if isinstance(keys, list) else None,
                )
            )
    return sorted(found, key=lambda f: f.path)


def _read_entry(lake: Lake, info: ObjectInfo) -> dict[str, Any]:
    """The cache's entry of one manifest: its listed ETag and the file it describes (None: not
    an ingested file, or gone meanwhile: the next listing drops it) or what is wrong with it."""
    manifest, problem = ingested_manifest(lake, info.path)
    entry: dict[str, Any] = {"etag": info.etag, "file": None, "problem": problem}
    if manifest is not None:
        curated = manifest["outputs"]["curated"]
        coverage = manifest.get("coverage")
        coverage = coverage if isinstance(coverage, dict) else {}
        keys = coverage.get("keys")
        values = next(iter(keys.values()), None) if isinstance(keys, dict) and keys else None
        known = isinstance(values, list) and not coverage.get("keys_truncated")
        entry["file"] = {
            "dataset": str(manifest.get("dataset")),
            "path": str(curated["path"]),
            "sha256": str(curated["sha256"]),
            "keys": sorted({str(v) for v in values}) if known and isinstance(values, list) else None,
        }
    return entry


def _load_cache(lake: Lake) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(lake.read_bytes(CACHE))
    except NotFoundError:
        return {}
    except ValueError:
        log.warning("the plan's cache of manifests (%s) is not JSON: every manifest is read again", CACHE)
        return {}
    entries = data.get("manifests") if isinstance(data, dict) and data.get("version") == _CACHE_VERSION else None
    if not isinstance(entries, dict):
        return {}
    return {p: e for p, e in entries.items() if _well_formed(e)}


def _well_formed(entry: Any) -> bool:
    """An entry this module wrote (one that is not is read from its manifest again)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("etag"), str):
        return False
    problem, file = entry.get("problem"), entry.get("file")
    if problem is not None and not isinstance(problem, str):
        return False
    if file is None:
        return True
    keys = file.get("keys") if isinstance(file, dict) else None
    return (
        isinstance(file, dict)
        and all(isinstance(file.get(k), str) for k in ("dataset", "path", "sha256"))
        and (keys is None or (isinstance(keys, list) and all(isinstance(k, str) for k in keys)))
    )


def _save_cache(lake: Lake, entries: dict[str, dict[str, Any]]) -> None:
    data = {"version": _CACHE_VERSION, "manifests": dict(sorted(entries.items()))}
    lake.write_bytes(CACHE, json.dumps(data, separators=(",", ":")).encode("utf-8"))


def split_group(group: str) -> tuple[str, str, str]:
    """A group's region, store format and velocity."""
    region, store_format, velocity = group.split(".")
    return region, store_format, velocity


def group_files(group: str, files: list[CuratedFile], stores: StoreMaster) -> list[CuratedFile]:
    """The curated files whose rows touch ``group``'s stores (see the module's rules)."""
    region, store_format, _ = split_group(group)
    ids = {s for s, r in stores.region.items() if r == region and stores.store_format.get(s) == store_format}
    zips = {stores.zip_code[s] for s in ids if s in stores.zip_code}
    return [f for f in files if f.keys is None or f.keys & (zips if f.dataset == "weather_daily" else ids)]


def fingerprint(files: Iterable[CuratedFile]) -> str:
    """The content hash of curated files, by path and SHA-256."""
    return content_hash({f.path: f.sha256 for f in files})
