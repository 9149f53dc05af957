"""What the ingest folders call: a blob's arrival, the re-ingest route
``POST /api/ingest/<source>`` (answered at once, or queued: :mod:`shared.ingestion.reingest`),
its queue trigger and its status route. Every path runs :func:`reingest`: it logs with the
invocation id and the raw path, records telemetry for every new version ingested, indexes the
weeks the file covers and, with a ``signal``, announces a week whose data is now complete
(:mod:`shared.weeks.announce`). :func:`blueprint` gathers a source's four functions, so
that the three folders differ in their source alone."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from shared import telemetry
from shared.http import Answer, Problem, error, guarded, internal_error, invalid_request, json_body, origin, problem
from shared.ingestion.layout import outputs_for
from shared.ingestion.reingest import (
    Wiring,
    check_source,
    enqueue,
    path_problem,
    reingest,
    request_status,
    run_request,
)
from shared.ingestion.service import quarantine_refused
from shared.lake import Lake, NotFoundError, TransientLakeError
from shared.settings import env_name
from shared.weeks.announce import Signal

log = logging.getLogger(__name__)

#: the fields of a re-ingest request
FIELDS = ("path", "force", "async")


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
            # do not know, a name too long for the lake): no retry can ingest it, so none is
            # asked for, and a record says it existed
            return quarantine_refused(target, path, invocation_id, e)
        # anything else raises: the host retries, and the error is in its log
        return reingest(target, path, invocation_id, signal=signal)


def reingest_request(
    source: str,
    body: bytes,
    invocation_id: str,
    target: Lake,
    signal: Signal | None = None,
    *,
    queue: Signal | None = None,
    sync_max_bytes: int | None = None,
    base_url: str = "",
    code: str | None = None,
) -> Answer:
    """``POST /api/ingest/<source>`` with ``{"path": "raw/<source>/...", "force": false,
    "async": false}``; the file's weeks are indexed and, with a ``signal``, the week it
    completes announced.

    With ``"async": true``, or for a raw file over ``sync_max_bytes``, the request goes on the
    source's ``queue`` and is answered 202 with Location (its status route) and Retry-After
    (:func:`shared.ingestion.reingest.enqueue`). Otherwise the ingest runs now: 200 with the
    manifest when the file was ingested (rows may have been rejected); 422 with the error record
    when the whole file was quarantined. Either way: 400 listing every problem of the request;
    404 when the raw file does not exist; 503 when storage keeps failing.
    """
    path, force, queued, problems = read_reingest_body(source, body)
    if problems:
        return invalid_request(problems)
    with telemetry.log_context(invocation_id=invocation_id, subject=path):
        try:
            raw = target.stat(path)
            if queued or (sync_max_bytes is not None and raw.size > sync_max_bytes):
                return enqueue(target, queue, source, path, force, raw, invocation_id, base_url, code)
            manifest = reingest(target, path, invocation_id, force=force, signal=signal)
        except NotFoundError:
            return error(404, "not_found", f"no raw file at {path}")
        except TransientLakeError as e:
            log.warning("re-ingest %s: storage unavailable: %s", path, e)
            return error(503, "storage_unavailable", str(e), retry_after_s=30)
        except Exception:
            log.exception("re-ingest %s: unexpected error", path)
            return internal_error()
    return (200 if manifest["status"] == "ingested" else 422), manifest, {}


def read_reingest_body(source: str, body: bytes) -> tuple[str, bool, bool, list[Problem]]:
    """``path``, ``force`` and ``async`` from a re-ingest body, or every problem with it."""
    check_source(source)
    data, problems = json_body(body)
    if problems:
        return "", False, False, problems
    if not isinstance(data, dict):
        return "", False, False, [problem("(body)", "expected a JSON object")]
    given = data.get("path")
    path = given if isinstance(given, str) else ""
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        problems.append(problem(",".join(unknown), "unknown field(s); expected path, force and async"))
    if not path:
        problems.append(problem("path", f"required: the raw file to ingest, raw/{source}/..."))
    elif any(0xD800 <= ord(c) <= 0xDFFF for c in path):
        # JSON may spell a lone surrogate (\ud800), which no file name can hold
        problems.append(problem("path", "holds a lone surrogate (\\ud800-\\udfff), which no lake path may hold"))
    elif (refused := path_problem(source, path)) is not None:
        problems.append(problem("path", refused))
    for flag in FIELDS[1:]:
        if not isinstance(data.get(flag, False), bool):
            problems.append(problem(flag, "must be true or false"))
    return path, data.get("force") is True, data.get("async") is True, problems


class Functions:
    """A source's four functions as plain calls; its folder maps the host's objects onto them
    (and names them ``ingest_<source>_blob``, ``_http``, ``_queue``, ``_request``). ``wiring``
    gives what they work with, on first use (``shared.runtime.ingestion``)."""

    def __init__(self, source: str, wiring: Callable[[str], Wiring]) -> None:
        self.source = check_source(source)
        self._wiring = wiring
        #: the re-ingest route and its requests' status route (below /api/)
        self.route = f"ingest/{source}"
        self.status_route = f"ingest/{source}/requests/{{request_id}}"
        #: the source's request queue, as the queue trigger's binding expression
        self.queue_binding = f"%{env_name('ingest_queue')}%-{source}"

    def blob(self, path: str, invocation_id: str) -> dict[str, Any]:
        """A raw file arrived: ingest it (:func:`ingest_blob`)."""
        wiring = self._wiring(self.source)
        return ingest_blob(path, invocation_id, wiring.lake, wiring.signal)

    def post(self, body: bytes, invocation_id: str, url: str, code: str | None = None) -> Answer:
        """``POST /api/ingest/<source>`` (:func:`reingest_request`); ``url`` is the request's."""
        w = self._wiring(self.source)
        return reingest_request(
            self.source,
            body,
            invocation_id,
            w.lake,
            w.signal,
            queue=w.requests,
            sync_max_bytes=w.sync_max_bytes,
            base_url=origin(url),
            code=code,
        )

    def queued(self, body: bytes, dequeue_count: int | None, invocation_id: str) -> None:
        """A queued request's message (:func:`shared.ingestion.reingest.run_request`)."""
        wiring = self._wiring(self.source)
        run_request(wiring.lake, self.source, body, dequeue_count or 1, invocation_id, wiring.signal)

    def status(self, request_id: str, url: str, code: str | None = None) -> Answer:
        """``GET /api/ingest/<source>/requests/<id>`` (:func:`shared.ingestion.reingest.request_status`)."""
        lake = self._wiring(self.source).lake
        return guarded(lambda: request_status(lake, self.source, request_id, origin(url), code), _unavailable)


def blueprint(source: str, wiring: Callable[[str], Wiring]) -> Functions:
    """The four functions of ``source``'s folder (:class:`Functions`)."""
    return Functions(source, wiring)


def _unavailable(e: Exception) -> Answer | None:
    if isinstance(e, TransientLakeError):
        return error(503, "storage_unavailable", "the lake's storage is unavailable; try again", retry_after_s=30)
    return None
