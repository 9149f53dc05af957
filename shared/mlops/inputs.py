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
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shared.lake import Lake
from shared.mlops.data_assets import DATASETS, content_hash, manifests
from shared.weeks import StoreMaster

__all__ = ["CuratedFile", "curated_files", "fingerprint", "group_files", "split_group"]


@dataclass(frozen=True)
class CuratedFile:
    """One curated CSV, as its manifest describes it."""

    dataset: str
    path: str
    sha256: str
    #: store ids (shipments, demographics) or zip codes (weather) in it; None: not known
    keys: frozenset[str] | None


def curated_files(
    lake: Lake, datasets: Iterable[str] = DATASETS, skipped: dict[str, str] | None = None
) -> list[CuratedFile]:
    """Every ingested curated file of ``datasets``, from its manifest, sorted by path (a corrupt
    manifest is left out and named in ``skipped``: :func:`~shared.mlops.data_assets.manifests`)."""
    found = []
    for manifest in manifests(lake, datasets, skipped=skipped):
        curated = manifest["outputs"]["curated"]
        coverage = manifest.get("coverage")
        coverage = coverage if isinstance(coverage, dict) else {}
        keys = coverage.get("keys")
        values = next(iter(keys.values()), None) if isinstance(keys, dict) and keys else None
        known = isinstance(values, list) and not coverage.get("keys_truncated")
        found.append(
            CuratedFile(
                dataset=str(manifest.get("dataset")),
                path=str(curated["path"]),
                sha256=str(curated["sha256"]),
                keys=frozenset(str(v) for v in values) if known and isinstance(values, list) else None,
            )
        )
    return sorted(found, key=lambda f: f.path)


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
