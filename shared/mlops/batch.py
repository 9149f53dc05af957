"""The weekly batch: new data -> retrain what changed -> gate -> promote -> score with production.

:func:`steps` is the batch's one decision sequence, a generator like the watch's loop: it
yields :class:`Call` (run one of the batch's steps, :data:`STEPS`, in :mod:`shared.mlops.steps`)
and :class:`Watch` (start a pipeline run and follow it to its end with the watch's policy),
and is sent back what came of each. The durable orchestrator ``weekly_batch`` drives it with
activities and a sub-orchestration of the watch; the command line and the main job drive it
with plain calls (:func:`run_here`). Both therefore do exactly the same.

1. ``plan``: is the week's data complete (else wait, or go on with what is there when asked);
   register the curated data as a data asset version; for every group, retrain or skip, and
   why (no production model, stale, inputs changed, forced; else skipped).
2. the ``forecast`` pipeline, on the data asset version, for the groups to retrain only;
3. ``register``: each trained model into the registry with its metrics, its run and its data;
   promoted only through the rules (:mod:`shared.mlops.promotion`), the decision recorded;
4. ``production``: the production models, gathered for the scoring run;
5. the ``score`` pipeline: the coming weeks, each group with its production model;
6. ``publish``: ``curated/forecasts/v1/week=<W>/<group>.csv`` and the batch's summary.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.mlops.cards import NAME_PATTERN
from shared.weeks import layout

__all__ = ["DATA_ASSET", "BatchInput", "Call", "Command", "Watch", "batch_path", "instance_id_for", "steps"]

#: the data asset the curated inputs are registered as, one version per week
DATA_ASSET = "forecastops-curated"
TRAIN_PIPELINE = "forecast"
SCORE_PIPELINE = "score"
#: the batch's steps, as :class:`Call` names them (each an activity of the orchestrator)
STEPS = ("plan", "register", "production", "publish")
#: the step that records a batch which ended without ``publish`` (a step failed every attempt)
RECORD = "record"

_WEEK = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def check_week(week: str) -> str:
    """``week`` if it names a week: the ISO date of its Monday (``week_start``)."""
    if not _WEEK.fullmatch(week):
        raise ValueError(f"{week!r} is not a week: give its Monday as YYYY-MM-DD")
    try:
        day = dt.date.fromisoformat(week)
    except ValueError:
        raise ValueError(f"{week!r} is not a date") from None
    if day.weekday() != 0:
        raise ValueError(f"{week} is a {day.strftime('%A')}: a week is named by its Monday (week_start)")
    return week


class BatchInput(BaseModel):
    """What starts a week's batch, from any of its entry points."""

    # strict: ``"true"`` or ``1`` is no boolean (ADF's HTTP body and the queue's messages alike)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    #: the week, by its Monday (``week_start``), whose data the batch trains on
    week: str
    #: who started it: the data-complete trigger, the weekly schedule, ADF by HTTP, the
    #: staleness check (retrain at once), or the command line
    by: Literal["data_complete", "schedule", "http", "staleness", "cli"] = "http"
    #: train on what is there when a source is missing for the week (and say so)
    partial: bool = False
    #: ``changed`` or ``all``; None: the app setting ``FORECASTOPS_RETRAIN``
    retrain: Literal["changed", "all"] | None = None
    #: groups to retrain whatever their inputs (the staleness check's stale groups)
    groups: list[str] = Field(default_factory=list, max_length=1000)
    #: start the week's batch again when the one it has ended (failed, terminated, or even
    #: succeeded): a new plan, new runs; a running batch is never started twice
    rerun: bool = False

    @field_validator("week")
    @classmethod
    def _week(cls, value: str) -> str:
        return check_week(value)

    @field_validator("groups")
    @classmethod
    def _groups(cls, value: list[str]) -> list[str]:
        bad = [g for g in value if not re.fullmatch(NAME_PATTERN, g)]
        if bad:
            shown = ", ".join(repr(g)[:40] for g in bad[:5])
            raise ValueError(f"not a group (<region>.<format>.<velocity>, lower case): {shown}")
        return value


def instance_id_for(inp: BatchInput) -> str:
    """The batch's durable instance: one per week, whoever starts it (so every further start
    of the same week is the same batch); a staleness retrain of that week is its own."""
    if inp.by == "staleness":
        digest = hashlib.sha256(",".join(sorted(inp.groups)).encode()).hexdigest()[:8]
        return f"weekly-batch-{inp.week}-stale-{digest}"
    return f"weekly-batch-{inp.week}"


