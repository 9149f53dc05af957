"""Pinned data versions: the bytes a data version was registered with, kept where no ingest
writes, so that the version reads exactly them for as long as it exists.

The store is the lake's ``batches/pinned/`` folder (``azureml://datastores/lake_batches/paths/pinned``
on AML: :mod:`shared.aml.lakeuri`), where only the bridge writes, never an ingest::

    batches/pinned/objects/<sha[:2]>/<sha256>.csv          a curated file's bytes, named by their sha256
    batches/pinned/versions/<name>/<version>/files.json    a version's listing (the data asset's folder)
    batches/pinned/versions/<name>/<version>/MLTable       its objects as an MLTable (for AML Studio, mltable)

- **Objects** are content-addressed: a file is copied only when no object holds its sha256
  yet, so the store grows with new content, never with versions (a version whose files are all
  there already copies nothing; which objects are there is one listing of the store, not a
  request per file). The bytes copied are hashed on the way: a file whose bytes do not hash to
  the sha256 its manifest listed (re-ingested between the snapshot and the copy), or that is
  gone, is not pinned (the report's ``refused`` says why) and no object is written. An
  object is created whole in one create-if-absent write (``Lake.create``: two registrations
  pinning the same bytes at once never interleave), and never rewritten.
- **The listing** holds the version's name, version, week and content hash, and per curated file
  (its path below ``curated/``: ``shipments_weekly/v1/erp/2026-11-23.csv``) its sha256 and its
  object (``objects/ab/ab12...csv``, below the store). It is created once (create-if-absent); a
  listing already there that says otherwise is refused.

Reading a version (pipelines/forecast/src/pinned.py, the prepare step): the listing, then each
object, its sha256 checked, laid out as the curated folder. A tampered or missing object stops
the step with one line naming it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

from shared.aml.datarefs import DataCatalogError, DataVersion, listing_of
from shared.aml.lakeuri import lake_uri
from shared.lake import ChangedWhileReadError, Lake, NotFoundError
from shared.weeks import layout

__all__ = [
    "PinReport",
    "StoreUsage",
    "listing",
    "mltable",
    "pin_files",
    "read_other_data",
    "store_usage",
    "verify",
    "version_uri",
    "write_listing",
]

#: what a run's prepare step wrote about the data it read (``data_version``: name, version, content hash)
RUN_META = "outputs/prepare/features/meta.json"

log = logging.getLogger(__name__)

#: how much of a file is read (and hashed, and written) at a time
CHUNK_BYTES = 4 * 1024 * 1024

Mapper = Callable[[Callable[[Any], Any], Iterable[Any]], Iterator[Any]]


class PinReport(NamedTuple):
    """What pinning a version's files did: objects copied (and their bytes), files whose object
    was there already, and the files that could not be pinned (curated path -> why, one line)."""

    copied: int
    copied_bytes: int
    present: int
    refused: Mapping[str, str] = MappingProxyType({})


class StoreUsage(NamedTuple):
    """The pinned store's objects: how many, and their bytes."""

    objects: int
    bytes: int


def object_path(sha256: str) -> str:
    """An object's lake path (``batches/pinned/objects/ab/ab12...csv``)."""
    return f"{layout.PINNED}/{layout.pinned_object(sha256)}"


def version_folder(name: str, version: str) -> str:
    """A version's folder's lake path (``batches/pinned/versions/<name>/<version>``)."""
    return f"{layout.PINNED}/{layout.pinned_version(name, version)}"


def version_uri(name: str, version: str) -> str:
    """A version's folder as an AML data URI: the data asset's path."""
    return lake_uri(version_folder(name, version))


def relative(path: str, folder: str) -> str:
    """A curated file's path below ``folder`` (``curated/x/v1/a.csv`` -> ``x/v1/a.csv``);
    ``ValueError`` for a file outside it."""
    prefix = folder.strip("/") + "/"
    if not path.startswith(prefix) or len(path) == len(prefix):
        raise ValueError(f"{path}: not a file of {prefix} (a data version pins the curated folder's files)")
    return path[len(prefix) :]


