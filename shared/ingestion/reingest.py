"""Re-ingest on request: the one :func:`reingest` service (the blob triggers, the route
``POST /api/ingest/<source>`` and its queue trigger all run it), and the asynchronous form of
the route, for a file that may take longer than the 230 s the Functions front end gives an
HTTP request.

A queued request (``"async": true``, or a raw file over ``FORECASTOPS_INGEST_SYNC_MAX_BYTES``):

- its id derives from the raw path, ``force`` and the raw file's ETag, so that an identical
  request while one is pending re-attaches to it (one message, one ingest); once that one has
  ended, the same request runs again;
- its record, ``batches/ingest-requests/<source>/<id>.json``, is created (create-if-absent: of
  two identical requests racing, one sends the message) before the message goes on the source's
  queue, ``<FORECASTOPS_INGEST_QUEUE>-<source>``; a send that fails removes the record (503);
- the source's queue trigger runs :func:`reingest` and writes the result in the record:
  ``ingested`` (the manifest), ``quarantined`` (the error record) or ``failed`` (a one-line
  reason). The host retries an attempt that raised; the last of :data:`MAX_DEQUEUE` attempts
  writes ``failed`` before the message goes to the poison queue;
- ``GET /api/ingest/<source>/requests/<id>`` answers 202 + Location while it is queued or
  running, then 200 (manifest), 422 (error record) or 502 (the reason). A request with no sign
  of life for :data:`LOST_AFTER_S` (a worker killed on its last attempt, a message that never
  got out) answers 502 too, and posting it again queues it anew.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from shared import clock, telemetry
from shared.http import Answer, error, invalid_request, problem
from shared.ingestion.datasets import SOURCES
from shared.ingestion.layout import outputs_for
from shared.ingestion.service import ingest
from shared.lake import Lake, LakeAccessError, LakeError, NotFoundError, ObjectInfo, TransientLakeError
from shared.weeks import layout
from shared.weeks.announce import Signal, after_ingest

log = logging.getLogger(__name__)

#: where the requests' records are kept, one folder per source
RECORDS = layout.INGEST_REQUESTS
#: the host's attempts at a message before it moves it to the poison queue (host.json's
#: ``extensions.queues.maxDequeueCount`` says the same; a test holds them together)
MAX_DEQUEUE = 5
#: an attempt ends within host.json's functionTimeout (30 min); the message of a worker that
#: died is visible again within the queue trigger's 10-minute lease; a queued message is taken
#: within minutes (Flex Consumption scales on the queue's length). A request with no sign of
#: life for an hour is lost: its worker was killed on the last attempt, or its message never
#: got out (the app stopped between the record and the send)
LOST_AFTER_S = 3600
#: how long a caller waits before asking again about a pending request
RETRY_AFTER_S = 15
PENDING = ("queued", "running")
_REQUEST_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Wiring:
    """What a source's functions work with, built by the composition root (``shared.runtime``)."""

    lake: Lake
    #: where a week whose data is complete is announced (None: no announcing)
    signal: Signal | None = None
    #: the source's request queue (None: this app cannot queue a request)
    requests: Signal | None = None
    #: a file larger than this (bytes as stored) is always queued
    sync_max_bytes: int = 32 * 1024 * 1024


def reingest(
    target: Lake, path: str, invocation_id: str, *, force: bool = False, signal: Signal | None = None
) -> dict[str, Any]:
    """Ingest ``path`` (``raw/<source>/...``), record its telemetry (a new version only), log
    the result, index the file's weeks and, with a ``signal``, announce the week it completes;
    return the manifest, or the error record of a file quarantined as a whole.

    Raises what :func:`shared.ingestion.service.ingest` raises (``NotFoundError`` for a missing
    raw file, ``TransientLakeError`` when storage keeps failing) and what indexing raises;
    announcing never raises (the weekly timer is its fallback)."""
    manifest = ingest(target, path, invocation_id=invocation_id, force=force, progress=_progress_log(path))
    if not manifest.get("unchanged"):  # a redelivery is not new rows
        telemetry.record_ingest(manifest)
    _log_result(manifest)
    # a redelivery too: it fills an index a failed attempt left short, and announces again a
    # week whose announcement failed. After the telemetry: a retry after an indexing error finds
    # the file unchanged, and its rows would never be counted
    after_ingest(target, manifest, signal, curated=outputs_for(path).curated)
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


def path_problem(source: str, path: str) -> str | None:
    """Why ``path`` is not a raw file this source's route ingests, or None."""
    try:
        outputs_for(path)
    except ValueError as e:
        return str(e)
    if not path.startswith(f"raw/{source}/"):
        return f"this route ingests raw/{source}/ files; {path!r} is not one"
    return None


