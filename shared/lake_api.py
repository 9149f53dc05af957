"""The data lake's interface (:class:`Lake`, its errors, :class:`ObjectInfo`, the path rules) and
the lake in a local folder (:class:`LocalLake`). :mod:`shared.lake` names these with the blob
lake (:mod:`shared.blob_lake`) and chooses between them; import them from there.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import os
import stat
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

#: Azurite's well-known development account (what ``UseDevelopmentStorage=true`` means)
AZURITE_CONNECTION_STRING = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
)


class LakeError(Exception):
    """Base of the lake's errors."""


class NotFoundError(LakeError):
    """The path does not exist."""


class TransientLakeError(LakeError):
    """The storage service failed in a way worth retrying (throttling, 5xx, network)."""


class LakeAccessError(LakeError):
    """The storage refused the credentials (a wrong key, an identity without a role): final."""


class ChangedWhileReadError(LakeError):
    """The blob was replaced while it was read (the download pins its first ETag): read anew."""


#: the storage client's own retries are off: the ingest service's retries (3 attempts, 1 s
#: and 2 s apart) are the one retry layer, and each call waits at most this long to connect
#: and for an answer, so that an unreachable endpoint fails in seconds, not minutes
CONNECT_TIMEOUT_S = 10
READ_TIMEOUT_S = 60
_CLIENT_OPTIONS: dict[str, Any] = dict(retry_total=0, connection_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S)


@dataclass(frozen=True)
class ObjectInfo:
    """One object of the lake: its path, ETag and size."""

    path: str
    etag: str
    size: int


#: the longest lake path and path segment (Blob Storage's limits: 1,024 characters per blob
#: name, 255 per segment on ADLS Gen2 and on most file systems)
MAX_PATH_CHARS = 1024
MAX_SEGMENT_CHARS = 255


def check_path(path: str) -> str:
    """Return ``path`` if it is a clean relative lake path, else raise ``ValueError``."""
    if not isinstance(path, str) or not path:
        raise ValueError("the path is empty")
    if any(ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF for c in path):
        raise ValueError(f"{path!r} holds a control character or a lone surrogate, which no lake path may hold")
    if len(path) > MAX_PATH_CHARS:
        raise ValueError(f"the path is {len(path)} characters long; a lake path has at most {MAX_PATH_CHARS}")
    parts = path.split("/")
    if (long := next((p for p in parts if len(p) > MAX_SEGMENT_CHARS), None)) is not None:
        raise ValueError(f"a path segment is {len(long)} characters long ({long[:20]}...); at most {MAX_SEGMENT_CHARS}")
    if path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"{path!r} is not a lake path: use '/'-separated segments with no empty, '.' or '..' segment")
    if len(parts) < 2:
        raise ValueError(f"{path!r} names a top-level folder, not a file")
    return path


