"""Registered data: which curated files a weekly batch trained or scored on, and lineage both
ways (a model card -> its data version -> the files; a file -> the versions holding it -> the
runs that used them). A version is pinned: registering it copies its files' bytes into the
pinned store, and its path names its listing there (:mod:`shared.mlops.pinned`).

The design notes: docs/mlops-loop.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Literal, NamedTuple, TypeVar

from pydantic import ValidationError

from shared import clock
from shared.aml.datarefs import (
    RECORDS,
    DataCatalogError,
    DataVersion,
    DataVersionNotFound,
    is_reference,
    parse_reference,
    read_version,
    record_path,
)
from shared.aml.lakeuri import lake_uri
from shared.ingestion.datasets import SCHEMA_VERSION
from shared.lake import Lake, LocalLake, NotFoundError, check_path
from shared.mlops import pinned
from shared.weeks import layout

__all__ = [
    "DATASETS",
    "DataCatalog",
    "DataCatalogError",
    "DataVersion",
    "DataVersionNotFound",
    "LakeDataCatalog",
    "NothingPinned",
    "RunKind",
    "RunLink",
    "content_hash",
    "datastore_uri",
    "ingested_manifest",
    "is_reference",
    "parse_reference",
    "snapshot",
]

log = logging.getLogger(__name__)

#: the standard datasets a data version covers
DATASETS = ("weather_daily", "shipments_weekly", "store_demographics")
#: threads reading manifests or records from a remote lake, and how many reads each may have queued
READ_WORKERS = 16
_QUEUED_PER_WORKER = 4

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$")
VERSION_PATTERN = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:\.([2-9]|[1-9]\d+))?$")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

RunKind = Literal["train", "score"]
T = TypeVar("T")
R = TypeVar("R")


class NothingPinned(DataCatalogError):
    """No file of a version could be pinned (each was re-ingested since its manifest, or is gone)."""


class RunLink(NamedTuple):
    """A run that used a data version (``kind``: it trained or scored on it)."""

    name: str
    version: str
    run_id: str
    kind: str


# --------------------------------------------------------------------------------------------- helpers
def datastore_uri(lake_path: str) -> str:
    """``lake_path`` as an AML data URI on its container's datastore
    (``curated`` -> ``azureml://datastores/lake_curated/paths/``): :func:`shared.aml.lakeuri.lake_uri`."""
    return lake_uri(lake_path)


def content_hash(files: Mapping[str, str]) -> str:
    """sha256 over the sorted ``"<path> <sha256>"`` lines (each ending in a newline): the same
    files with the same contents give the same hash, whatever the mapping's order."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(f"{path} {files[path]}\n".encode())
    return digest.hexdigest()


def check_week(week: str) -> str:
    """``week`` if it is a Monday written ``YYYY-MM-DD``, else ``ValueError``."""
    try:
        day = dt.date.fromisoformat(week)
    except (TypeError, ValueError):
        raise ValueError(f"week {week!r} is not a date written YYYY-MM-DD") from None
    if day.isoformat() != week or day.weekday() != 0:
        raise ValueError(f"week {week!r} is not a Monday written YYYY-MM-DD")
    return week


def check_name(name: str) -> str:
    """The name, if it is a valid data asset name; ValueError otherwise."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{name!r} is not a data asset name (letters, digits, '_' and '-'; at most 255)")
    return name


def _check_version(version: str) -> str:
    if not isinstance(version, str) or not VERSION_PATTERN.match(version):
        raise DataVersionNotFound(f"{version!r} is not a data version (<week> or <week>.<n>)")
    return version


def _check_files(files: Mapping[str, str]) -> dict[str, str]:
    if not files:
        raise ValueError("a data version needs at least one file")
    for path, sha in files.items():
        check_path(path)
        if not isinstance(sha, str) or not _SHA256.match(sha):
            raise ValueError(f"{path}: {sha!r} is not a sha256 (64 lower-case hex digits)")
    return dict(sorted(files.items()))


def version_name(week: str, n: int) -> str:
    """The ``n``th version of a week: the week, then ``<week>.<n>``."""
    return week if n == 1 else f"{week}.{n}"


def version_key(version: str) -> tuple[str, int]:
    """A version as ``(week, n)``, to sort by; ``(version, 0)`` if it is not a week's."""
    m = VERSION_PATTERN.match(version)
    return (m.group(1), int(m.group(2) or 1)) if m else (version, 0)


def datasets_of(files: Iterable[str]) -> list[str]:
    """The datasets of ``curated/<dataset>/...`` paths, sorted."""
    return sorted({p.split("/")[1] for p in files if p.count("/") >= 2})


