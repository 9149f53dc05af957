"""The weekly batch's one idempotent start, behind its three entry points: the data-complete
announcement (a queue message from an ingest app), the weekly schedule, and ADF by HTTP.

A week's batch is the durable instance ``weekly-batch-<W>``: a start of a week that already
has one (running or ended) is a no-op that answers the existing one. Starters race (a hundred
files completing the same week, the schedule, ADF): each claims ``batches/week=<W>/started.json``
with create-if-absent, and only the claimant calls ``start_new``; a claimant that died before
starting is replaced once its claim is older than :data:`CLAIM_TIMEOUT_S`. A week whose data is
not complete is not started (the caller is told which sources are missing) unless the start
asks for ``partial``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
from typing import Any
from urllib.parse import urlencode

from pydantic import ValidationError

from shared import clock, telemetry
from shared.http import Answer, error, invalid_request, json_body, problem
from shared.lake import Lake, NotFoundError
from shared.mlops.batch import BatchInput, batch_path, check_week, instance_id_for
from shared.weeks import readiness
from shared.weeks.ready import REQUIRED
from shared.weeks.week_index import TIMELESS

log = logging.getLogger(__name__)

__all__ = ["ORCHESTRATOR", "batch_status", "parse_start", "start_batch"]

#: the orchestrator function's name
ORCHESTRATOR = "weekly_batch"
#: a claim older than this whose instance never appeared: its starter died; start again
CLAIM_TIMEOUT_S = 300.0
_ACTIVE = ("Pending", "Running", "ContinuedAsNew", "Suspended")
#: the furthest ahead of the clock a week may begin and still be started (ADF may name the
#: coming week a little early; a week of 2031 or 9999 is a mistake, not a plan)
MAX_DAYS_AHEAD = 28
#: the furthest back a batch may go (ten years of weeks: the lake keeps nothing older)
MAX_WEEKS_BACK = 520


def status_url(base_url: str, week: str, code: str | None = None) -> str:
    """The URL of a week's batch status route."""
    url = f"{base_url.rstrip('/')}/api/batches/{week}"
    return f"{url}?{urlencode({'code': code})}" if code else url


def _runtime(status: Any) -> str | None:
    runtime = getattr(status, "runtime_status", None)
    return getattr(runtime, "value", runtime)


def parse_start(week: str, body: bytes, by: str) -> tuple[BatchInput | None, Answer | None]:
    """The start asked for by ``body`` (optional JSON: ``partial``, ``retrain``, ``groups``,
    ``rerun``) for ``week``; or the 400 listing every problem."""
    data: Any = {}
    if body.strip():
        data, problems = json_body(body)
        if problems:
            return None, invalid_request(problems)
        if not isinstance(data, dict):
            return None, invalid_request([problem("body", "must be a JSON object")])
    try:
        return BatchInput.model_validate({**data, "week": week, "by": by}), None
    except ValidationError as e:
        found = [problem(".".join(str(p) for p in err["loc"]) or "body", err["msg"]) for err in e.errors()]
        return None, invalid_request(found)


