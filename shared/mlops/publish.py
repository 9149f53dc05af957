"""The weekly batch's last steps: ``publish`` (the forecasts into the standard dataset, the
batch's summary) and ``record`` (the summary of a batch that ended without publishing)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import re
from typing import Any

from shared import telemetry
from shared.clock import iso
from shared.lake import NotFoundError
from shared.mlops import pinned
from shared.mlops.batch import DATA_ASSET, BatchInput, instance_id_for
from shared.mlops.cards import NAME_PATTERN
from shared.mlops.context import FORECASTS, SOURCES, Context, batch_record, write_json

log = logging.getLogger(__name__)


def publish(ctx: Context, payload: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """The forecasts into ``curated/forecasts/v1/week=<W>/`` and the batch's summary."""
    plan = payload["plan"]
    week = plan["week"]
    if plan["status"] != "ready":
        summary = {
            "week": week,
            "by": plan["by"],
            "outcome": plan["status"],
            "missing": plan["missing"],
            "reason": plan.get("reason"),
            "started_at": plan["started_at"],
            "finished_at": iso(now),
        }
        write_json(ctx.lake, batch_record(plan, "summary"), summary)
        _telemetry(summary)
        return summary
    registered = payload.get("registered") or {}
    prod = (payload.get("production") or {}).get("models") or {}
    score = payload.get("score")
    other = _read_other_data(ctx, plan, score)
    scored = _copy_forecasts(ctx, week, score, prod) if score and _completed(score) and other is None else {}
    if score and score.get("run_id") and scored:
        ctx.data.link_run(DATA_ASSET, plan["data"]["version"], str(score["run_id"]), "score")
    groups = _group_lines(plan, registered, prod, scored)
    train = payload.get("train")
    problems = []
    if registered.get("error"):
        problems.append(registered["error"])
    if other is not None:
        problems.append(other)
    if score is None and prod:
        problems.append("the scoring run did not start")
    elif score is not None and score.get("outcome") != "completed":
        error = score.get("error") or {}
        message = error.get("message") if isinstance(error, dict) else error
        problems.append(f"the scoring run {score.get('run_id')} ended {score.get('outcome')}: {message}")
    elif not scored and other is None:
        problems.append("no group was scored")
    counts: dict[str, int] = {}
    sources = dict.fromkeys(SOURCES, 0)
    for g in groups.values():
        for key in (g["training"], g.get("decision") or "-", "scored" if g.get("source") else "not scored"):
            counts[key] = counts.get(key, 0) + 1
        if g.get("source") in sources:
            sources[g["source"]] += 1
    summary = {
        "week": week,
        "by": plan["by"],
        "outcome": "failed" if problems else "succeeded",
        "problems": problems,
        "partial": plan["partial"],
        "missing": plan["missing"],
        "data": plan["data"],
        "train_run": train.get("run_id") if train else None,
        "score_run": score.get("run_id") if score else None,
        "forecasts": f"{FORECASTS}/week={week}/",
        "counts": counts,
        "sources": sources,
        "fallback_share": round((sources["previous"] + sources["baseline"]) / max(1, sum(sources.values())), 4),
        "groups": groups,
        # the groups whose training failed, and why: still scored; a rerun retries only these
        "failed_groups": {g: line["why"] for g, line in groups.items() if line["training"] == "failed"},
        # the inputs the plan compared, per region and format: a rerun compares its own with them
        "fingerprints": plan.get("fingerprints") or {},
        # the training code the plan compared (and the run's cards record); versions pruned
        "code": (plan.get("code") or {}).get("version"),
        "archived": registered.get("archived") or {},
        "archive_failed": registered.get("archive_failed") or {},
        "started_at": plan["started_at"],
        "finished_at": iso(now),
    }
    write_json(ctx.lake, batch_record(plan, "summary"), summary)
    for group, why in summary["failed_groups"].items():
        log.warning("weekly batch %s: %s: training failed: %s", week, group, why)
    _telemetry(summary)
    return summary


def _telemetry(summary: dict[str, Any]) -> None:
    """The batch's metrics; telemetry never fails a batch (a fault is logged)."""
    try:
        telemetry.record_batch(summary)
    except Exception:
        log.warning("the weekly batch's telemetry could not be recorded", exc_info=True)


def _completed(run: dict[str, Any]) -> bool:
    return run.get("outcome") == "completed"


