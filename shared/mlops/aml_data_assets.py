"""Data versions as Azure ML data assets, through azure-ai-ml's ``MLClient.data``.

Imported only where the Azure catalog is used (azure-ai-ml costs about a second of import); the
interface, the lake catalog and the snapshot are in :mod:`shared.mlops.data_assets`.

How a version maps onto AML: a ``uri_folder`` data asset of the same name and version (``<week>``,
``<week>.2``...), its path the version's own folder in the pinned store on the workspace's
``lake_batches`` datastore (``azureml://datastores/lake_batches/paths/pinned/versions/<name>/<version>``:
:mod:`shared.mlops.pinned`, :mod:`shared.aml.lakeuri`), which holds its listing; the bytes are the
store's objects, which the pipelines read through their ``pinned`` input. AML refuses to move a
version's path, so a version's folder is fixed once put. Tags: ``week``, ``content_hash``, ``files``
(how many), ``datasets`` (comma-separated) and ``pinned`` (``true``). The file list stays in the lake
record (``batches/data/<name>/<version>.json``), which is also the lineage index: AML cannot tell
which versions hold a file, nor which runs used them.

Registration: the files' bytes are pinned first (only those the store lacks are copied); an AML
version holding other content (its ``content_hash`` tag) or naming a folder that is not its pinned
one (an asset from before the pinned store) is skipped; the lake record is claimed
(create-if-absent: two registrations never share a version with other content) and its listing
written; then the asset is put, unless AML already has it. A registration that died between its
claim and its PUT is completed by the next one with the same content. At most ``attempts``
versions are tried.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from azure.ai.ml import MLClient
from azure.ai.ml.entities import Data
from azure.ai.ml.exceptions import AssetPathException
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from shared.aml.datarefs import pinned_folder
from shared.aml.lakeuri import canonical
from shared.lake import Lake
from shared.mlops.data_assets import (
    VERSION_PATTERN,
    DataCatalogError,
    DataVersion,
    DataVersionNotFound,
    LakeDataCatalog,
    check_name,
    datasets_of,
    version_key,
    version_name,
)
from shared.weeks import layout

__all__ = ["AzureDataCatalog"]

log = logging.getLogger(__name__)

TAG_WEEK = "week"
TAG_HASH = "content_hash"
TAG_FILES = "files"
TAG_DATASETS = "datasets"
TAG_PINNED = "pinned"
#: AML's refusal of a PUT that would move an existing version to another path
_PATH_TAKEN = "Asset paths cannot be updated"


class AzureDataCatalog(LakeDataCatalog):
    """Data versions as AML ``uri_folder`` data assets in the workspace ``client`` names, with
    the lake records (in ``lake``) as the lineage index."""

    def __init__(
        self,
        client: MLClient,
        lake: Lake,
        top: str = layout.DATA,
        folder: str = "curated",
        attempts: int = 20,
    ) -> None:
        super().__init__(lake, top, folder, attempts)
        self.client = client

    def register(
        self, name: str, week: str, files: Mapping[str, str], skipped: dict[str, str] | None = None
    ) -> DataVersion:
        candidate = self._pinned_candidate(name, week, files, skipped)
        for n in range(1, self.attempts + 1):
            version = version_name(week, n)
            asset = self._asset(name, version)
            if asset is not None and (_tag(asset, TAG_HASH) != candidate.content_hash or not _pinned(asset)):
                continue  # AML holds other content under this version, or the live folder
            claimed = self._claim(candidate, version)
            if not self._same(claimed, candidate):
                continue  # the lake holds other content under this version, or an unpinned record
            try:
                self._list(claimed)
            except DataCatalogError as e:
                log.warning("data catalog: %s: passed over", e)
                continue
            if asset is None:
                # a registration that died after its lake claim left no asset: this puts it
                self._put(claimed)
            return claimed
        raise DataCatalogError(f"{name}: no free version for week {week} after {self.attempts} attempts")

    def get(self, name: str, version: str) -> DataVersion:
        record = super().get(name, version)
        asset = self._asset(name, version)
        if asset is None:
            raise DataVersionNotFound(
                f"{name} version {version} is recorded in the lake but is not a data asset in workspace "
                f"{self.client.workspace_name}: register it again"
            )
        if _tag(asset, TAG_HASH) != record.content_hash:
            raise DataCatalogError(
                f"{name} version {version}: the data asset's content_hash tag ({_tag(asset, TAG_HASH)}) "
                f"is not the lake record's ({record.content_hash})"
            )
        return record

    def versions(self, name: str) -> list[DataVersion]:
        check_name(name)
        try:
            assets = list(self.client.data.list(name=name))
        except ResourceNotFoundError:
            return []
        found = []
        for asset in assets:
            version = str(asset.version)
            if TAG_HASH not in (asset.tags or {}) or not VERSION_PATTERN.match(version):
                continue  # not one of ours
            record = self._read(name, version)
            if record is None or record.content_hash != _tag(asset, TAG_HASH):
                log.warning("data %s version %s: no matching lake record; left out", name, version)
                continue
            found.append(record)
        return sorted(found, key=lambda v: version_key(v.version))

    # helpers ------------------------------------------------------------------------------------
    def _asset(self, name: str, version: str) -> Data | None:
        try:
            return self.client.data.get(name, version)
        except ResourceNotFoundError:
            return None

    def _put(self, record: DataVersion) -> None:
        datasets = datasets_of(record.files)
        asset = Data(
            name=record.name,
            version=record.version,
            # a record from before the per-container datastores names the legacy form
            path=canonical(record.path),
            type="uri_folder",
            description=(
                f"{self.folder} as of week {record.week}, pinned: {len(record.files)} files of {', '.join(datasets)} "
                f"(ForecastOps; files.json here lists each file's object in the pinned store; the record is "
                f"the lake's {self._record_path(record.name, record.version)})"
            ),
            tags={
                TAG_WEEK: record.week,
                TAG_HASH: record.content_hash,
                TAG_FILES: str(len(record.files)),
                TAG_DATASETS: ",".join(datasets),
                TAG_PINNED: "true",
            },
        )
        try:
            self.client.data.create_or_update(asset)
        except (AssetPathException, HttpResponseError) as e:
            if not isinstance(e, AssetPathException) and _PATH_TAKEN not in str(e):
                raise
            # another registration put this version with another folder between our GET and PUT
            raise DataCatalogError(
                f"{record.name} version {record.version} exists in workspace {self.client.workspace_name} "
                f"with another path: {e}"
            ) from e


def _tag(asset: Any, key: str) -> str | None:
    return (asset.tags or {}).get(key)


def _pinned(asset: Any) -> bool:
    """Whether an asset names a pinned version's folder (not the live curated one)."""
    return pinned_folder(str(asset.path or "")) is not None
