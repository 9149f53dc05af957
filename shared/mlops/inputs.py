"""What each model was trained on: the curated files behind a group, and their fingerprint.

A group (model) is ``<region>.<format>.<velocity>``. Its inputs are the curated files whose
rows touch its stores: shipments and demographics files that hold one of the region's stores
of that format, weather files that hold one of their zip codes, read from the manifests'
``coverage.keys`` (no CSV is read but the store master's). A file whose keys are not known
(an old manifest, or more keys than a manifest lists) touches every group. Velocity classes
are the pipeline's (per SKU), so both velocities of a region and format share their inputs.

The fingerprint is a sha256 over the sorted ``path sha256`` lines of those files: the same
files with the same content give the same fingerprint, whatever order they were ingested in.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from shared.lake import Lake, LakeError

log = logging.getLogger(__name__)

__all__ = ["CuratedFile", "Stores", "curated_files", "fingerprint", "group_files", "read_stores", "split_group"]

#: the standard datasets a forecast trains on
DATASETS = ("weather_daily", "shipments_weekly", "store_demographics")


@dataclass(frozen=True)
class CuratedFile:
    """One curated CSV, as its manifest describes it."""

    dataset: str
    path: str
    sha256: str
    #: store ids (shipments, demographics) or zip codes (weather) in it; None: not known
    keys: frozenset[str] | None


@dataclass
class Stores:
    """The store master: each store's region, format and zip code."""

    region: dict[str, str] = field(default_factory=dict)
    store_format: dict[str, str] = field(default_factory=dict)
    zip_code: dict[str, str] = field(default_factory=dict)

    def pairs(self) -> set[tuple[str, str]]:
        """Every (region, format) with at least one store."""
        return {(self.region[s], self.store_format[s]) for s in self.region if s in self.store_format}


def curated_files(lake: Lake, datasets: Iterable[str] = DATASETS, workers: int = 8) -> list[CuratedFile]:
    """Every ingested curated file of ``datasets``, from its manifest, sorted by path."""
    paths = [p for d in datasets for p in lake.list(f"curated/{d}/v1") if p.endswith(".manifest.json")]

    def read(path: str) -> CuratedFile | None:
        try:
            manifest = json.loads(lake.read_bytes(path))
        except (LakeError, ValueError):
            log.warning("manifest %s could not be read: left out of the batch's inputs", path)
            return None
        curated = ((manifest.get("outputs") or {}).get("curated")) or {}
        if manifest.get("status") != "ingested" or not curated.get("path") or not curated.get("sha256"):
            return None
        coverage = manifest.get("coverage") or {}
        keys = coverage.get("keys")
        values = next(iter(keys.values()), None) if isinstance(keys, dict) and keys else None
        return CuratedFile(
            dataset=str(manifest.get("dataset")),
            path=str(curated["path"]),
            sha256=str(curated["sha256"]),
            keys=frozenset(str(v) for v in values) if isinstance(values, list) else None,
        )

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        found = [f for f in pool.map(read, paths) if f is not None]
    return sorted(found, key=lambda f: f.path)


def read_stores(lake: Lake, files: list[CuratedFile]) -> Stores:
    """The store master from the curated demographics files (the last file wins for a store)."""
    stores = Stores()
    for f in files:
        if f.dataset != "store_demographics":
            continue
        text = lake.read_bytes(f.path).decode("utf-8")
        for row in csv.DictReader(io.StringIO(text)):
            store = row.get("store_id") or ""
            if not store:
                continue
            if row.get("region"):
                stores.region[store] = row["region"].strip().lower()
            if row.get("store_format"):
                stores.store_format[store] = row["store_format"].strip().lower()
            if row.get("zip_code"):
                stores.zip_code[store] = row["zip_code"].strip()
    return stores


def split_group(group: str) -> tuple[str, str, str]:
    region, store_format, velocity = group.split(".")
    return region, store_format, velocity


def group_files(group: str, files: list[CuratedFile], stores: Stores) -> list[CuratedFile]:
    """The curated files whose rows touch ``group``'s stores (see the module's rules)."""
    region, store_format, _ = split_group(group)
    ids = {s for s, r in stores.region.items() if r == region and stores.store_format.get(s) == store_format}
    zips = {stores.zip_code[s] for s in ids if s in stores.zip_code}
    chosen = []
    for f in files:
        wanted = zips if f.dataset == "weather_daily" else ids
        if f.keys is None or f.keys & wanted:
            chosen.append(f)
    return chosen


def fingerprint(files: Iterable[CuratedFile]) -> str:
    lines = sorted(f"{f.path} {f.sha256}" for f in files)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()
