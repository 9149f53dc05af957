"""Where weeks and batches live in the lake: the only code that builds ``batches/...`` paths.

```
batches/index/<dataset>/<W>/<id>.json          a curated file covers week W (static/ when timeless)
batches/index/<dataset>/files/<id>.json        what the index knows of one file
batches/week=<W>/<name>                        the week's batch records (announced.json, plan.json...)
batches/data/<name>/<version>.json             a data version's record (and its runs)
batches/ingest-requests/<source>/<id>.json     a queued re-ingest request
batches/pinned/objects/<sha[:2]>/<sha256>.csv  a curated file's bytes, named by their sha256 (written once)
batches/pinned/versions/<name>/<version>/files.json   a data version's listing: each curated file -> its object
```
"""

from __future__ import annotations

#: the lake's folder of every batch record
TOP = "batches"
#: the index of weeks, one folder per dataset
INDEX = f"{TOP}/index"
#: the records of data versions (the lineage index)
DATA = f"{TOP}/data"
#: the records of queued re-ingest requests
INGEST_REQUESTS = f"{TOP}/ingest-requests"
#: the index's folder of a timeless dataset
STATIC = "static"


def index_folder(dataset: str) -> str:
    """The index's folder of ``dataset``."""
    return f"{INDEX}/{dataset}"


def marker(dataset: str, week: str, fid: str) -> str:
    """The marker of file ``fid`` covering ``week`` (or :data:`STATIC`)."""
    return f"{index_folder(dataset)}/{week}/{fid}.json"


def old_marker(dataset: str, week: str) -> str:
    """The layout before markers per file: one per week, by the first file that covered it."""
    return f"{index_folder(dataset)}/{week}.json"


def file_record(dataset: str, fid: str) -> str:
    """What the index knows of one file: the weeks it marked and the keys it marked them with
    (not a week: ``files`` never matches a week's name)."""
    return f"{index_folder(dataset)}/files/{fid}.json"


def week_path(week: str, name: str = "") -> str:
    """Where a week's batch keeps its records (``announced.json``, ``plan.json``...)."""
    return f"{TOP}/week={week}/{name}".rstrip("/")


def announced(week: str) -> str:
    """The marker of the week's announcement (created once: the first caller announces)."""
    return week_path(week, "announced.json")


def data_record(name: str, version: str, top: str = DATA) -> str:
    """A data version's record."""
    return f"{top}/{name}/{version}.json"


def ingest_request(source: str, request_id: str) -> str:
    """A queued re-ingest request's record."""
    return f"{INGEST_REQUESTS}/{source}/{request_id}.json"


def data_folder(name: str, top: str = DATA) -> str:
    """Every version record of data asset ``name``."""
    return f"{top}/{name}"


def data_runs(name: str, version: str, top: str = DATA) -> str:
    """The runs that used a data version (one record per run)."""
    return f"{top}/{name}/{version}/runs"


#: the lake's store of pinned data (``azureml://datastores/lake_batches/paths/pinned`` on AML)
PINNED = f"{TOP}/pinned"
#: the content-addressed objects, below :data:`PINNED`
PINNED_OBJECTS = "objects"
#: the version listings, below :data:`PINNED`
PINNED_VERSIONS = "versions"
#: a version listing's file name, in its version's folder
LISTING = "files.json"


def pinned_object(sha256: str) -> str:
    """A pinned object's path inside the pinned store (``objects/ab/ab12...csv``): by its sha256."""
    return f"{PINNED_OBJECTS}/{sha256[:2]}/{sha256}.csv"


def pinned_version(name: str, version: str) -> str:
    """A data version's folder inside the pinned store (what its data asset names)."""
    return f"{PINNED_VERSIONS}/{name}/{version}"