class Lake(ABC):
    """What the ingestion code needs of a lake."""

    @abstractmethod
    def stat(self, path: str) -> ObjectInfo:
        """Size and ETag of ``path``; raises :class:`NotFoundError`."""

    @abstractmethod
    def open(self, path: str) -> contextlib.AbstractContextManager[tuple[BinaryIO, ObjectInfo]]:
        """A binary stream of ``path`` (read it in chunks) and the version it reads."""

    @abstractmethod
    def writer(self, path: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """A binary sink; ``path`` appears, whole, only when the block exits without error."""

    @abstractmethod
    def create(self, path: str, data: bytes) -> bool:
        """Write ``path`` only if it does not exist yet, atomically; False if it existed.

        Of two callers racing to create the same path, exactly one gets True.
        """

    @abstractmethod
    def delete(self, path: str) -> None:
        """Remove ``path`` if it exists."""

    @abstractmethod
    def delete_if(self, path: str, etag: str) -> bool:
        """Remove ``path`` only while it is still the version ``etag``; False if it is another
        version or gone. With :meth:`create`, it hands a claim on from a holder that is gone
        without ever removing a claim someone else has just made."""

    @abstractmethod
    def list(self, prefix: str) -> Iterator[str]:
        """Paths below ``prefix`` (a folder path such as ``raw/weather``), sorted."""

    def list_info(self, prefix: str) -> Iterator[ObjectInfo]:
        """What :meth:`list` names, each with its ETag and size (a path gone meanwhile is left
        out). This default asks for each; a blob lake has them from the listing itself."""
        for path in self.list(prefix):
            with contextlib.suppress(NotFoundError):
                yield self.stat(path)

    @abstractmethod
    def describe(self, path: str) -> str:
        """Where ``path`` lives, for humans (a file path or a URL)."""

    def children(self, prefix: str) -> builtins.list[str]:
        """The names one level below ``prefix`` (files and folders, sorted), without listing
        what lies deeper. This default derives them from :meth:`list`."""
        base = prefix.strip("/") + "/"
        return sorted({p[len(base) :].split("/", 1)[0] for p in self.list(prefix) if p.startswith(base)})

    def exists(self, path: str) -> bool:
        try:
            self.stat(path)
        except NotFoundError:
            return False
        return True

    def read_bytes(self, path: str) -> bytes:
        with self.open(path) as (stream, _):
            return stream.read()

    def write_bytes(self, path: str, data: bytes) -> None:
        with self.writer(path) as sink:
            sink.write(data)

    def upload(self, path: str, source: BinaryIO, chunk_bytes: int = 4 * 1024 * 1024) -> None:
        """Copy a local binary stream into ``path``, chunk by chunk."""
        with self.writer(path) as sink:
            while chunk := source.read(chunk_bytes):
                sink.write(chunk)


class LocalLake(Lake):
    """A lake in a folder on this machine (the command line's default)."""

    _TMP = ".tmp-"

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).absolute()

    def _file(self, path: str) -> Path:
        """``path``'s file; ``ValueError`` when a symbolic link on the way leads out of the lake."""
        target = self.root / check_path(path)
        if not self._inside(target):
            raise ValueError(f"{path!r} resolves outside the lake (a symbolic link leads out of it)")
        return target

    def _inside(self, p: Path) -> bool:
        return p.resolve().is_relative_to(self.root.resolve())  # each time: a link may change

    def stat(self, path: str) -> ObjectInfo:
        target = self.root / check_path(path)
        if not self._inside(target):
            raise NotFoundError(path)  # what lies outside the lake is not in it
        try:
            st = target.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(path) from None
        if not stat.S_ISREG(st.st_mode):
            raise NotFoundError(path)
        return _info(path, st)

    @contextlib.contextmanager
    def open(self, path: str) -> Iterator[tuple[BinaryIO, ObjectInfo]]:
        self.stat(path)  # inside the lake, and a regular file
        try:  # deleted since: not found; replaced since: the info of the file actually opened
            f = open(self._file(path), "rb")  # noqa: SIM115 (closed by the with below)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(path) from None
        with f:
            yield f, _info(path, os.fstat(f.fileno()))

    @contextlib.contextmanager
    def writer(self, path: str) -> Iterator[BinaryIO]:
        target = self._file(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{self._TMP}{uuid.uuid4().hex}-{target.name}")
        try:
            with open(tmp, "wb") as f:
                yield f
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def create(self, path: str, data: bytes) -> bool:
        target = self._file(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{self._TMP}{uuid.uuid4().hex}-{target.name}")
        try:
            tmp.write_bytes(data)
            # link() fails if the target exists: create-if-absent, and never half-written
            os.link(tmp, target)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def delete(self, path: str) -> None:
        self._file(path).unlink(missing_ok=True)

    def delete_if(self, path: str, etag: str) -> bool:
        target = self._file(path)
        try:
            f = open(target, "rb")  # noqa: SIM115 -- held for its lock
        except (FileNotFoundError, NotADirectoryError):
            return False
        with f:
            # every caller locks the file it found, then checks that it is still the one at the
            # path, in the version asked for: the check and the unlink are one step for them all
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                info = self.stat(path)
            except NotFoundError:
                return False
            if info.etag != etag or os.fstat(f.fileno()).st_ino != target.stat().st_ino:
                return False
            target.unlink()
            return True

    def list(self, prefix: str) -> Iterator[str]:
        base = self.root / prefix.strip("/")
        if not base.is_dir() or not self._inside(base):
            return iter(())
        found = (
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(self._TMP) and self._inside(p)
        )
        return iter(sorted(found))

    def list_info(self, prefix: str) -> Iterator[ObjectInfo]:
        for path in self.list(prefix):  # each one inside the lake: no second check of its way
            try:
                st = (self.root / path).stat()
            except (FileNotFoundError, NotADirectoryError):
                continue
            if stat.S_ISREG(st.st_mode):
                yield _info(path, st)

    def children(self, prefix: str) -> builtins.list[str]:
        base = self.root / prefix.strip("/")
        if not base.is_dir() or not self._inside(base):
            return []
        return sorted(p.name for p in base.iterdir() if not p.name.startswith(self._TMP) and self._inside(p))

    def describe(self, path: str) -> str:
        return str(self._file(path))


def _info(path: str, st: os.stat_result) -> ObjectInfo:
    # size and mtime alone collide: ``cp -p``, ``rsync -a`` and unzip change the bytes and
    # keep both. The inode changes when a file is replaced by a rename, and the ctime
    # whenever its bytes or its mtime are written, and neither can be set back by a tool.
    return ObjectInfo(path, f'"{st.st_size:x}-{st.st_mtime_ns:x}-{st.st_ino:x}-{st.st_ctime_ns:x}"', st.st_size)