def _read_other_data(ctx: Context, plan: dict[str, Any], score: dict[str, Any] | None) -> str | None:
    """Why a completed scoring run publishes nothing: its prepare read other data than the plan's
    version (:func:`shared.mlops.pinned.read_other_data`); None when it read the plan's."""
    if not score or not _completed(score) or not score.get("run_id"):
        return None
    return pinned.read_other_data(
        ctx.lake, str(score["run_id"]), plan["data"], "scoring", "its forecasts are not published"
    )


def _copy_forecasts(ctx: Context, week: str, score: dict[str, Any], prod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The scoring run's ``<group>.csv`` files into the forecasts dataset (a group no longer
    scored loses its old file); per group, what served it (the score step's summary: source,
    model, version, why it fell back) and its rows."""
    outputs = f"runs/{score['run_id']}/outputs"
    listed = [p for p in ctx.lake.list(outputs) if "/forecasts/" in p]
    found = {p.rsplit("/", 1)[-1][:-4]: p for p in listed if p.endswith(".csv")}
    served: dict[str, Any] = {}
    for path in listed:
        if path.endswith("/forecasts/summary.json"):
            served = json.loads(ctx.lake.read_bytes(path)).get("sources") or {}
    target = f"{FORECASTS}/week={week}"
    scored: dict[str, dict[str, Any]] = {}
    for group, path in sorted(found.items()):
        if not re.match(NAME_PATTERN, group):
            continue
        data = ctx.lake.read_bytes(path)
        ctx.lake.write_bytes(f"{target}/{group}.csv", data)
        # a scoring run without the sources (an older score step): production served what it listed
        version = (prod.get(group) or {}).get("version")
        default: dict[str, Any] = {
            "source": "production" if version else "baseline",
            "model": group,
            "version": version,
            "reasons": [],
        }
        how = served.get(group) or default
        scored[group] = {**how, "rows": max(0, data.count(b"\n") - 1)}
    for path in list(ctx.lake.list(target)):
        if path.endswith(".csv") and path.rsplit("/", 1)[-1][:-4] not in scored:
            with contextlib.suppress(NotFoundError):
                ctx.lake.delete(path)
    return scored


def _group_lines(
    plan: dict[str, Any], registered: dict[str, Any], prod: dict[str, Any], scored: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Per group: retrained or skipped (why), promoted or kept (why), scored with which version."""
    trained = registered.get("groups") or {}
    planned = plan.get("groups") or {}
    # the groups the run trained no model for (its manifest): why, in one line; or the data lacks them
    failed, left_out = registered.get("failed") or {}, registered.get("left_out") or {}
    lines: dict[str, dict[str, Any]] = {}
    for group in sorted(set(planned) | set(trained) | set(prod) | set(scored) | set(failed)):
        p = planned.get(group) or {"action": "retrain", "reason": "no production model"}
        t = trained.get(group)
        line: dict[str, Any] = {"training": "skipped" if p["action"] == "skip" else "retrained", "why": p["reason"]}
        if p.get("candidate"):  # a rerun found the model the last batch trained on these inputs
            line["candidate"] = p["candidate"]
        if p["action"] == "retrain" and not (t and t.get("registered")):
            line["training"] = "failed"
            line["why"] = (
                registered.get("error")
                or (t or {}).get("reason")
                or failed.get(group)
                or "the training run produced no model for it"
            )
            if group in left_out and not registered.get("error"):
                line |= {"training": "skipped", "why": left_out[group]}
        if t and t.get("registered"):
            line |= {"version": t["version"], "mape": t["mape"], "decision": t["outcome"], "decision_why": t["reason"]}
        how = scored.get(group) or {}
        # scored_with: the registry version that served (production or previous); a baseline has none
        line["scored_with"] = how.get("version") if how.get("source") in ("production", "previous") else None
        line["rows"] = how.get("rows", 0)
        line["source"] = how.get("source")
        line["served_by"] = how.get("model")
        if how.get("reasons") and how.get("source") != "production":
            line["fallback_why"] = "; ".join(how["reasons"])
        if group in prod and prod[group].get("stale"):
            line["stale_production"] = True
        lines[group] = line
    return lines


def record(ctx: Context, payload: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """A batch that ended without its publish step (a step failed on every attempt): its
    summary in the lake and in the telemetry, best effort."""
    summary = dict(payload)
    week = str(summary.get("week"))
    inp = BatchInput(week=week, by=summary.get("by") or "http", groups=summary.get("asked_groups") or [])
    write_json(ctx.lake, batch_record({"week": week, "instance": instance_id_for(inp)}, "summary"), summary)
    _telemetry(summary)
    return summary