async def start_batch(
    client: Any, lake: Lake, inp: BatchInput, base_url: str, now: dt.datetime, code: str | None = None
) -> Answer:
    """Start the week's batch once: 202 with the status URL for a new one (``started: true``);
    for the one the week already has, its state as the status route answers it (202 while it
    runs, so that ADF's Web activity waits for it; 200 or 502 once it ended), ``started: false``;
    409 ``data_incomplete`` naming the missing sources (unless ``partial``)."""
    far = far_from_clock(inp.week, now)
    if far is not None:
        return invalid_request([problem("week", far)])
    instance_id = instance_id_for(inp)
    url = status_url(base_url, inp.week, code)
    existing = await client.get_status(instance_id)
    generation = ""
    if _runtime(existing) is not None:
        if not inp.rerun or _runtime(existing) in _ACTIVE:
            return _attached(instance_id, inp, existing, url)
        # a re-run of an ended batch: starters that saw the same ended instance race for one claim
        generation = "-" + hashlib.sha256(str(getattr(existing, "created_time", "")).encode()).hexdigest()[:12]
    if inp.by == "staleness":
        # a retrain at once waits while the week's own batch runs: both would write its
        # forecasts; the next daily check asks again, and the next batch retrains stale groups
        week_batch = await client.get_status(f"weekly-batch-{inp.week}")
        if _runtime(week_batch) in _ACTIVE:
            message = f"the week of {inp.week} has its batch running; the stale groups wait for the next check"
            return error(409, "batch_running", message, week=inp.week)
    ready = readiness(lake, inp.week)
    # the store master has no week: a week with none of the weekly datasets has no data at all
    weekly = [d for d in REQUIRED if d not in TIMELESS]
    if not any(d in ready.present or d in ready.gaps for d in weekly):
        message = f"no curated data at all for the week of {inp.week}: nothing to train on"
        return error(409, "data_incomplete", message, week=inp.week, missing=list(ready.missing))
    if ready.missing and not inp.partial:
        message = f"{ready.describe()}; start with partial=true to train on what is there"
        gaps = {dataset: list(regions) for dataset, regions in ready.gaps.items()}
        return error(409, "data_incomplete", message, week=inp.week, missing=list(ready.missing), gaps=gaps)
    claim = json.dumps({"instance_id": instance_id, "by": inp.by, "claimed_at": clock.iso(now)}).encode()
    path = batch_path(inp.week, f"started-{instance_id}{generation}.json")
    if not lake.create(path, claim) and not _claim_expired(lake, path, now):
        # another starter holds the claim and is starting it: the same batch, soon running
        body = {"instance_id": instance_id, "week": inp.week, "started": False, "status_url": url}
        return 202, body, {"Location": url, "Retry-After": "60"}
    try:
        await client.start_new(ORCHESTRATOR, instance_id, inp.model_dump(mode="json"))
    except Exception:
        # NonRunningStates (host.json): a racing start of the same instance is refused
        existing = await client.get_status(instance_id)
        if _runtime(existing) is None:
            with contextlib.suppress(NotFoundError):
                lake.delete(path)  # nobody started it: the next starter may
            raise
        return _attached(instance_id, inp, existing, url)
    log.info("weekly batch %s started by %s (%s)", inp.week, inp.by, instance_id)
    body = {"instance_id": instance_id, "week": inp.week, "by": inp.by, "started": True, "status_url": url}
    if ready.missing:
        body["missing"] = list(ready.missing)
    return 202, body, {"Location": url, "Retry-After": "60"}


def far_from_clock(week: str, now: dt.datetime) -> str | None:
    """Why ``week`` is too far from the clock for a batch (a week that begins more than
    :data:`MAX_DAYS_AHEAD` days from now, or ended more than :data:`MAX_WEEKS_BACK` weeks ago);
    ``None`` for a week a batch may train on."""
    monday = dt.date.fromisoformat(week)
    today = now.date()
    if (monday - today).days > MAX_DAYS_AHEAD:
        return f"the week of {week} begins more than {MAX_DAYS_AHEAD} days from now ({today.isoformat()})"
    if (today - monday).days > 7 * MAX_WEEKS_BACK:
        return f"the week of {week} ended more than {MAX_WEEKS_BACK} weeks ago ({today.isoformat()})"
    return None


def _claim_expired(lake: Lake, path: str, now: dt.datetime) -> bool:
    try:
        claimed = clock.parse_iso(json.loads(lake.read_bytes(path))["claimed_at"])
    except (NotFoundError, ValueError, KeyError, TypeError):
        return False
    if (now - claimed).total_seconds() <= CLAIM_TIMEOUT_S:
        return False
    # replace it, so that only one of the starters that find it expired goes on
    with contextlib.suppress(NotFoundError):
        lake.delete(path)
    return lake.create(path, json.dumps({"claimed_at": clock.iso(now), "replaced": True}).encode())


def _attached(instance_id: str, inp: BatchInput, status: Any, url: str) -> Answer:
    """The answer for a week that already has its batch: its state, as the status route gives
    it (so that ADF's Web activity waits for a running one), with ``started: false``."""
    code, body, headers = answer_for(status, instance_id, inp.week, url)
    return code, {**body, "started": False, "status_url": url}, headers