def _map(lake: Lake, fn: Callable[[T], R], items: Iterable[T], workers: int = READ_WORKERS) -> Iterator[R]:
    """``fn`` over ``items`` in order: in this thread on a local lake; on a remote one in a
    thread pool with a bounded queue, so that memory stays bounded however many items."""
    if isinstance(lake, LocalLake) or workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="lake-read") as pool:
        pending: deque[Future[R]] = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= workers * _QUEUED_PER_WORKER:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


# --------------------------------------------------------------------------------------------- snapshot
def snapshot(lake: Lake, datasets: Iterable[str] = DATASETS, workers: int = READ_WORKERS) -> dict[str, str]:
    """Curated csv path -> sha256 for every ingested file of ``datasets``, read from the
    manifests beside them (never the CSVs). Manifests of another status, without a curated
    output, unreadable or gone meanwhile (a re-ingest in between) are skipped."""
    found = {
        m["outputs"]["curated"]["path"]: m["outputs"]["curated"]["sha256"] for m in manifests(lake, datasets, workers)
    }
    return dict(sorted(found.items()))


def manifests(
    lake: Lake,
    datasets: Iterable[str] = DATASETS,
    workers: int = READ_WORKERS,
    skipped: dict[str, str] | None = None,
) -> Iterator[dict[str, Any]]:
    """The manifest of every ingested curated file of ``datasets`` that names its curated
    output (a lake path and a sha256 of 64 hex digits), in listing order; the others are skipped
    as :func:`snapshot` says, a corrupt one (not JSON, outputs of the wrong shape) named in
    ``skipped`` with a one-line reason. A storage error other than a manifest gone meanwhile is
    raised."""
    paths = (
        path
        for dataset in datasets
        for path in lake.list(f"curated/{dataset}/v{SCHEMA_VERSION}")
        if path.endswith(".manifest.json")
    )
    for path, manifest, problem in _map(lake, lambda p: (p, *ingested_manifest(lake, p)), paths, workers):
        if problem is not None:
            log.warning("snapshot: manifest %s %s: skipped", path, problem)
            if skipped is not None:
                skipped[path] = f"manifest {problem}: left out"
        if manifest is not None:
            yield manifest


def ingested_manifest(lake: Lake, manifest_path: str) -> tuple[dict[str, Any] | None, str | None]:
    """The manifest if it is an ingested file's naming its curated output, and what is wrong
    with it when it is corrupt (not JSON, outputs of the wrong shape)."""
    try:
        manifest = json.loads(lake.read_bytes(manifest_path))
    except NotFoundError:
        return None, None
    except ValueError as e:
        return None, f"is not JSON ({e})"
    if not isinstance(manifest, dict):
        return None, "is not a JSON object"
    if manifest.get("status") != "ingested":
        return None, None
    outputs = manifest.get("outputs")
    curated = outputs.get("curated") if isinstance(outputs, dict) else None
    if not isinstance(curated, dict):
        return None, "names no curated output (outputs.curated is not an object)"
    path, sha = curated.get("path"), curated.get("sha256")
    if not isinstance(sha, str) or not _SHA256.match(sha):
        return None, "names no sha256 of its curated output (64 lower-case hex digits)"
    try:
        check_path(path if isinstance(path, str) else "")
    except ValueError:
        return None, "names no lake path for its curated output"
    if not isinstance(path, str) or not path.startswith("curated/"):
        return None, "names a curated output outside curated/"
    return manifest, None


