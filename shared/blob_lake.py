"""The lake in Blob Storage or ADLS Gen2 (Azurite locally): :class:`BlobLake`, with the stream
reader and block writer it reads and writes through, and the translation of the storage SDK's
errors into the lake's own (:mod:`shared.lake` says what a lake is and does)."""

from __future__ import annotations

import builtins
import contextlib
import io
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar, cast

from shared.lake_api import (
    _CLIENT_OPTIONS,
    AZURITE_CONNECTION_STRING,
    ChangedWhileReadError,
    Lake,
    LakeAccessError,
    NotFoundError,
    ObjectInfo,
    TransientLakeError,
    check_path,
)

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient, BlobServiceClient
    from typing_extensions import Buffer

__all__ = ["BlobLake"]

T = TypeVar("T")


class _ChunkReader(io.RawIOBase):
    """A readable stream over an iterator of byte chunks (a blob download)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: Buffer) -> int:
        b = memoryview(b).cast("B")
        while not self._buf:
            try:
                self._buf = memoryview(_translate(next, self._chunks))
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


class _BlockWriter(io.RawIOBase):
    """Stages ``chunk_bytes`` blocks as they fill; the caller commits the block list."""

    def __init__(self, blob: BlobClient, chunk_bytes: int) -> None:
        self._blob = blob
        self._chunk = chunk_bytes
        self._buf = bytearray()
        self.block_ids: list[str] = []
        self._prefix = uuid.uuid4().hex[:16]

    def writable(self) -> bool:
        return True

    def write(self, b: Buffer) -> int:
        b = memoryview(b).cast("B")
        self._buf += b
        while len(self._buf) >= self._chunk:
            self._stage(bytes(self._buf[: self._chunk]))
            del self._buf[: self._chunk]
        return len(b)

    def _stage(self, data: bytes) -> None:
        # block ids must all have the same length within a blob
        block_id = f"{self._prefix}{len(self.block_ids):08d}"
        _translate(self._blob.stage_block, block_id, data)
        self.block_ids.append(block_id)

    def finish(self) -> None:
        if self._buf:
            self._stage(bytes(self._buf))
            self._buf.clear()
        from azure.storage.blob import BlobBlock

        _translate(self._blob.commit_block_list, [BlobBlock(block_id=b) for b in self.block_ids])


def _translate(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run an SDK call, turning its errors into the lake's own."""
    from azure.core.exceptions import (
        HttpResponseError,
        ResourceModifiedError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )

    try:
        return call(*args, **kwargs)
    except ResourceNotFoundError as e:
        raise NotFoundError(str(e).splitlines()[0]) from e
    except ResourceModifiedError as e:
        raise ChangedWhileReadError(f"the blob changed while it was read: {_first_line(e)}") from e
    except (ServiceRequestError, ServiceResponseError) as e:
        raise TransientLakeError(f"storage unreachable: {_first_line(e)}") from e
    except HttpResponseError as e:
        if e.status_code in (408, 429) or (e.status_code or 0) >= 500:
            raise TransientLakeError(f"storage answered {e.status_code}: {e.reason}") from e
        if e.status_code in (401, 403):
            code = getattr(e, "error_code", None) or e.reason
            raise LakeAccessError(
                f"storage refused access ({e.status_code} {code}): check the account key in the connection "
                "string, or the identity's role on the storage account"
            ) from e
        raise


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


