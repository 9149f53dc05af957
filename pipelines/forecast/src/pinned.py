"""A pinned data version as the curated folder it was registered from.

The ``curated`` input of a run on a data version is the version's folder in the pinned store,
which holds its listing, ``files.json`` (the app writes it: shared/mlops/pinned.py)::

    {"name": ..., "version": ..., "content_hash": ...,
     "files": {"shipments_weekly/v1/erp/2026-11-23.csv": {"sha256": "...", "object": "objects/ab/ab12...csv"}}}

and the ``pinned`` input is the store itself. :func:`curated_view` lays every listed object out
under its curated path in a folder of this machine, each object's bytes checked against its
sha256 as they are read, so the steps read exactly the bytes the version was registered with,
in the layout they know. A folder without a listing that holds dataset folders is a plain
curated folder (a run by hand): it is read as it is. One with neither (a version's folder whose
listing is gone) is refused, never read as an empty curated folder.

The listing's ``content_hash`` is required and must be the hash of its files; prepare writes it
into meta.json, and the register step refuses models from a run whose content hash is not the
one the plan registered (shared/mlops/steps.py): a listing rewritten consistently (files and
hash) reads, but its run's models are not registered.

Every problem is one line (:class:`PinnedDataError`): no store given, a listing that does not
read or has no content hash, a folder that is neither, a path that leaves the folder, an object
missing, an object whose bytes hash otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

#: a pinned version's listing, in its folder
LISTING = "files.json"
CHUNK_BYTES = 4 * 1024 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class PinnedDataError(ValueError):
    """A pinned version that cannot be read as registered (the message is one line)."""


def is_pinned(curated: Path) -> bool:
    """Whether ``curated`` is a pinned version's folder (it holds a listing)."""
    return (Path(curated) / LISTING).is_file()


def _inside(base: Path, rel: object, what: str) -> Path:
    if not isinstance(rel, str) or not rel or "\\" in rel:
        raise PinnedDataError(f"{what} {rel!r} is not a relative path")
    parts = PurePosixPath(rel).parts
    if rel.startswith("/") or any(p in ("..", ".", "") for p in parts) or rel != "/".join(parts):
        raise PinnedDataError(f"{what} {rel!r} leaves its folder or is not a clean relative path")
    return base.joinpath(*parts)


def read_listing(curated: Path) -> dict:
    """The listing of a pinned version's folder, checked (each file a sha256 and an object)."""
    path = Path(curated) / LISTING
    try:
        listing = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise PinnedDataError(f"{path}: not a readable listing ({e})") from None
    files = listing.get("files") if isinstance(listing, dict) else None
    if not isinstance(files, dict) or not files:
        raise PinnedDataError(f"{path}: lists no files")
    for rel, entry in files.items():
        sha = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(sha, str) or not _SHA256.match(sha):
            raise PinnedDataError(f"{path}: {rel}: no sha256")
    found = listing.get("content_hash")
    if not isinstance(found, str) or not _SHA256.match(found):
        raise PinnedDataError(f"{path}: no content_hash (a sha256): not a listing the app wrote; refused")
    return listing


def content_hash(files: dict) -> str:
    """The app's content hash of a version (shared/mlops/data_assets.py's, over ``curated/<path>``)."""
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(f"curated/{rel} {files[rel]['sha256']}\n".encode())
    return digest.hexdigest()


def materialize(curated: Path, store: Path | None, dest: Path) -> dict:
    """Every file the listing in ``curated`` names, from ``store``, at its curated path below
    ``dest``, its sha256 checked; the listing. :class:`PinnedDataError` for the first problem."""
    listing = read_listing(curated)
    name = f"{listing.get('name')}:{listing.get('version')}"
    if store is None:
        raise PinnedDataError(f"data version {name}: a pinned version is read from its store: give --pinned")
    if content_hash(listing["files"]) != listing["content_hash"]:
        raise PinnedDataError(f"data version {name}: its listing does not hash to its content_hash: altered")
    for rel, entry in sorted(listing["files"].items()):
        source = _inside(Path(store), entry.get("object"), f"{rel}: object")
        target = _inside(Path(dest), rel, "file")
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        try:
            with open(source, "rb") as src, open(target, "wb") as out:
                while chunk := src.read(CHUNK_BYTES):
                    digest.update(chunk)
                    out.write(chunk)
        except FileNotFoundError:
            raise PinnedDataError(f"data version {name}: {rel}: its object {entry['object']} is missing") from None
        if digest.hexdigest() != entry["sha256"]:
            raise PinnedDataError(
                f"data version {name}: {rel}: its object {entry['object']} holds bytes of sha256 "
                f"{digest.hexdigest()}, not {entry['sha256']}: refused"
            )
    return listing


@contextlib.contextmanager
def curated_view(curated: Path, store: Path | None) -> Iterator[tuple[Path, dict | None]]:
    """The curated folder to read: a pinned version laid out in a temporary folder (and its
    listing), or ``curated`` itself (and None) when it holds no listing but dataset folders."""
    if not is_pinned(curated):
        if not any(p.is_dir() for p in Path(curated).glob("*")):
            raise PinnedDataError(
                f"{curated}: neither a pinned data version (no {LISTING}) "
                "nor a curated folder (no dataset folder): refused"
            )
        yield Path(curated), None
        return
    with tempfile.TemporaryDirectory(prefix="pinned-") as tmp:
        listing = materialize(curated, store, Path(tmp))
        yield Path(tmp), listing
