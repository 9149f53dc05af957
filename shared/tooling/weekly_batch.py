"""The weekly batch on this machine: :func:`shared.mlops.batch.run_here` driven with plain calls
(each step in this process, each pipeline run submitted by ``trigger_aml``'s service,
:mod:`shared.aml.runs`, and followed with the watch's policy), and its summary for a person."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TextIO

from shared import clock
from shared.aml import runs
from shared.aml.backend import Backend
from shared.aml.catalog import load_catalog
from shared.aml.status import TERMINAL
from shared.mlops import batch, steps
from shared.tooling.progress import bar, say
from shared.watch import loop, policy

__all__ = ["print_summary", "run_batch"]

#: how the command line follows a batch's runs: soon at first, every 10 s at most
POLLING = {"first_s": 1.0, "factor": 1.3, "max_s": 10.0}


def run_batch(
    ctx: steps.Context,
    backend: Backend,
    inp: batch.BatchInput,
    out: TextIO,
    on_run: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The week's batch in this process; its summary (also in ``batches/week=<W>/summary.json``).
    ``on_run`` is told each run id as it is submitted (to cancel it on an interrupt)."""

    def call(step: str, payload: dict[str, Any]) -> dict[str, Any]:
        answer = steps.run_step(ctx, step, payload, clock.now())
        if step == "plan":
            _print_plan(answer, out)
        return answer

    def watch(command: batch.Watch) -> dict[str, Any]:
        body = {"parameters": command.parameters, "inputs": command.inputs, "idempotency_key": command.key}
        status, answer, _ = runs.submit(backend, load_catalog(), command.pipeline, json.dumps(body).encode(), "")
        if status >= 400:
            say(f"  the {command.kind} run was refused ({status}): {answer.get('message')}", out)
            return {"runs": [{"outcome": "failed", "error": {"message": answer.get("message")}}]}
        run_id = answer["run_id"]
        if on_run:
            on_run(run_id)
        say(f"  {command.kind}: {command.pipeline} run {run_id} ({answer['aml_status']})", out)
        options = policy.WatchOptions.model_validate({**command.options, "polling": POLLING})
        final = _follow(backend, run_id, options, out)
        r = final.runs[0]
        say(f"  {command.kind}: run {run_id} {r.aml_status}, {len(r.gate_failures)} health gate(s) failed", out)
        return policy.result(final)

    return batch.run_here(inp, call, watch)


def _follow(backend: Backend, run_id: str, options: policy.WatchOptions, out: TextIO) -> policy.WatchState:
    seen: dict[str, str] = {}
    with bar(None, "pipeline", "step") as shown:

        def show(status: dict[str, Any]) -> None:
            if shown.total is None and status["steps"]:
                shown.reset(total=len(status["steps"]))
            for step in status["steps"]:
                if seen.get(step["name"]) != step["aml_status"]:
                    seen[step["name"]] = step["aml_status"]
                    say(f"    step {step['name']}: {step['aml_status']}", out)
            shown.update(sum(s["aml_status"] in TERMINAL for s in status["steps"]) - shown.n)

        return loop.follow(backend, [run_id], options, on_status=show)


def _print_plan(plan: dict[str, Any], out: TextIO) -> None:
    if plan["status"] != "ready":
        say(f"  {plan.get('reason')}", out)
        return
    data = plan["data"]
    say(f"  data: {data['reference']} ({data['files']} curated files, content {data['content_hash'][:12]})", out)
    if plan.get("missing"):
        say(f"  {plan.get('reason')}", out)
    groups = plan["groups"]
    if plan["train"] == "all":
        say("  retrain: every group (no model is registered yet)", out)
        return
    retrain = [g for g, d in groups.items() if d["action"] == "retrain"]
    reasons: dict[str, int] = {}
    for g in retrain:
        reason = groups[g]["reason"].split(":")[0].split(" since ")[0]
        reasons[reason] = reasons.get(reason, 0) + 1
    why = "; ".join(f"{reason} ({n})" for reason, n in sorted(reasons.items()))
    skipped = len(groups) - len(retrain)
    say(f"  retrain {len(retrain)} of {len(groups)} group(s){': ' + why if why else ''}; {skipped} skipped", out)


def print_summary(summary: dict[str, Any], out: TextIO, width: int = 90) -> None:
    """The batch's outcome and, per group, what was done and why: the decision's reason for a
    retrained group, the training's for the others (both, in full, in the summary's JSON and
    the report)."""
    week = summary["week"]
    if summary["outcome"] == "waiting_for_data":
        print(f"week of {week}: waiting for data: missing {', '.join(summary.get('missing') or [])}", file=out)
        return
    groups: dict[str, dict[str, Any]] = summary.get("groups") or {}
    print(
        f"{'model':<26} {'training':<10} {'decision':<9} {'serving':>7}  why",
        file=out,
    )
    for name, g in groups.items():
        why = g.get("decision_why") if g.get("decision") else g.get("why")
        serving = f"v{g['scored_with']}" if g.get("scored_with") else (g.get("served_by") or "-")
        if g.get("source") == "previous":
            serving = f"prev {serving}"
        print(
            f"{name:<26} {g['training']:<10} {g.get('decision') or '-':<9} {serving:>7}  {_cut(str(why), width)}",
            file=out,
        )
    counts = summary.get("counts") or {}
    failed = sorted(summary.get("failed_groups") or {})  # named: a rerun retries only these
    named = ", ".join(failed[:3]) + (f" and {len(failed) - 3} more" if len(failed) > 3 else "")
    parts = [
        f"{counts[k]} {k}" + (f" to train ({named})" if k == "failed" and failed else "")
        for k in ("retrained", "skipped", "failed", "promoted", "kept", "scored")
        if counts.get(k)
    ]
    sources = summary.get("sources") or {}
    if counts.get("scored") and sources:
        parts[-1] += " (" + ", ".join(f"{n} {k}" for k, n in sources.items()) + ")"
    print(f"\nweek of {week} ({summary['by'].replace('_', ' ')}): {', '.join(parts) or 'nothing done'}", file=out)
    for problem in summary.get("problems") or []:
        print(f"problem: {problem}", file=out)
    print(f"forecasts: {summary['forecasts']}  summary: batches/week={week}/summary.json", file=out)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