def pin_files(lake: Lake, files: Mapping[str, str], mapper: Mapper | None = None) -> PinReport:
    """Every file's bytes as the object of its sha256, copied when no object holds them yet
    (``mapper`` runs the copies, in threads on a remote lake). Which objects exist is one
    listing of the store (never a request per file: a version lists every curated file of
    history); only the new sha256s are read and copied. A file that cannot be pinned (its bytes
    no longer hash to the sha256 given, or it is gone) is in the report's ``refused``, with why,
    and no object is written for it."""
    present = {info.path for info in lake.list_info(f"{layout.PINNED}/{layout.PINNED_OBJECTS}")}
    paths_of: dict[str, list[str]] = {}
    for path, sha in sorted(files.items()):
        paths_of.setdefault(sha, []).append(path)
    new = sorted(sha for sha in paths_of if object_path(sha) not in present)

    def one(sha: str) -> tuple[int | None, dict[str, str]]:
        # the first of the files holding these bytes that still does is copied; the others need no copy
        refused: dict[str, str] = {}
        for path in paths_of[sha]:
            try:
                return _copy(lake, path, sha, object_path(sha)), refused
            except _Refused as e:
                refused[path] = str(e)
        return None, refused

    results: list[tuple[int | None, dict[str, str]]] = list((mapper or map)(one, new))
    copied = [n for n, _ in results if n is not None and n >= 0]
    refused = {path: why for n, by_path in results if n is None for path, why in by_path.items()}
    pinned = sum(len(paths) for paths in paths_of.values()) - len(refused)
    return PinReport(len(copied), sum(copied), pinned - len(copied), refused)


class _Refused(Exception):
    """A file that cannot be pinned: why (one line)."""


def _copy(lake: Lake, path: str, sha: str, target: str) -> int:
    """One file's bytes as the object ``target``, if they hash to ``sha``: created in one
    create-if-absent write, so that two registrations pinning the same bytes at once never
    interleave (the second finds the object there); the bytes it copied (-1 when another
    registration created it meanwhile). :class:`_Refused` when they do not hash to ``sha``."""
    try:
        data = lake.read_bytes(path)
    except NotFoundError:
        raise _Refused("gone since its manifest listed it: not pinned") from None
    except ChangedWhileReadError:
        raise _Refused("rewritten while it was copied: not pinned; register again") from None
    found = hashlib.sha256(data).hexdigest()
    if found != sha:
        raise _Refused(
            f"its bytes hash to {found}, not the {sha} the snapshot listed from its manifest "
            "(re-ingested since?): not pinned"
        )
    return len(data) if lake.create(target, data) else -1


def listing(version: DataVersion, folder: str = "curated") -> dict[str, Any]:
    """The version's listing (see the module)."""
    return {
        "name": version.name,
        "version": version.version,
        "week": version.week,
        "content_hash": version.content_hash,
        "store": lake_uri(layout.PINNED),
        "files": {
            relative(path, folder): {"sha256": sha, "object": layout.pinned_object(sha)}
            for path, sha in sorted(version.files.items())
        },
    }


def write_listing(lake: Lake, version: DataVersion, folder: str = "curated") -> str:
    """The version's listing, created once in its folder; its lake path. One already there
    that lists otherwise raises :class:`DataCatalogError`."""
    wanted = listing(version, folder)
    path = listing_of(version_folder(version.name, version.version))
    if not lake.create(path, json.dumps(wanted, indent=2).encode("utf-8")):
        try:
            found = json.loads(lake.read_bytes(path))
        except ValueError:
            found = None
        if not isinstance(found, dict) or {k: found.get(k) for k in wanted} != wanted:
            raise DataCatalogError(f"{path} does not list what {version.reference} was registered with: altered")
    write_mltable(lake, version)
    return path


#: a version's MLTable, beside its listing: its objects as a table of files, readable outside prepare
MLTABLE = "MLTable"


