"""Announcing a week whose data is complete: the weekly batch starts itself.

After an ingest, :func:`after_ingest` indexes the file's weeks (:func:`week_index.index`) and calls
:func:`announce`: when the file covers the latest shipments week ``W`` (or is of a timeless
dataset) and ``W`` is now complete (:func:`ready.readiness`: every required dataset, for every
region of the store master; with shipments arriving as one file per region, the region's file
that arrives last completes it), the first caller to create
``batches/week=<W>/announced.json`` sends one message on a :class:`Signal`; every other caller,
racing or later, finds the marker and sends nothing. A send that fails removes the marker, so
that the next file, or a retry, announces again; the weekly timer is the fallback for the rest.

Signals: :class:`QueueSignal` (the lake account's storage queue that the bridge's queue trigger
reads) and :class:`CollectSignal` (a list, for the command line's main job).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import re
import threading
from typing import TYPE_CHECKING, Any, Protocol

from shared import clock
from shared.lake import Lake
from shared.weeks import layout, ready, week_index

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient

    from shared.settings import Settings

log = logging.getLogger(__name__)

#: who announced a week (the weekly fallback timer says otherwise)
BY = "data_complete"
#: the queue client's bounds: 3 tries 1 s apart, at most 5 s to connect and 20 s for an
#: answer, so that a dead queue delays an ingest by about a minute at worst, never hangs it
QUEUE_RETRIES = 2
QUEUE_BACKOFF_S = 1
QUEUE_CONNECT_TIMEOUT_S = 5
QUEUE_READ_TIMEOUT_S = 20


class Signal(Protocol):
    """Where an announcement goes. ``send`` raises when the message did not get there."""

    def send(self, message: dict[str, Any]) -> None: ...


class CollectSignal:
    """Keeps the messages sent, in order (the command line's main job reads them)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        with self._lock:
            self.messages.append(dict(message))


class QueueSignal:
    """A storage queue, created on first use if missing; each message is its JSON text,
    base64-encoded (the Functions queue trigger's default encoding). The client is built on
    the first send, so a wrong setting surfaces as a failed send (logged), not as a worker
    that cannot start."""

    def __init__(
        self,
        queue: str,
        *,
        connection_string: str | None = None,
        service_uri: str | None = None,
        credential: Any = None,
    ) -> None:
        if not queue:
            raise ValueError("QueueSignal needs a queue name")
        if not connection_string and not service_uri:
            raise ValueError("QueueSignal needs a connection string or the queue service's URI")
        self.queue = queue
        self._connection_string = connection_string
        self._service_uri = service_uri
        self._credential = credential
        self._client: QueueClient | None = None
        self._lock = threading.Lock()

    def _queue_client(self) -> QueueClient:
        with self._lock:
            if self._client is None:
                self._client = self._build()
            return self._client

    def _build(self) -> QueueClient:
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.queue import LinearRetry, QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

        options: dict[str, Any] = {
            "message_encode_policy": TextBase64EncodePolicy(),
            "message_decode_policy": TextBase64DecodePolicy(),
            "retry_policy": LinearRetry(backoff=QUEUE_BACKOFF_S, retry_total=QUEUE_RETRIES, random_jitter_range=1),
            "connection_timeout": QUEUE_CONNECT_TIMEOUT_S,
            "read_timeout": QUEUE_READ_TIMEOUT_S,
        }
        if self._connection_string:
            client = QueueClient.from_connection_string(self._connection_string, self.queue, **options)
        else:
            credential = self._credential
            if credential is None:
                from azure.identity import DefaultAzureCredential

                credential = DefaultAzureCredential()
            client = QueueClient(str(self._service_uri), self.queue, credential=credential, **options)
        with contextlib.suppress(ResourceExistsError):
            client.create_queue()
        return client

    def send(self, message: dict[str, Any]) -> None:
        self._queue_client().send_message(json.dumps(message, sort_keys=True))


def signal_from_settings(settings: Settings) -> Signal | None:
    """The lake account's batch queue (``settings.batch_queue``), reached with ``LAKE_STORAGE``
    (a connection string) or ``LAKE_STORAGE__queueServiceUri`` and the app's identity; None
    when announcing is off (an empty queue name) or no storage account is named."""
    return lake_queue(settings, settings.batch_queue)


def lake_queue(settings: Settings, queue: str) -> QueueSignal | None:
    """The queue named ``queue`` in the lake's account, reached as :func:`signal_from_settings`
    says; None for an empty name or when no storage account is named."""
    if not queue:
        return None
    if settings.lake_storage:
        return QueueSignal(queue, connection_string=settings.lake_storage)
    if settings.lake_storage_queue_uri:
        return QueueSignal(queue, service_uri=settings.lake_storage_queue_uri)
    return None


def announce(lake: Lake, manifest: dict[str, Any], signal: Signal, now: dt.datetime) -> str | None:
    """Announce the latest shipments week ``W`` if this ingested file covers it (or is of a
    timeless dataset) and ``W`` is now complete: every required dataset, for every region of
    the store master (:func:`ready.readiness`).

    Only the caller that creates ``batches/week=<W>/announced.json`` sends
    ``{"week", "by": "data_complete", "at", "raw"}``; if the send raises, the marker is removed
    and the error raised, so that a later file or a retry announces again. Returns ``W`` when
    this call sent the message, else None."""
    if manifest.get("status") != "ingested":
        return None
    dataset = manifest.get("dataset")
    covers = week_index.covered(manifest)
    if dataset not in week_index.TIMELESS and not covers:
        return None  # a file of no week (a weather forecast) completes none: no listing
    week = week_index.latest_week(lake)
    if week is None:
        return None
    if dataset not in week_index.TIMELESS and week not in covers:
        return None
    state = ready.readiness(lake, week)
    if not state.complete:
        log.info("week %s not announced after %s: %s", week, manifest["raw"]["path"], state.describe())
        return None
    message = {"week": week, "by": BY, "at": clock.iso(now), "raw": manifest["raw"]["path"]}
    marker = layout.announced(week)
    if not lake.create(marker, (json.dumps(message) + "\n").encode()):
        return None
    try:
        signal.send(message)
    except BaseException:
        lake.delete(marker)
        raise
    log.info("announced week %s: its data is complete (%s came last)", week, message["raw"])
    return week


def after_ingest(
    lake: Lake,
    manifest: dict[str, Any],
    signal: Signal | None,
    now: dt.datetime | None = None,
    *,
    curated: str | None = None,
) -> str | None:
    """What follows every ingest (blob trigger, re-ingest route, command line), ``unchanged``
    ones included: index the file's weeks, then announce (when a ``signal`` is given).

    Indexing errors raise, as the ingest's own would (the index must hold every ingested
    file: a retry indexes again, cheaply). Announcing never fails the ingest: a failure is one
    warning line, and the weekly timer is the fallback. Returns the week this call announced.
    ``curated``: the file's curated path, for a manifest that does not name it."""
    week_index.index(lake, manifest, curated)
    if signal is None:
        return None
    try:
        return announce(lake, manifest, signal, now or clock.now())
    except Exception as e:
        log.warning(
            "announcing after %s failed (the weekly timer is the fallback): %s",
            (manifest.get("raw") or {}).get("path"),
            _one_line(e),
        )
        return None


_SECRET = re.compile(r"(?i)(accountkey|sharedaccesssignature|sig|credential)=[^;&\s]+")


def _one_line(e: BaseException) -> str:
    """An error on one line, without a key or signature in it."""
    text = (str(e).strip().splitlines() or [""])[0]
    text = _SECRET.sub(r"\1=***", text)[:300]
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