def batch_path(week: str, name: str = "") -> str:
    """Where a week's batch keeps its records in the lake."""
    return layout.week_path(week, name)


@dataclass(frozen=True)
class Call:
    """Run the batch step ``step`` (one of :data:`STEPS`) on ``payload``; reply: its answer."""

    step: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Watch:
    """Start one run of ``pipeline`` and follow it to its end with the watch's policy; reply:
    the watch's result (``policy.result``). ``key`` names the run (the same key, the same run)."""

    kind: Literal["train", "score"]
    pipeline: str
    parameters: dict[str, Any]
    inputs: dict[str, str]
    options: dict[str, Any]
    key: str


Command = Call | Watch
Steps = Generator[Command, Any, dict[str, Any]]


#: the per-model metrics a model card keeps (the others stay in the run)
CARD_METRICS = ("mape", "rmse_0", "rmse_all", "baseline_mape", "wape", "trained_at")


def run_of(result: dict[str, Any] | None) -> dict[str, Any] | None:
    """The one run of a :class:`Watch`'s result: id, outcome, error, and the metrics a model
    card keeps (per step, ``<model>.<metric>``; the rest would only weigh on the history)."""
    if not result or not result.get("runs"):
        return None
    run = result["runs"][0]
    metrics = {
        step: {k: v for k, v in (values or {}).items() if str(k).rpartition(".")[2] in CARD_METRICS}
        for step, values in (run.get("metrics") or {}).items()
    }
    return {
        "run_id": run.get("run_id"),
        "outcome": run.get("outcome"),
        "aml_status": run.get("aml_status"),
        "metrics": metrics,
        "error": run.get("error"),
        "failed_step": run.get("failed_step"),
    }


def _key(plan: dict[str, Any], kind: str, content: Any) -> str:
    """The run's idempotency key: the same plan (a replay, a retried activity) asks for the same
    run; a batch planned again (the week started anew after its instance was purged, the
    command line) gets a run of its own, not the old one re-attached."""
    week = plan["week"]
    content = [plan.get("started_at"), content]
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]
    return f"batch-{week}-{kind}-{digest}"


def steps(inp: dict[str, Any]) -> Steps:
    """The week's batch from its input to its summary (see the module's steps)."""
    plan = yield Call("plan", inp)
    if plan["status"] != "ready":
        return (yield Call("publish", {"plan": plan}))
    data = plan["data"]
    train = None
    if plan["train"]:
        parameters = {"groups": plan["train"] if isinstance(plan["train"], str) else ",".join(plan["train"])}
        inputs = {**plan.get("train_inputs", {}), "curated": data["reference"]}
        train = yield Watch(
            "train", TRAIN_PIPELINE, parameters, inputs, plan["watch"], _key(plan, "train", [parameters, inputs])
        )
    registered = yield Call("register", {"plan": plan, "train": run_of(train)})
    production = yield Call("production", {"plan": plan})
    score = None
    if production["models"]:
        inputs = {"curated": data["reference"], "production": production["uri"]}
        score = yield Watch(
            "score", SCORE_PIPELINE, {}, inputs, plan["watch"], _key(plan, "score", [inputs, production["models"]])
        )
    payload = {
        "plan": plan,
        "train": run_of(train),
        "registered": registered,
        "production": production,
        "score": run_of(score),
    }
    return (yield Call("publish", payload))


def step_failed(inp: dict[str, Any], step: str, at: str) -> dict[str, Any]:
    """The batch's summary when one of its steps failed on every attempt (its error is in the
    logs: an answer carries no stack trace)."""
    return {
        "week": inp.get("week"),
        "by": inp.get("by") or "http",
        # the staleness batch's groups (they name its instance); "groups" is the per-group lines
        **({"asked_groups": inp["groups"]} if inp.get("groups") else {}),
        "outcome": "failed",
        "problems": [f"the {step} step failed; the app's logs have the details"],
        "finished_at": at,
    }


def run_here(
    inp: BatchInput,
    call: Callable[[str, dict[str, Any]], dict[str, Any]],
    watch: Callable[[Watch], dict[str, Any]],
) -> dict[str, Any]:
    """Drive :func:`steps` in this process: each :class:`Call` through ``call(step, payload)``,
    each :class:`Watch` through ``watch``; the batch's summary."""
    sequence = steps(inp.model_dump(mode="json"))
    reply: Any = None
    while True:
        try:
            command = sequence.send(reply)
        except StopIteration as end:
            return dict(end.value)
        reply = call(command.step, command.payload) if isinstance(command, Call) else watch(command)
