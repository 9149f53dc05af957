"""Ingestion: one raw file in, its standard CSV, rejected rows, manifest or error out.

:func:`ingest` is the one service behind the blob triggers, the HTTP re-ingest routes and
the command line. Its promises:

- every row is accounted for: ``rows.read == rows.written + rows.rejected``;
- a file that cannot be read at all is quarantined with an ``error.json`` saying why, and
  the call returns normally (a data error is never worth a retry);
- a transient storage error raises :class:`TransientLakeError` after a few local retries, so
  that the host retries the trigger;
- outputs are atomic and idempotent: the same raw version (same ETag) with the same code and
  mapping leaves everything untouched; a new version replaces the outputs;
- two raw files never share outputs (``x.csv`` and ``x.csv.gz``), even ingested at the same
  moment: the first to create the outputs' claim owns them, the other is an ``output_collision``;
- a file mostly rejected (:class:`RejectLimit`) is quarantined whole (``too_many_rejects``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
import uuid
from typing import Any

import numpy as np

from shared import __version__, clock
from shared.ingestion.datasets import SCHEMA_VERSION
from shared.ingestion.formats import Mapping, current_mappings, path_fields
from shared.ingestion.layout import NameTooLong, Outputs, outputs_for, refused_record_path
from shared.ingestion.readers import DataError
from shared.ingestion.write import (
    Progress,
    RejectLimit,
    Repeated,
    Superseded,
    Unreadable,
    Written,
    check_current,
    write_outputs,
)
from shared.lake import ChangedWhileReadError, Lake, LakeError, NotFoundError, TransientLakeError
from shared.settings import get_settings

log = logging.getLogger(__name__)

CODE_VERSION = f"forecastops-{__version__}"
#: passes over a raw file that keeps changing while it is read, before the host is asked to retry
MAX_SUPERSEDED = 3


def _read_json(lake: Lake, path: str) -> dict[str, Any] | None:
    try:
        return json.loads(lake.read_bytes(path))
    except NotFoundError:
        return None
    except ValueError:
        return None


def _dump(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=False, ensure_ascii=False) + "\n").encode()


def ingest(
    lake: Lake,
    raw_path: str,
    *,
    invocation_id: str | None = None,
    force: bool = False,
    retries: int = 3,
    progress: Progress | None = None,
    mappings: dict[str, Mapping] | None = None,
    limit: RejectLimit | None = None,
) -> dict[str, Any]:
    """Ingest one raw file; return its manifest (or, if quarantined, its error record).
    ``mappings``: the raw formats to choose from (default: those the settings name);
    ``limit``: when a file is quarantined for its rejects (default: the settings').

    Raises ``ValueError`` for a path that is not ``raw/<source>/...``, :class:`NotFoundError`
    when the raw file does not exist, and :class:`TransientLakeError` when storage keeps
    failing after ``retries`` attempts.
    """
    out = outputs_for(raw_path)
    invocation_id = invocation_id or uuid.uuid4().hex
    if limit is None:
        settings = get_settings()
        limit = RejectLimit(settings.reject_ratio_max, settings.reject_file_min_rows)
    superseded = 0
    attempt = 1
    while True:
        try:
            return _ingest_once(lake, out, invocation_id, force, progress, mappings, limit)
        except (Superseded, ChangedWhileReadError) as e:
            # a newer version arrived while this one was read: the newest wins (it may well
            # be ingested already: then its outputs are current and kept)
            superseded += 1
            if superseded > MAX_SUPERSEDED:
                raise TransientLakeError(f"{e}; it kept changing over {superseded} passes") from e
            log.info("ingest %s: %s; ingesting the newest version", raw_path, e)
            force = force or getattr(e, "committed", False)
            continue
        except TransientLakeError as e:
            if attempt == retries:
                raise
            wait = min(2 ** (attempt - 1), 8)
            log.warning(
                "ingest %s: transient storage error (%s); attempt %d of %d in %ss",
                raw_path,
                e,
                attempt + 1,
                retries,
                wait,
            )
            time.sleep(wait)
            attempt += 1


def _ingest_once(
    lake: Lake,
    out: Outputs,
    invocation_id: str,
    force: bool,
    progress: Progress | None,
    given: dict[str, Mapping] | None,
    limit: RejectLimit,
) -> dict[str, Any]:
    info = lake.stat(out.raw)
    mappings = current_mappings() if given is None else given
    holder, created = claim_outputs(lake, out, invocation_id)
    previous = _read_json(lake, out.manifest) or _read_json(lake, out.error)
    other = previous.get("raw", {}).get("path") if previous else None
    if holder is None and created and other not in (None, out.raw) and _exists(lake, other):
        # outputs written before claims existed: the raw file they name owns them
        lake.write_bytes(out.claim, _claim_record(other, invocation_id))
        holder = other
    if holder is not None:
        return _quarantine(
            lake,
            out,
            info.etag,
            invocation_id,
            clock.now_iso(),
            DataError(
                "output_collision",
                f"{out.raw} and {holder} would write the same outputs ({out.curated}); rename one of them",
                other=holder,
            ),
            None,
            mappings,
            error_path=out.collision_error,
        )
    if not created:
        return _ingest_owned(lake, out, info.etag, invocation_id, force, previous, progress, mappings, limit)
    try:
        lake.delete(out.collision_error)  # this file owns its outputs now: its collision is over
        return _ingest_owned(lake, out, info.etag, invocation_id, force, previous, progress, mappings, limit)
    except BaseException:
        # a claim made by a call that failed is given back: the next caller, of this raw file or
        # another, claims afresh (one left by a process that died is this file's on its retry)
        with contextlib.suppress(LakeError):
            release_claim(lake, out)
        raise


def _ingest_owned(
    lake: Lake,
    out: Outputs,
    etag: str,
    invocation_id: str,
    force: bool,
    previous: dict[str, Any] | None,
    progress: Progress | None,
    mappings: dict[str, Mapping],
    limit: RejectLimit,
) -> dict[str, Any]:
    """Convert and commit the outputs of ``out.raw``, whose claim this call holds."""
    if not force and previous and _unchanged(previous, etag, mappings):
        log.info("ingest %s: unchanged (etag %s); outputs kept", out.raw, etag)
        return {**previous, "unchanged": True}

    started = clock.now_iso()
    t0 = time.perf_counter()
    fields = path_fields(out.raw)

    def one_pass(repeated: np.ndarray | None) -> Written | Repeated | Unreadable:
        return write_outputs(lake, out, fields, mappings, progress, repeated, limit)

    try:
        result = one_pass(None)
        if isinstance(result, Repeated):
            result = one_pass(result.hashes)
    except DataError as e:  # raised before the raw file was opened (a mapping's path fields)
        result = Unreadable(e, {})
    if isinstance(result, Repeated):
        raise RuntimeError(f"{out.raw}: keys still repeat after the first-wins pass")
    if isinstance(result, Unreadable):
        return _quarantine(lake, out, etag, invocation_id, started, result.error, result.raw, mappings)
    mapping, outputs = result.mapping, result.outputs
    manifest = {
        "manifest_version": 1,
        "status": "ingested",
        "dataset": out.dataset,
        "schema_version": SCHEMA_VERSION,
        "raw": {**result.raw, "path": out.raw},
        "format": {"id": mapping.id, "detected_by": result.detected_by, "mapping_sha256": mapping.sha256},
        "rows": result.rows,
        "outputs": outputs,
        "coverage": result.coverage,
        "started_at": started,
        "finished_at": clock.now_iso(),
        "duration_s": round(time.perf_counter() - t0, 3),
        "code_version": CODE_VERSION,
        "invocation_id": invocation_id,
    }
    if not outputs.get("rejected"):
        lake.delete(out.rejected)
    check_current(lake, out.raw, result.raw["etag"], committed=True)
    lake.write_bytes(out.manifest, _dump(manifest))
    lake.delete(out.error)
    # a newer version ingested in full between the check above and these writes would now be
    # described by this older one, and no event would come to correct it: the newest wins
    check_current(lake, out.raw, result.raw["etag"], committed=True)
    return manifest


#: reads of a claim that keeps changing under this call before the host is asked to retry
CLAIM_TRIES = 5


def claim_outputs(lake: Lake, out: Outputs, invocation_id: str) -> tuple[str | None, bool]:
    """Claim ``out``'s outputs for ``out.raw`` (``out.claim``, created only if absent): answer
    ``(None, created)`` when they are its own (``created``: the claim was made by this call), or
    ``(other, False)`` when another raw file that still exists holds them.

    Of two raw files racing for the same outputs, exactly one gets them. The same raw file
    finds its own claim (a re-ingest, a run that crashed). A claim whose raw file is gone
    (deleted, or renamed to the other name) or that does not read is handed on: deleted only
    while it is still the version read, so that a claim just made by a third caller stays.
    """
    for _ in range(CLAIM_TRIES):
        try:
            with lake.open(out.claim) as (stream, info):
                data = stream.read(64 * 1024)
        except NotFoundError:
            if lake.create(out.claim, _claim_record(out.raw, invocation_id)):
                return None, True
            continue  # another caller made it meanwhile: read whose it is
        holder = _holder(data)
        if holder == out.raw:
            return None, False
        if holder is not None and _exists(lake, holder):
            return holder, False
        lake.delete_if(out.claim, info.etag)
    raise TransientLakeError(f"{out.claim}: the claim kept changing over {CLAIM_TRIES} reads")


def release_claim(lake: Lake, out: Outputs) -> None:
    """Delete ``out.raw``'s claim on its outputs, if it still holds it (and only that version)."""
    try:
        with lake.open(out.claim) as (stream, info):
            holder = _holder(stream.read(64 * 1024))
    except NotFoundError:
        return
    if holder == out.raw:
        lake.delete_if(out.claim, info.etag)


def _claim_record(raw_path: str, invocation_id: str) -> bytes:
    return _dump({"raw": raw_path, "claimed_at": clock.now_iso(), "invocation_id": invocation_id})


def _holder(data: bytes) -> str | None:
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    holder = doc.get("raw") if isinstance(doc, dict) else None
    return holder if isinstance(holder, str) else None


def _exists(lake: Lake, path: str) -> bool:
    try:
        return lake.exists(path)
    except ValueError:  # not a lake path at all
        return False


def mappings_digest(mappings: dict[str, Mapping]) -> str:
    """One digest of every mapping file: a file quarantined for its format is retried when
    the mappings change (a new vendor layout onboarded)."""
    return hashlib.sha256("".join(sorted(m.sha256 for m in mappings.values())).encode()).hexdigest()


def _unchanged(previous: dict[str, Any], etag: str, mappings: dict[str, Mapping]) -> bool:
    if previous.get("raw", {}).get("etag") != etag or previous.get("code_version") != CODE_VERSION:
        return False
    if previous.get("status") == "ingested" and "coverage" not in previous:
        return False  # written before manifests had a coverage: ingested once more to gain it
    fmt = previous.get("format") or {}
    if fmt.get("id") is None:  # quarantined before a format was chosen
        return previous.get("mappings_sha256") == mappings_digest(mappings)
    m = mappings.get(fmt["id"])
    return m is not None and m.sha256 == fmt.get("mapping_sha256")


def _quarantine(
    lake: Lake,
    out: Outputs,
    etag: str,
    invocation_id: str,
    started: str,
    error: DataError,
    raw_meta: dict[str, Any] | None,
    mappings: dict[str, Mapping],
    error_path: str | None = None,
) -> dict[str, Any]:
    """Write the error record of a file quarantined as a whole. At ``out.error`` (the
    default) it replaces the file's earlier outputs; at another ``error_path`` (a collision)
    it leaves the outputs, which belong to another raw file, alone."""
    raw = {"path": out.raw, "etag": etag, **(raw_meta or {})}
    record = {
        "manifest_version": 1,
        "status": "quarantined",
        "dataset": out.dataset,
        "schema_version": SCHEMA_VERSION,
        "raw": raw,
        "format": None,
        "error": {"reason": error.reason, "message": error.message, "details": error.details},
        "mappings_sha256": mappings_digest(mappings),
        "started_at": started,
        "finished_at": clock.now_iso(),
        "code_version": CODE_VERSION,
        "invocation_id": invocation_id,
    }
    check_current(lake, out.raw, raw["etag"])
    log.warning("ingest %s: quarantined (%s): %s", out.raw, error.reason, error.message)
    if error_path is None:
        # outputs of an earlier version of this raw file no longer describe it
        for stale in (out.curated, out.manifest, out.rejected):
            lake.delete(stale)
    record["error_record"] = error_path or out.error
    lake.write_bytes(error_path or out.error, _dump(record))
    check_current(lake, out.raw, raw["etag"], committed=True)  # as after a manifest: the newest wins
    return record


def quarantine_refused(lake: Lake, raw_path: str, invocation_id: str, error: ValueError) -> dict[str, Any]:
    """The error record of a raw file whose path no output can be named after (too long for
    the lake, a control character, an unknown source folder): written under the path's
    sha256 (:func:`refused_record_path`), with the path in full inside, so that every raw file
    a trigger sees ends ingested or quarantined with a record; no retry can change it."""
    reason = "name_too_long" if isinstance(error, NameTooLong) else "bad_path"
    path = refused_record_path(raw_path)
    parts = raw_path.split("/")
    record = {
        "manifest_version": 1,
        "status": "quarantined",
        "dataset": path.split("/")[1] if not path.startswith("quarantine/_") else None,
        "schema_version": SCHEMA_VERSION,
        "raw": {
            "path": raw_path.encode("utf-8", "backslashreplace").decode(),
            "source": parts[1] if len(parts) > 1 else None,
        },
        "format": None,
        "error": {"reason": reason, "message": str(error), "details": {}},
        "error_record": path,
        "finished_at": clock.now_iso(),
        "code_version": CODE_VERSION,
        "invocation_id": invocation_id,
    }
    log.warning("ingest %r: quarantined (%s): %s", raw_path, reason, error)
    lake.write_bytes(path, _dump(record))
    return record