# --------------------------------------------------------------------------------------------- the catalogs
class DataCatalog(ABC):
    """What the weekly batch needs of a data catalog."""

    @abstractmethod
    def register(
        self, name: str, week: str, files: Mapping[str, str], skipped: dict[str, str] | None = None
    ) -> DataVersion:
        """The version of ``name`` holding ``files`` as of ``week``: the existing one when this
        week already has one with the same content, else a new one (``<week>``, or the next
        free ``<week>.<n>``), pinned: the files' bytes copied into the pinned store first (only
        those it lacks), the version's path its listing's folder there. ``ValueError`` for a bad
        name, week or file list. A file that cannot be pinned (its bytes are no longer those
        ``files`` lists: re-ingested since the snapshot; or gone): with ``skipped``, it is left
        out of the version (its files and content hash are what was pinned) and named there
        with why, :class:`NothingPinned` when no file could be; without, :class:`DataCatalogError`
        naming it."""

    @abstractmethod
    def get(self, name: str, version: str) -> DataVersion:
        """One version; raises :class:`DataVersionNotFound`."""

    @abstractmethod
    def versions(self, name: str) -> list[DataVersion]:
        """Every version of ``name``, by week, then ``<n>`` (empty for an unknown name)."""

    @abstractmethod
    def link_run(self, name: str, version: str, run_id: str, kind: RunKind = "train") -> RunLink:
        """Record that run ``run_id`` trained or scored on this version (idempotent; a run
        linked with another kind is refused)."""

    @abstractmethod
    def runs_of(self, name: str, version: str) -> list[RunLink]:
        """The runs linked to a version, in the order they were linked."""

    @abstractmethod
    def versions_with_file(self, curated_path: str, sha256: str | None = None) -> list[DataVersion]:
        """Every version (of every name) holding ``curated_path`` (with this content, when
        ``sha256`` is given), by name, week, ``<n>``."""

    def runs_for_file(self, curated_path: str, sha256: str | None = None) -> list[RunLink]:
        """Every run that used a version holding ``curated_path``: ``(name, version, run_id, kind)``."""
        return [link for v in self.versions_with_file(curated_path, sha256) for link in self.runs_of(v.name, v.version)]

    def resolve(self, reference: str) -> DataVersion:
        """The version ``azureml:<name>:<version>`` names; :class:`DataVersionNotFound`."""
        try:
            name, version = parse_reference(reference)
        except ValueError as e:
            raise DataVersionNotFound(str(e)) from None
        return self.get(name, version)


