"""A registered data version as the bridge reads it: the ``azureml:<name>:<version>`` references a
run request may name as an input, and the lake's record of a version (``batches/data/<name>/
<version>.json``), which the local backend resolves to the folder the version names.

A version registered since issue 23 is **pinned**: its ``path`` names its own folder in the
pinned store (``azureml://datastores/lake_batches/paths/pinned/versions/<name>/<version>``), which
holds only its listing, ``files.json`` (each curated file -> its sha256 and the object that
holds those bytes, ``objects/<sha[:2]>/<sha256>.csv`` in the same store). A record from
before names the live curated folder (``azureml://datastores/lake_curated/paths/``): it
resolves to that folder as it did, and :attr:`DataVersion.pinned` is False.

The catalog that registers versions and links runs to them is :mod:`shared.mlops.data_assets`;
this is what the bridge, below it, needs of it.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, ValidationError

from shared.aml.lakeuri import lake_path
from shared.lake import Lake, NotFoundError
from shared.weeks import layout

__all__ = [
    "RECORDS",
    "DataCatalogError",
    "DataVersion",
    "DataVersionNotFound",
    "is_reference",
    "listing_of",
    "pinned_folder",
    "parse_reference",
    "read_version",
    "record_path",
]

#: where the lake keeps the version records
RECORDS = layout.DATA
_REFERENCE = re.compile(r"^azureml:([A-Za-z0-9][A-Za-z0-9_-]{0,254}):([A-Za-z0-9][A-Za-z0-9_.-]{0,254})$")


class DataCatalogError(Exception):
    """The catalog refused or could not do what was asked."""


class DataVersionNotFound(DataCatalogError, LookupError):
    """No such data version."""


class DataVersion(BaseModel):
    """One registered state of the curated folder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    #: ``<week>``, then ``<week>.2``, ``<week>.3``... for other content in the same week
    version: str
    #: the Monday the batch trains as of (``YYYY-MM-DD``)
    week: str
    #: the asset's folder as an AML data URI: a pinned version's own folder in the pinned store
    #: (``azureml://datastores/lake_batches/paths/pinned/versions/<name>/<version>``); records from before
    #: the pinned store name the live ``azureml://datastores/lake_curated/paths/`` (and those from
    #: before the per-container datastores ``azureml://datastores/lake/paths/curated``)
    path: str
    #: :func:`content_hash` of ``files``
    content_hash: str
    #: curated csv path -> its sha256
    files: dict[str, str]
    #: ISO 8601, UTC, ``Z``
    created_at: str

    @property
    def pinned(self) -> bool:
        """Whether the version names its pinned folder (exactly the bytes it was registered
        with), not the live curated folder (a record from before the pinned store)."""
        return pinned_folder(self.path) is not None

    @property
    def reference(self) -> str:
        """``azureml:<name>:<version>``: how a run request names this version as an input."""
        return f"azureml:{self.name}:{self.version}"

    def to_json(self) -> bytes:
        return self.model_dump_json(indent=2).encode("utf-8")


def is_reference(value: str) -> bool:
    """Whether ``value`` names a registered data asset version (``azureml:<name>:<version>``)."""
    return _REFERENCE.match(value) is not None


def parse_reference(reference: str) -> tuple[str, str]:
    """``azureml:<name>:<version>`` -> ``(name, version)``; ``ValueError`` for anything else."""
    m = _REFERENCE.match(reference)
    if m is None:
        raise ValueError(f"{reference!r} is not a data asset reference: expected azureml:<name>:<version>")
    return m.group(1), m.group(2)


def record_path(name: str, version: str, top: str = RECORDS) -> str:
    """The lake path of a version's record."""
    return layout.data_record(name, version, top)


def read_version(lake: Lake, name: str, version: str, top: str = RECORDS) -> DataVersion | None:
    """The lake's record of ``name`` ``version``, or None; a record that does not read as one
    raises :class:`DataCatalogError`."""
    path = record_path(name, version, top)
    try:
        data = lake.read_bytes(path)
    except NotFoundError:
        return None
    try:
        return DataVersion.model_validate_json(data)
    except ValidationError as e:
        raise DataCatalogError(f"the record of {name} version {version} ({path}) is not valid: {e}") from e


def pinned_folder(uri: str) -> str | None:
    """The lake path of the pinned version folder ``uri`` names
    (``batches/pinned/versions/<name>/<version>``), or None for any other folder (the live curated one)."""
    try:
        found = lake_path(uri)
    except ValueError:
        return None
    prefix = f"{layout.PINNED}/{layout.PINNED_VERSIONS}/"
    if found is not None and found.startswith(prefix) and len(found[len(prefix) :].split("/")) == 2:
        return found
    return None


def listing_of(folder: str) -> str:
    """The listing's lake path in a pinned version's folder (a lake path)."""
    return f"{folder.rstrip('/')}/{layout.LISTING}"
