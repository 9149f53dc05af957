"""AML's job events wake the watch: polling is the safety net, not the clock.

Azure ML publishes a job's status changes to Event Grid
(``Microsoft.MachineLearningServices.RunStatusChanged``, ``RunCompleted``; ``data`` holds
``runId``, ``runStatus``, ``runTags``, ``experimentName``, ...). The watch stamps its instance
id on every job it submits (tag :data:`TAG_WATCH`), so an event finds the watch that waits for
its job, which then polls at once instead of at its next timer.

An event is only a wake-up: the watch reads the job's status from AML itself, so an event that
is duplicated, late or out of order changes nothing but the time of a poll. An event for a
job no watch follows (a step's own run, a job started elsewhere), or for a watch that has
ended, is dropped.
"""

from __future__ import annotations

import logging
import re
from typing import Any

log = logging.getLogger(__name__)

#: the external event the orchestrator waits on besides its timer
JOB_EVENT = "aml_job"
#: the job tag that names the watch (its durable instance id)
TAG_WATCH = "forecastops.watch"
#: the Event Grid event types that mean a job moved
EVENT_TYPES = frozenset(
    {"Microsoft.MachineLearningServices.RunStatusChanged", "Microsoft.MachineLearningServices.RunCompleted"}
)
_INSTANCE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


def target(event_type: str, data: Any) -> tuple[str, dict[str, Any]] | None:
    """The watch to wake and what to tell it, or None for an event no watch waits for."""
    if event_type not in EVENT_TYPES or not isinstance(data, dict):
        return None
    tags = data.get("runTags")
    instance_id = tags.get(TAG_WATCH) if isinstance(tags, dict) else None
    run_id = data.get("runId")
    if not isinstance(instance_id, str) or not _INSTANCE.match(instance_id) or not isinstance(run_id, str):
        return None
    status = data.get("runStatus") or ("Completed" if event_type.endswith("RunCompleted") else None)
    return instance_id, {"run_id": run_id, "aml_status": status}


async def wake(client: Any, event_type: str, data: Any) -> bool:
    """Raise the job event on the watch the job names; False when there is none to wake."""
    found = target(event_type, data)
    if found is None:
        log.info("AML event %s ignored: no watch follows its job", event_type)
        return False
    instance_id, payload = found
    status = await client.get_status(instance_id)
    runtime = getattr(getattr(status, "runtime_status", None), "value", getattr(status, "runtime_status", None))
    if runtime not in ("Pending", "Running", "ContinuedAsNew", "Suspended"):
        log.info("AML event for run %s ignored: watch %s is %s", payload["run_id"], instance_id, runtime or "unknown")
        return False
    await client.raise_event(instance_id, JOB_EVENT, payload)
    log.info("AML event: run %s is %s; watch %s woken", payload["run_id"], payload["aml_status"], instance_id)
    return True