class BlobLake(Lake):
    """A lake in Blob Storage or ADLS Gen2 (Azurite locally)."""

    def __init__(self, service: BlobServiceClient, chunk_bytes: int = 4 * 1024 * 1024) -> None:
        self.service = service
        self.chunk_bytes = chunk_bytes
        self._containers_seen: set[str] = set()

    @classmethod
    def from_connection_string(cls, conn: str, chunk_bytes: int = 4 * 1024 * 1024) -> BlobLake:
        from azure.storage.blob import BlobServiceClient

        if conn.strip().lower().rstrip(";") == "usedevelopmentstorage=true":
            conn = AZURITE_CONNECTION_STRING
        return cls(BlobServiceClient.from_connection_string(conn, **_CLIENT_OPTIONS), chunk_bytes)

    def _blob(self, path: str) -> BlobClient:
        container, _, name = check_path(path).partition("/")
        return self.service.get_blob_client(container, name)

    def stat(self, path: str) -> ObjectInfo:
        props = _translate(self._blob(path).get_blob_properties)
        return ObjectInfo(path, props.etag, props.size)

    @contextlib.contextmanager
    def open(self, path: str) -> Iterator[tuple[BinaryIO, ObjectInfo]]:
        # the downloader pins the ETag of its first response for every later range, so a
        # blob replaced mid-read fails the read instead of mixing two versions
        downloader = _translate(self._blob(path).download_blob, max_concurrency=1)
        info = ObjectInfo(path, downloader.properties.etag, downloader.properties.size)
        raw = _ChunkReader(iter(downloader.chunks()))
        with io.BufferedReader(raw, buffer_size=self.chunk_bytes) as stream:
            yield cast(BinaryIO, stream), info

    @contextlib.contextmanager
    def writer(self, path: str) -> Iterator[BinaryIO]:
        blob = self._blob(path)
        self._ensure_container(blob.container_name)
        sink = _BlockWriter(blob, self.chunk_bytes)
        yield cast(BinaryIO, sink)
        sink.finish()

    def _ensure_container(self, container: str) -> None:
        from azure.core.exceptions import ResourceExistsError

        if container in self._containers_seen:
            return
        with contextlib.suppress(ResourceExistsError):
            _translate(self.service.create_container, container)
        self._containers_seen.add(container)

    def create(self, path: str, data: bytes) -> bool:
        from azure.core.exceptions import ResourceExistsError

        blob = self._blob(path)
        self._ensure_container(blob.container_name)
        try:
            # one PUT with If-None-Match: * -- atomic create-if-absent on the service
            _translate(blob.upload_blob, data, overwrite=False)
        except ResourceExistsError:
            return False
        return True

    def delete(self, path: str) -> None:
        with contextlib.suppress(NotFoundError):
            _translate(self._blob(path).delete_blob)

    def delete_if(self, path: str, etag: str) -> bool:
        from azure.core import MatchConditions

        try:  # If-Match: the service deletes only that version
            _translate(self._blob(path).delete_blob, etag=etag, match_condition=MatchConditions.IfNotModified)
        except (NotFoundError, ChangedWhileReadError):
            return False
        return True

    def list(self, prefix: str) -> Iterator[str]:
        container, _, rest = prefix.strip("/").partition("/")
        client = self.service.get_container_client(container)
        starts = f"{rest}/" if rest else None
        try:
            names = sorted(b.name for b in _translate(lambda: list(client.list_blobs(starts))))
        except NotFoundError:
            names = []
        return iter(f"{container}/{n}" for n in names)

    def list_info(self, prefix: str) -> Iterator[ObjectInfo]:
        container, _, rest = prefix.strip("/").partition("/")
        client = self.service.get_container_client(container)
        starts = f"{rest}/" if rest else None
        try:
            blobs = _translate(lambda: list(client.list_blobs(starts)))
        except NotFoundError:
            blobs = []
        found = sorted((b.name, b.etag, b.size) for b in blobs)
        return iter(ObjectInfo(f"{container}/{name}", etag, size) for name, etag, size in found)

    def children(self, prefix: str) -> builtins.list[str]:
        container, _, rest = prefix.strip("/").partition("/")
        client = self.service.get_container_client(container)
        starts = f"{rest}/" if rest else ""
        try:
            items = _translate(lambda: list(client.walk_blobs(name_starts_with=starts or None, delimiter="/")))
        except NotFoundError:
            return []
        return sorted(item.name[len(starts) :].rstrip("/") for item in items)

    def describe(self, path: str) -> str:
        return self._blob(path).url
