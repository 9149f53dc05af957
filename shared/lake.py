"""The data lake: one interface over a local folder and over Blob Storage / ADLS Gen2.

A lake path is ``<top>/<rest>`` (``raw/weather/zip=98101/2026.csv``). In the local lake it is
a file below the lake's root folder; in Blob Storage the first segment is the container and
the rest the blob name, so ``raw``, ``curated`` and ``quarantine`` are containers.

Reads are streams read in chunks (never a whole large file in memory); writes are atomic:
nothing is visible until the writer closes cleanly (local: write a temporary file, then
rename; blob: stage blocks, commit the block list once).

The interface and the local lake are :mod:`shared.lake_api`, the blob lake
:mod:`shared.blob_lake`; this module names them all and chooses between them
(:func:`make_lake`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.blob_lake import BlobLake
from shared.lake_api import (
    _CLIENT_OPTIONS,
    AZURITE_CONNECTION_STRING,
    CONNECT_TIMEOUT_S,
    MAX_PATH_CHARS,
    MAX_SEGMENT_CHARS,
    READ_TIMEOUT_S,
    ChangedWhileReadError,
    Lake,
    LakeAccessError,
    LakeError,
    LocalLake,
    NotFoundError,
    ObjectInfo,
    TransientLakeError,
    check_path,
)

if TYPE_CHECKING:
    from shared.settings import Settings

__all__ = [
    "AZURITE_CONNECTION_STRING",
    "CONNECT_TIMEOUT_S",
    "MAX_PATH_CHARS",
    "MAX_SEGMENT_CHARS",
    "READ_TIMEOUT_S",
    "BlobLake",
    "ChangedWhileReadError",
    "Lake",
    "LakeAccessError",
    "LakeError",
    "LocalLake",
    "NotFoundError",
    "ObjectInfo",
    "TransientLakeError",
    "check_path",
    "make_lake",
]


def make_lake(settings: Settings) -> Lake:
    """The lake the settings name."""
    if settings.lake_backend == "local":
        return LocalLake(settings.lake_root)
    if settings.lake_storage:
        return BlobLake.from_connection_string(settings.lake_storage, settings.lake_chunk_bytes)
    if settings.lake_storage_service_uri:
        from azure.identity import DefaultAzureCredential
        from azure.storage.blob import BlobServiceClient

        service = BlobServiceClient(
            settings.lake_storage_service_uri, credential=DefaultAzureCredential(), **_CLIENT_OPTIONS
        )
        return BlobLake(service, settings.lake_chunk_bytes)
    raise ValueError(
        "FORECASTOPS_LAKE_BACKEND=blob needs LAKE_STORAGE (a connection string) "
        "or LAKE_STORAGE__blobServiceUri (the blob endpoint, used with the app's identity)"
    )