class LakeDataCatalog(DataCatalog):
    """The catalog as records in the lake (see the module's docstring for the layout)."""

    def __init__(
        self,
        lake: Lake,
        top: str = RECORDS,
        folder: str = "curated",
        attempts: int = 1000,
    ) -> None:
        self.lake = lake
        self.top = top.strip("/")
        self.folder = folder.strip("/")
        self.attempts = attempts

    # paths ------------------------------------------------------------------------------------
    def _record_path(self, name: str, version: str) -> str:
        return record_path(name, version, self.top)

    def _runs_folder(self, name: str, version: str) -> str:
        return layout.data_runs(name, version, self.top)

    # the interface -----------------------------------------------------------------------------
    def register(
        self, name: str, week: str, files: Mapping[str, str], skipped: dict[str, str] | None = None
    ) -> DataVersion:
        candidate = self._pinned_candidate(name, week, files, skipped)
        for n in range(1, self.attempts + 1):
            try:
                version = self._claim(candidate, version_name(week, n))
                if self._same(version, candidate):
                    self._list(version)
                    return version
            except DataVersionNotFound:
                raise
            except DataCatalogError as e:  # a corrupt record keeps its version: the next is claimed
                log.warning("data catalog: %s: passed over", e)
        raise DataCatalogError(f"{name}: no free version for week {week} after {self.attempts} attempts")

    def get(self, name: str, version: str) -> DataVersion:
        found = self._read(check_name(name), _check_version(version))
        if found is None:
            raise DataVersionNotFound(f"no version {version} of data {name}")
        return found

    def versions(self, name: str) -> list[DataVersion]:
        check_name(name)
        found = [v for v in self._records(self._record_paths(layout.data_folder(name, self.top))) if v.name == name]
        return sorted(found, key=lambda v: version_key(v.version))

    def link_run(self, name: str, version: str, run_id: str, kind: RunKind = "train") -> RunLink:
        if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
            raise ValueError(f"{run_id!r} is not a run id (letters, digits, '_', '-', '.')")
        if kind not in ("train", "score"):
            raise ValueError(f"kind {kind!r} is neither train nor score")
        self.get(name, version)  # a link to a version that does not exist is refused
        link = RunLink(name, version, run_id, kind)
        path = f"{self._runs_folder(name, version)}/{run_id}.json"
        record = {**link._asdict(), "linked_at": clock.now_iso()}
        if not self.lake.create(path, json.dumps(record, indent=2).encode("utf-8")):
            existing = json.loads(self.lake.read_bytes(path))
            if existing.get("kind") != kind:
                raise DataCatalogError(
                    f"run {run_id} is already linked to {name} version {version} as {existing.get('kind')}, not {kind}"
                )
        return link

    def runs_of(self, name: str, version: str) -> list[RunLink]:
        folder = self._runs_folder(check_name(name), _check_version(version))
        records = [json.loads(self.lake.read_bytes(p)) for p in self.lake.list(folder) if p.endswith(".json")]
        records.sort(key=lambda r: (r.get("linked_at", ""), r["run_id"]))
        return [RunLink(name, version, r["run_id"], r["kind"]) for r in records]

    def versions_with_file(self, curated_path: str, sha256: str | None = None) -> list[DataVersion]:
        found = [
            v
            for v in self._records(self._record_paths(self.top))
            if curated_path in v.files and (sha256 is None or v.files[curated_path] == sha256)
        ]
        return sorted(found, key=lambda v: (v.name, *version_key(v.version)))

    # helpers ------------------------------------------------------------------------------------
    def _candidate(self, name: str, week: str, files: Mapping[str, str]) -> DataVersion:
        """What ``register`` would record (its version is set when claimed)."""
        checked = _check_files(files)
        return DataVersion(
            name=check_name(name),
            version=check_week(week),
            week=week,
            path=pinned.version_uri(name, week),
            content_hash=content_hash(checked),
            files=checked,
            created_at=clock.now_iso(),
        )

    def _claim(self, candidate: DataVersion, version: str) -> DataVersion:
        """The record of ``version``: ``candidate``'s, if this call created it (create-if-absent
        is the version's lock), else the one already there."""
        existing = self._read(candidate.name, version)
        if existing is not None:
            return existing
        claimed = candidate.model_copy(update={"version": version, "path": pinned.version_uri(candidate.name, version)})
        if self.lake.create(self._record_path(candidate.name, version), claimed.to_json()):
            return claimed
        existing = self._read(candidate.name, version)  # another registration claimed it meanwhile
        if existing is None:
            raise DataCatalogError(f"{candidate.name} version {version}: claimed, then gone")
        return existing

    def pin(self, version: DataVersion) -> pinned.PinReport:
        """The version's files' bytes into the pinned store: only those it lacks are copied
        (:func:`shared.mlops.pinned.pin_files`); the files that could not be pinned are the
        report's ``refused``."""
        for path in version.files:
            pinned.relative(path, self.folder)
        report = pinned.pin_files(self.lake, version.files, lambda fn, items: _map(self.lake, fn, items))
        log.info("data %s: %d object(s) pinned (%d bytes), %d already there, %d not pinned",
                 version.name, *report[:3], len(report.refused))  # fmt: skip
        return report

    def _pinned_candidate(
        self, name: str, week: str, files: Mapping[str, str], skipped: dict[str, str] | None
    ) -> DataVersion:
        """What ``register`` records, its files pinned: those that could not be are left out
        (and named in ``skipped``), or refused when no ``skipped`` is given (see ``register``)."""
        candidate = self._candidate(name, week, files)
        refused = dict(sorted(self.pin(candidate).refused.items()))
        if not refused:
            return candidate
        first, why = next(iter(refused.items()))
        more = f" (and {len(refused) - 1} more file(s))" if len(refused) > 1 else ""
        if skipped is None:
            raise DataCatalogError(f"{first}: {why}{more}; register again from a new snapshot")
        skipped.update(refused)
        kept = {path: sha for path, sha in candidate.files.items() if path not in refused}
        if not kept:
            raise NothingPinned(f"{name}: none of its {len(refused)} file(s) could be pinned: {first}: {why}{more}")
        return self._candidate(name, week, kept)

    def _same(self, found: DataVersion, candidate: DataVersion) -> bool:
        """Whether a claimed version is the candidate's: the same content, pinned. A record from
        before the pinned store (the live folder) with the same content is passed over, so that
        the run names a pinned version."""
        if found.content_hash != candidate.content_hash:
            return False
        if not found.pinned:
            log.warning("data %s version %s: not pinned (a record from before the pinned store): passed over",
                        found.name, found.version)  # fmt: skip
        return found.pinned

    def _list(self, version: DataVersion) -> None:
        """The version's listing in its pinned folder (written once; refused when altered)."""
        pinned.write_listing(self.lake, version, self.folder)

    def _read(self, name: str, version: str) -> DataVersion | None:
        return read_version(self.lake, name, version, self.top)

    def _record_paths(self, prefix: str) -> Iterator[str]:
        """The version records below ``prefix`` (``<top>/<name>/<version>.json``, not run links)."""
        for path in self.lake.list(prefix):
            parts = path[len(self.top) + 1 :].split("/")
            if len(parts) == 2 and parts[1].endswith(".json") and VERSION_PATTERN.match(parts[1][: -len(".json")]):
                yield path

    def _records(self, paths: Iterable[str]) -> Iterator[DataVersion]:
        def read(path: str) -> DataVersion | None:
            try:
                return DataVersion.model_validate_json(self.lake.read_bytes(path))
            except NotFoundError:
                return None
            except ValidationError as e:
                raise DataCatalogError(f"the data version record {path} is not valid: {e}") from e

        # one record at a time in memory (a record lists every file)
        return (v for v in _map(self.lake, read, paths) if v is not None)
