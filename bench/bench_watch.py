"""Benchmark: the durable watch following a weekly batch, polling only and with AML's events.

    .venv/bin/python bench/bench_watch.py                 # 28 runs x 6 h (make bench-watch)
    .venv/bin/python bench/bench_watch.py --runs 500      # the direction the business is going
    .venv/bin/python bench/bench_watch.py --runs 3        # a few seconds: CI's proof that it runs

The batch is submitted and followed by the app's own orchestrator and activities, through the
Durable SDK's real replay engine (tests/fakes/durable/ plays the host, with a simulated clock) and
the ``azureml`` backend on the real ``MLClient`` whose transport is the in-process fake of
AML's REST API (tests/fakes/aml/), so every AML call is counted. The jobs run for 5.5 to 6 hours
(spread evenly) and all complete.

Printed per mode (polling only, the default policy; with events, the 15-minute safety poll
and a job event at each job's end): activity executions, orchestrator episodes, generations,
history events in the largest generation, the largest payload (an activity's input or result,
or a generation's input), AML REST calls in all and per running job per tick, and the time
from the last job's end to the orchestration's answer. Then the targets (set for 28 and for
500 runs), met or not. A script, not a test: it prints numbers and never fails on time; it
exits 1 only when a batch did not succeed (then nothing was measured: a line says why).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


import poll_aml_durable  # noqa: E402
from poll_aml_durable import names, pipeline_runs_watch  # noqa: E402
from shared import runtime  # noqa: E402
from shared.aml.catalog import load_catalog  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.watch import events  # noqa: E402
from shared.watch import routes as watch_api  # noqa: E402
from tests.fakes.aml.fake import FakeAML  # noqa: E402
from tests.fakes.durable.host import DurableHost  # noqa: E402
from tests.fakes.durable.replay import find_function  # noqa: E402

T0 = dt.datetime(2026, 11, 30, 2, 0, tzinfo=dt.UTC)


def run_batch(n_runs: int, with_events: bool) -> dict[str, Any]:
    fake = FakeAML()
    fake.register_repo_components()  # the workspace as `python -m shared aml-assets` leaves it
    backend = fake.backend()
    runtime.aml_backend = lambda: backend  # type: ignore[assignment]  # the activities' backend, for this script
    ends: dict[str, dt.datetime] = {}  # job -> when it completes (assigned at submit)
    host_box: dict[str, DurableHost] = {}

    def submit(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        answers = pipeline_runs_watch.aml_submit_runs(requests)
        for a in answers:
            if a["ok"]:
                i = len(ends)
                ends[a["answer"]["run_id"]] = T0 + dt.timedelta(hours=5.5 + 0.5 * i / max(n_runs - 1, 1))
        return answers

    def statuses(items: list[dict[str, Any]]) -> dict[str, Any]:
        now = host_box["host"].clock
        for item in items:
            job = item["run_id"]
            want = "Completed" if now >= ends[job] else "Running"
            if fake.jobs[job]["body"]["properties"]["status"] != want:
                fake.set_status(job, want)
        return pipeline_runs_watch.aml_runs_status(items)

    orchestrator = find_function(poll_aml_durable.bp, "watch_pipeline_runs")
    activities = {
        names.SUBMIT: submit,
        names.STATUS: statuses,
        names.CANCEL: pipeline_runs_watch.aml_cancel_run,
    }
    host = DurableHost(orchestrator, activities, start_time=T0, max_steps=1_000_000)
    host_box["host"] = host
    polling = Settings(watch_events=True).watch_polling() if with_events else None
    body = json.dumps({"pipeline": "smoke", "runs": [{"parameters": {"region": f"r{i}"}} for i in range(n_runs)]})
    plan, problems = watch_api.plan_start(body.encode(), load_catalog(), T0, polling)
    if plan is None:
        raise SystemExit(f"the batch was refused: {problems}")
    t0 = time.perf_counter()
    iid = host.start(plan["state"], run=False)
    if with_events:
        _send_events(host, iid, fake, ends)
    state = host.run(iid)
    seconds = time.perf_counter() - t0
    histories = [*state.past_histories, state.events]
    episodes = sum(1 for h in histories for e in h if e["EventType"] == 12)  # OrchestratorStarted
    payload = max(
        (len(e[k].encode()) for h in histories for e in h for k in ("Input", "Result") if isinstance(e.get(k), str)),
        default=0,
    )
    polls = state.output["polls"]
    rest = [r for r in fake.requests if r.method in ("GET", "PUT", "POST")]
    status_rest = [r for r in rest if ("/jobs/" in r.path and r.method == "GET") or "/history/" in r.path]
    last_end = max(ends.values(), default=None)  # None: no job was started
    failed = state.output["failed"]
    return {
        "runs": n_runs,
        "events": with_events,
        "outcome": state.output["outcome"],
        "completed": state.output["runs_completed"],
        "first_error": (failed[0].get("error") or {}).get("message") if failed else None,
        "activities": state.activity_executions,
        "episodes": episodes,
        "generations": state.generation,
        "max_history": max(state.history_lengths),
        "largest_payload": payload,
        "aml_calls": len(rest),
        # every job runs on every tick but the last (they all end within the last half hour)
        "aml_calls_per_running_job_per_tick": len(status_rest) / max(1, polls * n_runs),
        "polls": polls,
        "answer_after_s": None if last_end is None else (host.clock - last_end).total_seconds(),
        "wall_s": seconds,
    }


def _send_events(host: DurableHost, iid: str, fake: FakeAML, ends: dict[str, dt.datetime]) -> None:
    """Each job's completion event at its end time, as AML's Event Grid subscription sends it."""
    host.advance(iid)  # submits and the first poll, then the watch sleeps
    for job, end in sorted(ends.items(), key=lambda kv: kv[1]):
        if host.status(iid).runtime_status != "Running":
            return
        if end > host.clock:
            host.advance_clock(end - host.clock)
        fake.set_status(job, "Completed")
        data = {"runId": job, "runStatus": "Completed", "runTags": {events.TAG_WATCH: iid}}
        target = events.target("Microsoft.MachineLearningServices.RunStatusChanged", data)
        if target is not None:
            host.raise_event(iid, events.JOB_EVENT, target[1])
        host.advance(iid)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=28)
    a = p.parse_args(argv)
    results = [run_batch(a.runs, with_events=False), run_batch(a.runs, with_events=True)]
    print(f"{a.runs} runs x 6 h through the replay engine and the AML test transport")
    cols = [
        ("mode", 12),
        ("outcome", 9),
        ("activities", 10),
        ("episodes", 9),
        ("gens", 5),
        ("max history", 11),
        ("payload KiB", 11),
        ("AML calls", 9),
        ("calls/job/tick", 14),
        ("answer after s", 14),
        ("wall s", 7),
    ]
    print("  ".join(f"{c:>{w}}" for c, w in cols))
    for r in results:
        row = [
            "events" if r["events"] else "polling",
            r["outcome"],
            r["activities"],
            r["episodes"],
            r["generations"],
            r["max_history"],
            f"{r['largest_payload'] / 1024:.1f}",
            r["aml_calls"],
            f"{r['aml_calls_per_running_job_per_tick']:.2f}",
            "-" if r["answer_after_s"] is None else f"{r['answer_after_s']:.0f}",
            f"{r['wall_s']:.1f}",
        ]
        print("  ".join(f"{v!s:>{w}}" for v, (_, w) in zip(row, cols, strict=True)))
    broken = [r for r in results if r["outcome"] != "succeeded"]
    for r in broken:
        mode = "events" if r["events"] else "polling"
        print(
            f"  {mode}: the batch ended {r['outcome']}, {r['completed']} of {r['runs']} runs completed: "
            f"nothing measured (first failure: {r['first_error']})"
        )
    if broken:
        return 1
    poll, ev = results
    checks: list[tuple[str, bool]] = []
    if a.runs == 28:
        checks = [
            ("polling: <= 110 activity executions", poll["activities"] <= 110),
            ("polling: <= 400 history events in any generation", poll["max_history"] <= 400),
            ("polling: <= 2 AML calls per running job per tick", poll["aml_calls_per_running_job_per_tick"] <= 2),
            ("events: answer within one episode of the last completion", ev["answer_after_s"] == 0),
            ("events: <= 40 activity executions", ev["activities"] <= 40),
        ]
    elif a.runs >= 500:
        checks = [
            ("polling: <= 200 activity executions", poll["activities"] <= 200),
            ("polling: largest payload <= 256 KiB", poll["largest_payload"] <= 256 * 1024),
        ]
    else:
        print(f"  no targets at {a.runs} runs (they are set for 28 and for 500)")
    for text, ok in checks:
        print(f"  {'met' if ok else 'NOT MET'}: {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
