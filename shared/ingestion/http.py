"""The ingestion services the function folders call: a blob's arrival, and the re-ingest
route ``POST /api/ingest/<source>``. Both log with the invocation id and the raw path, record
telemetry for every new version ingested, index the weeks the file covers and, with a
``signal``, announce a week whose data is now complete (:mod:`shared.ingestion.announce`)."""

from __future__ import annotations

import logging
from typing import Any

from shared import telemetry
from shared.http import Answer, Problem, error, internal_error, invalid_request, json_body, problem
from shared.ingestion.announce import Signal, after_ingest
from shared.ingestion.datasets import SOURCES
from shared.ingestion.layout import outputs_for
from shared.ingestion.service import ingest
from shared.lake import Lake, NotFoundError, TransientLakeError

log = logging.getLogger(__name__)


def ingest_blob(path: str, invocation_id: str, target: Lake, signal: Signal | None = None) -> dict[str, Any]:
    """Blob-arrival ingestion of ``path`` (``raw/<source>/...``), then its weeks indexed and,
    with a ``signal``, the week it completes announced (an announcement that fails is logged,
    never raised: the weekly timer is the fallback).

    Data errors end in quarantine and return normally, so the host does not retry a bad file
    (a blob whose name cannot be ingested at all is logged and refused, for the same reason);
    transient storage errors raise (indexing's too), so that it does.
    """
    with telemetry.log_context(invocation_id=invocation_id, subject=path):
        try:
            outputs_for(path)
        except ValueError as e:
            # a blob whose name no output can have (a control character, a source folder we
            # do not know): no retry can ingest it, so none is asked for
            log.error("ingest %s: refused: %s", path, e)
            return {"status": "refused", "raw": {"path": path}, "error": {"reason": "bad_path", "message": str(e)}}
        # anything else raises: the host retries, and the error is in its log
        manifest = ingest(target, path, invocation_id=invocation_id, progress=_progress_log(path))
        if not manifest.get("unchanged"):  # a redelivery is not new rows
            telemetry.record_ingest(manifest)
        _log_result(manifest)
        # a redelivery too: it fills an index a failed attempt left short, and announces again
        # a week whose announcement failed
        after_ingest(target, manifest, signal)
        return manifest


def _progress_log(path: str) -> telemetry.Throttle:
    return telemetry.Throttle(
        lambda rows, nbytes: log.info("ingesting %s: %d rows, %.1f MB read so far", path, rows, nbytes / 1e6), 30.0
    )


def _log_result(manifest: dict[str, Any]) -> None:
    rows = manifest.get("rows") or {}
    if manifest["status"] == "ingested":
        log.info(
            "ingested %s as %s: %s read, %s written, %s rejected%s",
            manifest["raw"]["path"],
            manifest["format"]["id"],
            rows.get("read"),
            rows.get("written"),
            rows.get("rejected"),
            " (unchanged)" if manifest.get("unchanged") else "",
        )


def reingest_request(
    source: str, body: bytes, invocation_id: str, target: Lake, signal: Signal | None = None
) -> Answer:
    """``POST /api/ingest/<source>`` with ``{"path": "raw/<source>/...", "force": false}``; the
    file's weeks are indexed and, with a ``signal``, the week it completes announced.

    200 with the manifest when the file was ingested (rows may have been rejected); 422 with
    the error record when the whole file was quarantined; 400 listing every problem of the
    request; 404 when the raw file does not exist; 503 when storage keeps failing.
    """
    path, force, problems = read_reingest_body(source, body)
    if problems:
        return invalid_request(problems)
    with telemetry.log_context(invocation_id=invocation_id, subject=path):
        try:
            manifest = ingest(target, path, invocation_id=invocation_id, force=force, progress=_progress_log(path))
            after_ingest(target, manifest, signal)
        except NotFoundError:
            return error(404, "not_found", f"no raw file at {path}")
        except TransientLakeError as e:
            log.warning("re-ingest %s: storage unavailable: %s", path, e)
            return error(503, "storage_unavailable", str(e), retry_after_s=30)
        except Exception:
            log.exception("re-ingest %s: unexpected error", path)
            return internal_error()
        if not manifest.get("unchanged"):
            telemetry.record_ingest(manifest)
        _log_result(manifest)
    return (200 if manifest["status"] == "ingested" else 422), manifest, {}


def read_reingest_body(source: str, body: bytes) -> tuple[str, bool, list[Problem]]:
    """``path`` and ``force`` from a re-ingest body, or every problem with it."""
    if source not in SOURCES:
        raise ValueError(f"no source {source!r}; known: {', '.join(SOURCES)}")
    data, problems = json_body(body)
    if problems:
        return "", False, problems
    if not isinstance(data, dict):
        return "", False, [problem("(body)", "expected a JSON object")]
    given = data.get("path")
    path = given if isinstance(given, str) else ""
    force = data.get("force", False)
    unknown = sorted(set(data) - {"path", "force"})
    if unknown:
        problems.append(problem(",".join(unknown), "unknown field(s); expected path and force"))
    if not path:
        problems.append(problem("path", f"required: the raw file to ingest, raw/{source}/..."))
    else:
        try:
            outputs_for(path)
            if not path.startswith(f"raw/{source}/"):
                raise ValueError(f"this route ingests raw/{source}/ files; {path!r} is not one")
        except ValueError as e:
            problems.append(problem("path", str(e)))
    if not isinstance(force, bool):
        problems.append(problem("force", "must be true or false"))
    return path, force is True, problems
