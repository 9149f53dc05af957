"""Ingestion: one raw file in, its standard CSV, rejected rows, manifest or error out.

:func:`ingest` is the one service behind the blob triggers, the HTTP re-ingest routes and
the command line. Its promises:

- every row is accounted for: ``rows.read == rows.written + rows.rejected``;
- a file that cannot be read at all is quarantined with an ``error.json`` saying why, and
  the call returns normally (a data error is never worth a retry);
- a transient storage error raises :class:`TransientLakeError` after a few local retries, so
  that the host retries the trigger;
- outputs are atomic and idempotent: the same raw version (same ETag) with the same code and
  mapping leaves everything untouched; a new version replaces the outputs.
"""

from __future__ import annotations

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
    Repeated,
    Superseded,
    Unreadable,
    Written,
    check_current,
    write_outputs,
)
from shared.lake import ChangedWhileReadError, Lake, NotFoundError, TransientLakeError

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
) -> dict[str, Any]:
    """Ingest one raw file; return its manifest (or, if quarantined, its error record).
    ``mappings``: the raw formats to choose from (default: those the settings name).

    Raises ``ValueError`` for a path that is not ``raw/<source>/...``, :class:`NotFoundError`
    when the raw file does not exist, and :class:`TransientLakeError` when storage keeps
    failing after ``retries`` attempts.
    """
    out = outputs_for(raw_path)
    invocation_id = invocation_id or uuid.uuid4().hex
    superseded = 0
    attempt = 1
    while True:
        try:
            return _ingest_once(lake, out, invocation_id, force, progress, mappings)
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
) -> dict[str, Any]:
    info = lake.stat(out.raw)
    mappings = current_mappings() if given is None else given
    previous = _read_json(lake, out.manifest) or _read_json(lake, out.error)
    if previous and previous.get("raw", {}).get("path") not in (None, out.raw):
        return _quarantine(
            lake,
            out,
            info.etag,
            invocation_id,
            clock.now_iso(),
            DataError(
                "output_collision",
                f"{out.raw} and {previous['raw']['path']} would write the same outputs "
                f"({out.curated}); rename one of them",
                other=previous["raw"]["path"],
            ),
            None,
            mappings,
            error_path=out.collision_error,
        )
    if not force and previous and _unchanged(previous, info.etag, mappings):
        log.info("ingest %s: unchanged (etag %s); outputs kept", out.raw, info.etag)
        return {**previous, "unchanged": True}

    started = clock.now_iso()
    t0 = time.perf_counter()
    fields = path_fields(out.raw)

    def one_pass(repeated: np.ndarray | None) -> Written | Repeated | Unreadable:
        return write_outputs(lake, out, fields, mappings, progress, repeated)

    try:
        result = one_pass(None)
        if isinstance(result, Repeated):
            result = one_pass(result.hashes)
    except DataError as e:  # raised before the raw file was opened (a mapping's path fields)
        result = Unreadable(e, {})
    if isinstance(result, Repeated):
        raise RuntimeError(f"{out.raw}: keys still repeat after the first-wins pass")
    if isinstance(result, Unreadable):
        return _quarantine(lake, out, info.etag, invocation_id, started, result.error, result.raw, mappings)
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
