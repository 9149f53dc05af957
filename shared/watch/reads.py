"""One tick of the watch for a whole batch: every pending run's status in one activity, read
with bounded concurrency, each answer cut to what the watch decides on.

A batch of 500 runs is one activity execution per tick, not 500; a run whose status has not
moved costs one AML call (:meth:`shared.aml.backend.Backend.get` with ``known_status``);
metrics come only with a run's end, and the orchestration keeps them.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shared.aml.backend import Backend, BackendError, RunNotFound
from shared.aml.status import STUCK, TERMINAL
from shared.http import json_safe

log = logging.getLogger(__name__)

#: AML calls in flight at once for one tick (AML throttles a workspace's callers)
CONCURRENCY = 8
#: the answer for a run whose status could not be read (the watch waits it out, then fails it)
UNAVAILABLE = "unavailable"

#: one run to read: its id and the AML status the watch last saw
Item = dict[str, Any]
ReadOne = Callable[[str, str | None], dict[str, Any]]


def compact(status: dict[str, Any]) -> dict[str, Any]:
    """What the watch decides on: the status, an error, the pipeline; and once the run ended,
    its metrics and portal link (they would only grow the history before)."""
    out: dict[str, Any] = {"aml_status": status["aml_status"], "status": status["status"]}
    for key in ("error", "pipeline", "metrics_error"):
        if status.get(key):
            out[key] = status[key]
    if status["aml_status"] in TERMINAL or status["aml_status"] in STUCK:
        out["portal_url"] = status.get("portal_url")
    if status["aml_status"] in TERMINAL:
        out["metrics"] = json_safe(status.get("metrics") or {})
        for key in ("started_at", "ended_at"):
            if status.get(key):
                out[key] = status[key]
    return out


def read_all(items: list[Item], read_one: ReadOne, concurrency: int = CONCURRENCY) -> dict[str, dict[str, Any]]:
    """Each run's compact status, or ``{"unavailable": message}`` for a run whose status could
    not be read (one run's failure is that run's alone)."""

    def one(item: Item) -> tuple[str, dict[str, Any]]:
        run_id = str(item["run_id"])
        try:
            return run_id, compact(read_one(run_id, item.get("known")))
        except Exception as e:
            log.warning("status of %s: not read (%s)", run_id, e)
            return run_id, {UNAVAILABLE: _one_line(e)}

    if not items:
        return {}
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(items)))) as pool:
        return dict(pool.map(one, items))


class ReadError(Exception):
    """A run's status could not be read; the message is the run API's own, fit for a client."""


def from_backend(backend: Backend) -> ReadOne:
    """A run's status through a backend, as the run API would answer it."""

    def read(run_id: str, known: str | None) -> dict[str, Any]:
        try:
            return backend.get(run_id, known_status=known).model_dump(mode="json")
        except RunNotFound:
            raise ReadError(f"no run {run_id!r}") from None
        except BackendError as e:
            raise ReadError(e.message) from None

    return read


def _one_line(e: Exception) -> str:
    """The run API's own failures keep their message (one line): a :class:`ReadError`, or a
    structured ``{"message": ...}``. Anything else may carry a path or a secret in its text,
    and goes to the log only."""
    text = str(e) if isinstance(e, ReadError) else None
    with contextlib.suppress(ValueError):
        data = json.loads(str(e))
        if isinstance(data, dict) and data.get("message"):
            text = str(data["message"])
    if not text:
        return "the status could not be read; the app's logs have the details"
    return " ".join(text.split())[:300]