def mltable(version: DataVersion) -> str:
    """The version's ``MLTable`` (YAML): each file's object by its datastore URI, one path per
    curated file in the listing's order (an object shared by two files is listed for each). No
    read transformation: the files are of several datasets, each with its own columns; which
    curated file each is, files.json says."""
    lines = [
        f"# data version {version.reference} (ForecastOps): its files' pinned objects; files.json maps",
        "# each to its curated path and sha256, and is what the pipelines read",
        "type: mltable",
        "paths:",
    ]
    lines += [f"  - file: {lake_uri(object_path(sha))}" for _, sha in sorted(version.files.items())]
    return "\n".join(lines) + "\n"


def write_mltable(lake: Lake, version: DataVersion) -> str:
    """The version's ``MLTable``, created once in its folder; its lake path. One already there
    that says otherwise raises :class:`DataCatalogError`."""
    wanted = mltable(version).encode("utf-8")
    path = f"{version_folder(version.name, version.version)}/{MLTABLE}"
    if not lake.create(path, wanted) and lake.read_bytes(path) != wanted:
        raise DataCatalogError(f"{path} does not list what {version.reference} was registered with: altered")
    return path


def verify(lake: Lake, version: DataVersion) -> list[str]:
    """What is wrong with a pinned version's objects (missing, or bytes of another sha256), one
    line each; empty when every object reads as registered. Reads every object."""
    problems = []
    for path, sha in sorted(version.files.items()):
        digest = hashlib.sha256()
        try:
            with lake.open(object_path(sha)) as (stream, _):
                while chunk := stream.read(CHUNK_BYTES):
                    digest.update(chunk)
        except NotFoundError:
            problems.append(f"{path}: its object {object_path(sha)} is missing")
            continue
        if digest.hexdigest() != sha:
            problems.append(f"{path}: its object {object_path(sha)} holds bytes of sha256 {digest.hexdigest()}")
    return problems


def read_other_data(
    lake: Lake,
    run_id: str,
    data: Mapping[str, Any],
    kind: str = "training",
    consequence: str = "its models are not registered",
) -> str | None:
    """Why run ``run_id``'s models are not registered (``kind``, ``consequence``: or a scoring
    run's forecasts not published) when its prepare step read data other than
    the plan's (``data``: the plan's version: ``reference``, ``content_hash``, ``pinned``), one
    line; None when it read the plan's. Prepare writes the content hash of the listing it read,
    checked against the listing's files and every object against its sha256, into
    ``runs/<run_id>/outputs/prepare/features/meta.json``: a listing rewritten consistently since
    the plan registered it reads, but not as the plan's. A run with no meta.json at all (its
    outputs were not kept) is not refused here (logged): the check is on what the run says."""
    path = f"runs/{run_id}/{RUN_META}"
    try:
        meta = json.loads(lake.read_bytes(path))
    except NotFoundError:
        log.warning("run %s: no %s: which data it read is not known", run_id, path)
        return None
    except ValueError:
        meta = None
    read = meta.get("data_version") if isinstance(meta, dict) else None
    found = read.get("content_hash") if isinstance(read, dict) else None
    if found is None and not data.get("pinned", True):
        return None  # a plan from before the pinned store names the live folder: no listing read
    if found != data.get("content_hash"):
        return (
            f"the {kind} run {run_id} read data of content hash {found} ({path}), not the "
            f"{data.get('content_hash')} of {data.get('reference')} the plan registered: {consequence}"
        )
    return None


def store_usage(lake: Lake) -> StoreUsage:
    """How many objects the pinned store holds, and their bytes."""
    infos = list(lake.list_info(f"{layout.PINNED}/{layout.PINNED_OBJECTS}"))
    return StoreUsage(len(infos), sum(i.size for i in infos))


def needed_but_left_out(files: Sequence[Any], kept: Sequence[Any], unpinned: Mapping[str, str]) -> str:
    """What a version cannot do without and lost to pinning (``files``, curated files with
    ``path`` and ``dataset``; ``kept``, those pinned): a store master file (every group reads
    it), or every shipments file; "" when none."""
    lost = [f.path for f in files if f.path in unpinned and f.dataset == "store_demographics"]
    if lost:
        return f"the store master ({lost[0]})"
    if not any(f.dataset == "shipments_weekly" for f in kept) and any(f.dataset == "shipments_weekly" for f in files):
        return "every shipments file"
    return ""