# --- the asynchronous request --------------------------------------------------------------------


def queue_name(prefix: str, source: str) -> str:
    """The source's request queue (``FORECASTOPS_INGEST_QUEUE`` is the prefix of all three)."""
    return f"{prefix}-{source}"


def request_id(path: str, force: bool, etag: str) -> str:
    """The id of a request for ``path`` at version ``etag``: the same request, the same id."""
    return hashlib.sha256(json.dumps([path, force, etag]).encode()).hexdigest()[:32]


def record_path(source: str, rid: str) -> str:
    """The lake path of a source's ingest request record."""
    return layout.ingest_request(source, rid)


def status_url(base_url: str, source: str, rid: str, code: str | None = None) -> str:
    """The status route of a request; the caller's ``code`` rides along, so that ADF's Web
    activity, which follows Location, authenticates its polls with the key it posted with."""
    url = f"{base_url.rstrip('/')}/api/ingest/{source}/requests/{rid}"
    return f"{url}?{urlencode({'code': code})}" if code else url


def enqueue(
    target: Lake,
    queue: Signal | None,
    source: str,
    path: str,
    force: bool,
    raw: ObjectInfo,
    invocation_id: str,
    base_url: str,
    code: str | None = None,
) -> Answer:
    """Queue the re-ingest of ``path`` (``raw`` is its current version) and answer 202 with
    Location and Retry-After; an identical request that is pending is re-attached to instead
    (no second message). 503 when the request cannot be queued (its record is removed again,
    so that the next request tries afresh)."""
    if queue is None:
        return error(503, "queue_unavailable", "this app has no request queue (LAKE_STORAGE names no storage account)")
    now = clock.now()
    rid = request_id(path, force, raw.etag)
    where, url = record_path(source, rid), status_url(base_url, source, rid, code)
    record = {
        "request_id": rid,
        "source": source,
        "path": path,
        "force": force,
        "raw": {"etag": raw.etag, "bytes": raw.size},
        "status": "queued",
        "attempts": 0,
        "requested_at": clock.iso(now),
        "updated_at": clock.iso(now),
        "requested_by": invocation_id,
    }
    if not target.create(where, _dump(record)):
        existing = _read(target, where)
        if existing is not None and existing.get("status") in PENDING and not _lost(existing, now):
            log.info("re-ingest %s: attached to pending request %s", path, rid)
            return _pending(existing, url, attached=True)
        target.write_bytes(where, _dump(record))  # it ended (or was lost): the same request runs again
    try:
        queue.send({"request_id": rid, "source": source, "path": path, "force": force, "etag": raw.etag})
    except Exception as e:
        log.warning("re-ingest %s: request %s could not be queued: %s", path, rid, type(e).__name__)
        with contextlib.suppress(LakeError):
            target.delete(where)
        return error(503, "queue_unavailable", "the request could not be queued; try again later", retry_after_s=30)
    log.info("re-ingest %s: queued as request %s", path, rid)
    return _pending(record, url, attached=False)


def run_request(
    target: Lake, source: str, body: bytes, dequeue_count: int, invocation_id: str, signal: Signal | None = None
) -> dict[str, Any]:
    """The queue trigger's work: run the request the message names (``dequeue_count`` is the
    host's attempt, from 1) and write its result in the request's record; return the record.

    A file gone since the request, or a message naming a path this source does not ingest, ends
    the request ``failed`` at once (no retry can help). Any other error raises, for the host to
    retry; the record says ``queued`` again with the error's one-line reason, or ``failed`` on
    the last attempt. A message that names no request raises ``ValueError`` (after the host's
    retries it lies in the poison queue, where it can be read)."""
    rid, path, force = _message(body)
    where = record_path(source, rid)
    with telemetry.log_context(invocation_id=invocation_id, subject=path or rid):
        now = clock.iso(clock.now())
        record = _read(target, where) or {"request_id": rid, "source": source, "path": path, "force": force}
        record.update(status="running", attempts=dequeue_count, started_at=now, updated_at=now)
        record.update(invocation_id=invocation_id)
        record.pop("last_error", None)
        refused = path_problem(source, path)
        if refused is not None:
            log.error("re-ingest request %s refused: %s", rid, refused)
            return _end(target, where, record, failed=f"the message names no file of this source: {refused}")
        target.write_bytes(where, _dump(record))
        try:
            manifest = reingest(target, path, invocation_id, force=force, signal=signal)
        except NotFoundError:
            return _end(target, where, record, failed=f"no raw file at {path} any more")
        except Exception as e:  # the host logs the error itself, with its traceback
            reason, last = _reason(e), dequeue_count >= MAX_DEQUEUE
            then = "the request failed" if last else "the host retries"
            log.warning(
                "re-ingest %s: attempt %d of %d failed (%s); %s", path, dequeue_count, MAX_DEQUEUE, reason, then
            )
            if last:
                _end(target, where, record, failed=f"{reason} (after {dequeue_count} attempts)")
            else:
                record.update(status="queued", last_error=reason, updated_at=clock.iso(clock.now()))
                target.write_bytes(where, _dump(record))
            raise
        return _end(target, where, record, result=manifest)