def answer_for(status: Any, instance_id: str, week: str, url: str) -> Answer:
    """An existing batch's state as HTTP: 202 + Location while it runs, 200 with its summary when
    it succeeded (or waits for data), 502 with it when it failed, 409 when it was stopped."""
    runtime = _runtime(status)
    if runtime in _ACTIVE:
        custom = getattr(status, "custom_status", None)
        body = {"instance_id": instance_id, "week": week, "runtime_status": runtime, "progress": custom}
        return 202, body, {"Location": url, "Retry-After": "60"}
    output = getattr(status, "output", None)
    if isinstance(output, str):
        with contextlib.suppress(ValueError):
            output = json.loads(output)
    if runtime == "Completed" and isinstance(output, dict):
        if output.get("outcome") in ("succeeded", "waiting_for_data"):
            return 200, {"instance_id": instance_id, **output}, {}
        message = "; ".join(output.get("problems") or []) or "the batch failed"
        return 502, {"error": "batch_failed", "message": message, "instance_id": instance_id, **output}, {}
    if runtime in ("Terminated", "Canceled"):
        return error(409, "terminated", f"the batch was {str(runtime).lower()}", instance_id=instance_id)
    log.error("weekly batch %s failed: %s", instance_id, output)
    return error(
        500, "batch_failed", "the batch itself failed; the app's logs have the details", instance_id=instance_id
    )


async def batch_status(client: Any, lake: Lake, week: str, base_url: str, code: str | None = None) -> Answer:
    """``GET /api/batches/{week}``: 202 while it runs; 200 with the summary when it succeeded;
    502 with the summary when it failed; 200 ``waiting_for_data`` with the missing sources
    when the schedule found the week incomplete; 404 for a week with no batch."""
    try:
        check_week(week)
    except ValueError as e:
        return invalid_request([problem("week", str(e))])
    instance_id = f"weekly-batch-{week}"
    url = status_url(base_url, week, code)
    status = await client.get_status(instance_id)
    if _runtime(status) is None:
        try:
            waiting = json.loads(lake.read_bytes(batch_path(week, "waiting.json")))
        except NotFoundError:
            return error(404, "unknown_batch", f"no batch for the week of {week}")
        body = {
            "week": week,
            "outcome": "waiting_for_data",
            "missing": waiting.get("missing", []),
            "gaps": waiting.get("gaps", {}),
            "reason": waiting.get("reason"),
        }
        return 200, body, {}
    return answer_for(status, instance_id, week, url)


async def schedule_batch(client: Any, lake: Lake, partial: bool, now: dt.datetime) -> Answer:
    """The weekly fallback: start the last finished week's batch if nothing started it. When
    its data is not complete: with ``partial`` it trains on what is there; otherwise it starts
    nothing and records which sources are missing (``batches/week=<W>/waiting.json``, which
    ``GET /api/batches/<W>`` answers) until data or a later start completes the week."""
    from shared.weeks import last_finished_week

    week = last_finished_week(now)
    answer = await start_batch(client, lake, BatchInput(week=week, by="schedule", partial=partial), "", now)
    status, body, _ = answer
    if status == 409 and body.get("error") == "data_incomplete":
        waiting = {
            "week": week,
            "by": "schedule",
            "status": "waiting_for_data",
            "missing": body.get("missing", []),
            "gaps": body.get("gaps", {}),
            "reason": body.get("message"),
            "at": clock.iso(now),
        }
        lake.write_bytes(batch_path(week, "waiting.json"), json.dumps(waiting, indent=2).encode("utf-8"))
        log.warning("weekly batch %s not started: %s", week, body.get("message"))
        try:  # the alert on batches that did not succeed sees a week that waits, too
            telemetry.record_batch({"week": week, "by": "schedule", "outcome": "waiting_for_data"})
        except Exception:
            log.warning("the weekly batch's telemetry could not be recorded", exc_info=True)
    return answer