def request_status(target: Lake, source: str, rid: str, base_url: str, code: str | None = None) -> Answer:
    """``GET /api/ingest/<source>/requests/<id>``: 202 + Location and Retry-After while the
    request is queued or running; 200 with the manifest once ingested; 422 with the error record
    when the file was quarantined; 502 with a one-line reason when the request failed or was
    lost; 404 for an id this source never answered; 400 for something that is not an id."""
    if not isinstance(rid, str) or not _REQUEST_ID.fullmatch(rid):
        return invalid_request([problem("request_id", "expected the 32 hexadecimal digits a request was answered")])
    try:
        found = json.loads(target.read_bytes(record_path(source, rid)))
    except NotFoundError:
        return error(404, "unknown_request", f"no re-ingest request {rid} for raw/{source}/")
    except ValueError:
        found = None
    record: dict[str, Any] = found if isinstance(found, dict) else {}
    status = record.get("status")
    if status in PENDING and not _lost(record, clock.now()):
        return _pending(record, status_url(base_url, source, rid, code))
    if status in ("ingested", "quarantined") and isinstance(record.get("result"), dict):
        return (200 if status == "ingested" else 422), record["result"], {}
    if status in PENDING:
        message = f"no attempt of this request was seen for {LOST_AFTER_S // 60} minutes; post it again"
    elif status == "failed":
        message = str((record.get("error") or {}).get("message") or "the re-ingest failed")
    else:
        message = "the request's record is unreadable; post it again"
    return error(502, "reingest_failed", message, request_id=rid, path=record.get("path"), state=status)


def _pending(record: dict[str, Any], url: str, attached: bool | None = None) -> Answer:
    body = {
        "request_id": record.get("request_id"),
        "status": record.get("status"),
        "path": record.get("path"),
        "force": record.get("force"),
        "attempts": record.get("attempts", 0),
        "status_url": url,
    }
    if record.get("last_error"):
        body["last_error"] = record["last_error"]
    if attached is not None:
        body["attached"] = attached
    return 202, body, {"Location": url, "Retry-After": str(RETRY_AFTER_S)}


def _end(
    target: Lake,
    where: str,
    record: dict[str, Any],
    *,
    result: dict[str, Any] | None = None,
    failed: str | None = None,
) -> dict[str, Any]:
    """The request's last state, written: the ingest's result, or why it failed."""
    now = clock.iso(clock.now())
    if result is not None:
        record.update(status=result.get("status", "ingested"), result=result)
    else:
        record.update(status="failed", error={"message": failed})
    record.update(finished_at=now, updated_at=now)
    target.write_bytes(where, _dump(record))
    return record


def _message(body: bytes) -> tuple[str, str, bool]:
    """(request id, path, force) of a queue message; ``ValueError`` when it names no request."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    rid = data.get("request_id") if isinstance(data, dict) else None
    if not isinstance(rid, str) or not _REQUEST_ID.fullmatch(rid):
        raise ValueError("a re-ingest message is a JSON object naming its request_id (32 hexadecimal digits)")
    path = data.get("path") if isinstance(data.get("path"), str) else ""
    return rid, path, data.get("force") is True


def _reason(e: Exception) -> str:
    """A failure in one line for the caller: what kind of fault, never its text, which may name
    a file of the worker or an endpoint (the host's log has it, under the invocation id)."""
    if isinstance(e, TransientLakeError):
        return "the lake's storage kept failing"
    if isinstance(e, LakeAccessError):
        return "the lake's storage refused the app's credentials"
    return f"an unexpected error ({type(e).__name__}); the app's logs have the details"


def _lost(record: dict[str, Any], now: dt.datetime) -> bool:
    try:
        seen = clock.parse_iso(str(record["updated_at"]))
    except (KeyError, ValueError):
        return False
    return (now - seen).total_seconds() > LOST_AFTER_S


def _read(target: Lake, path: str) -> dict[str, Any] | None:
    try:
        record = json.loads(target.read_bytes(path))
    except (NotFoundError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _dump(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode()


def check_source(source: str) -> str:
    """The source, if it is one; ValueError naming the known ones otherwise."""
    if source not in SOURCES:
        raise ValueError(f"no source {source!r}; known: {', '.join(SOURCES)}")
    return source
