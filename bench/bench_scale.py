"""The weekly batch at growing sizes (issue 22, item 5): each stage's seconds, series per second
per core, peak RSS per process and the lake's bytes, and the ratios between sizes (prints
numbers; not a test).

    .venv/bin/python bench/bench_scale.py                  # 1x, 4x, 16x the default's stores (make bench-scale)
    .venv/bin/python bench/bench_scale.py --sizes 1,4      # what a loaded 2-core machine finishes in ~30 min
    .venv/bin/python bench/bench_scale.py --sizes 1 --regions 2 --stores 2 --skus 4 --weeks 40   # the tests'

A size ``m`` is ``make run``'s world with ``m`` times its stores: 14 regions x 6m stores x 10
SKUs x 104 weeks (840m series; 56 groups at every size, each m times larger). Each size runs
in a fresh folder under ``--work`` through the product's own entry points, each a process of
its own:

- ``generate``: ``python -m shared.tooling.synth`` (raw files and the oracle);
- ``python -m shared --lake LAKE run --samples RAW``: the main job on those files on the local
  backend: the bulk ingest (``ingest``), then the week's batch: ``plan`` (the plan step and the
  data asset), the training run (``prepare``; ``train`` = ``train_global`` + the parallel step
  ``train_groups`` on ``--workers`` = the cores + the blend ``train``; its holdout ``score`` and
  ``evaluate``), ``gate`` (register, promote), the scoring run (its ``prepare``; ``score`` =
  ``score_plan`` + the parallel step ``score_groups`` + ``score_production`` gathering them)
  and ``publish``.

Seconds: generate is the process's; ingest, plan, gate and publish come from the main job's
lines as they arrive; the runs' steps from their ``status.json`` (the local runner's start
and end of each step). Series per second per core: series / seconds / the cores the stage
used (the parallel steps' workers; 1 for every other stage). Peak RSS: the largest resident
set of each kind of process (the main job, each step's script, each parallel step's workers:
``train_groups worker``, ``score_groups worker``), sampled every 0.2 s from /proc (psutil).
Then each stage's time ratio between consecutive sizes against their series ratio: linear
costs at most 1.1 x the series ratio (4.4x per 4x). The machine's load (``os.getloadavg``)
is printed with every size: the machine is shared.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
#: the stages in order; the seven of the issue (train and score summed from their parts) first
STAGES = ("generate", "ingest", "plan", "prepare", "train", "score", "publish")
PARTS = (
    "train_global", "train_groups", "train_blend", "holdout_score", "evaluate", "gate", "score_prepare", "score_plan",
    "score_groups", "score_gather",
)  # fmt: skip
#: groups at every size: regions x 2 store formats x 2 product speeds
GROUPS_PER_REGION = 4


def load() -> str:
    """The machine's load averages, 1/5/15 minutes."""
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


class Sampler:
    """Peak RSS per kind of process, sampled every ``period`` s: the main job (``root``) and
    every process whose environment names ``marker`` (the lake: the local backend's detached
    runner, its steps and the parallel step's workers inherit it)."""

    def __init__(self, root: int, marker: str, period: float = 0.2) -> None:
        self.root, self.marker, self.period = root, marker, period
        self.peaks: dict[str, int] = {}
        self._kinds: dict[int, str | None] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            for p in psutil.process_iter():
                try:
                    if p.pid not in self._kinds:
                        self._kinds[p.pid] = self.kind(p)
                    kind = self._kinds[p.pid]
                    if kind:
                        self.peaks[kind] = max(self.peaks.get(kind, 0), p.memory_info().rss)
                except psutil.Error:
                    continue
            self._stop.wait(self.period)

    def kind(self, p: psutil.Process) -> str | None:
        """A process's kind: the main job, the runner, a step's script, or a parallel worker."""
        if p.pid == self.root:
            return "main job"
        if p.pid == os.getpid() or not any(self.marker in v for v in p.environ().values()):
            return None
        cmd = " ".join(p.cmdline())
        if "shared.aml.local.runner" in cmd:
            return "local runner"
        if "shared.aml.local.parallel" in cmd:
            parent = p.parent()
            nested = parent is not None and "shared.aml.local.parallel" in " ".join(parent.cmdline())
            # a worker is a fork of its pool: the same command line, naming the entry script
            entry = next((e for e in ("train_groups", "score_groups") if f"{e}.py" in cmd), "parallel")
            return f"{entry} worker" if nested else f"{entry} pool"
        for script in ("prepare", "train_global", "train", "score_plan", "score_production", "score", "evaluate"):
            if f"{script}.py" in cmd:
                return script
        return None

    def stop(self) -> dict[str, int]:
        """Stop sampling; the peaks."""
        self._stop.set()
        self._thread.join()
        return self.peaks


def generate(raw: Path, oracle: Path, size: dict[str, int]) -> tuple[float, int]:
    """The generator on its command line; its seconds and peak RSS (bytes)."""
    argv = [sys.executable, "-m", "shared.tooling.synth", "--out", str(raw), "--oracle-dir", str(oracle)]
    for k in ("regions", "stores_per_region", "skus", "weeks"):
        argv += [f"--{k.replace('_', '-')}", str(size[k])]
    argv += ["--start", "2024-11-18", "--seed", "7"]
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"the generator exited {proc.returncode}")
    return time.monotonic() - t0, usage.ru_maxrss * 1024


def main_job(lake: Path, raw: Path, log: Path) -> tuple[list[tuple[float, str]], dict[str, int]]:
    """``python -m shared run --samples RAW`` into ``lake``: its lines, each with the time it
    arrived (wall clock, as the runs' status), and the peak RSS of each kind of process."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "shared", "--lake", str(lake), "run", "--samples", str(raw)]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = Sampler(proc.pid, str(lake))
    lines: list[tuple[float, str]] = []
    assert proc.stdout is not None
    with open(log, "w") as f:
        for line in proc.stdout:
            lines.append((time.time(), line.rstrip("\n")))
            f.write(line)
    code = proc.wait()
    peaks = sampler.stop()
    if code:
        tail = "\n".join(text for _, text in lines[-20:])
        raise SystemExit(f"the main job exited {code} (log: {log}):\n{tail}")
    return lines, peaks


def _at(lines: list[tuple[float, str]], *words: str, after: float = 0.0) -> tuple[int, float]:
    for i, (t, text) in enumerate(lines):
        if t >= after and all(w in text for w in words):
            return i, t
    raise SystemExit(f"the main job printed no line with {words}")


def _steps(lake: Path, kind: str) -> dict[str, tuple[float, float]]:
    """The steps of the batch's ``kind`` run (train or score): name -> (start, end) epoch s."""
    runs = [p for p in (lake / "runs").iterdir() if f"-{kind}-" in p.name]
    status = json.loads((runs[0] / "status.json").read_text())

    def epoch(text: str) -> float:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

    return {s["name"]: (epoch(s["started_at"]), epoch(s["ended_at"])) for s in status["steps"]}


def stage_times(lines: list[tuple[float, str]], lake: Path) -> dict[str, float]:
    """Each stage's seconds, from the main job's lines and its two runs' steps."""
    _, t_ingest = _at(lines, "ingesting every raw file")
    _, t_batch = _at(lines, "the weekly batch")
    _, t_train_run = _at(lines, "train: ", " run ", after=t_batch)
    i_done, t_score_done = _at(lines, "score: run ", "health gate", after=t_batch)
    t_after = lines[i_done + 1][0] if i_done + 1 < len(lines) else t_score_done
    train, score = _steps(lake, "train"), _steps(lake, "score")
    span = {name: end - start for name, (start, end) in train.items()}
    out = {
        "ingest": t_batch - t_ingest,
        "plan": t_train_run - t_batch,
        "prepare": span["prepare"],
        "train_global": span["train_global"],
        "train_groups": span["train_groups"],
        "train_blend": span["train"],
        "holdout_score": span["score"],
        "evaluate": span["evaluate"],
        # from the training run's end to the scoring run's start: register and promote
        "gate": min(s for s, _ in score.values()) - max(e for _, e in train.values()),
        "score_prepare": score["prepare"][1] - score["prepare"][0],
        # the scoring run fanned out (score_plan, the parallel score_groups, score): a run of
        # before the fan-out has the score step alone
        **{k: score[k][1] - score[k][0] if k in score else 0.0 for k in ("score_plan", "score_groups")},
        "score_gather": score["score"][1] - score["score"][0],
        "publish": t_after - t_score_done,
    }
    out["train"] = out["train_global"] + out["train_groups"] + out["train_blend"]
    out["score"] = out["score_plan"] + out["score_groups"] + out["score_gather"]
    return out


def lake_bytes(lake: Path) -> dict[str, int]:
    """Bytes under each top folder of the lake, and their total."""
    sizes = {
        top.name: sum(f.stat().st_size for f in top.rglob("*") if f.is_file())
        for top in sorted(lake.iterdir())
        if top.is_dir()
    }
    sizes["total"] = sum(sizes.values())
    return sizes


def run_size(work: Path, m: int, base: dict[str, int], workers: int) -> dict[str, Any]:
    """One size, start to end, in a fresh ``work/<m>x``."""
    size = {**base, "stores_per_region": base["stores_per_region"] * m}
    series = size["regions"] * size["stores_per_region"] * size["skus"]
    folder = work / f"{m}x"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    before = load()
    secs, gen_rss = generate(folder / "raw", folder / "oracle", size)
    lines, peaks = main_job(folder / "lake", folder / "raw", folder / "main-job.log")
    times = {"generate": secs, **stage_times(lines, folder / "lake")}
    return {
        "m": m,
        "size": size,
        "series": series,
        "groups": size["regions"] * GROUPS_PER_REGION,
        "times": times,
        "rss": {"generate": gen_rss, **peaks},
        "lake": lake_bytes(folder / "lake"),
        "load": f"{before} before, {load()} after",
        "workers": workers,
    }


def cores(stage: str, workers: int) -> int:
    """The cores a stage used on this machine."""
    return workers if stage in ("train_groups", "score_groups") else 1


def mib(n: int) -> str:
    """Bytes as MiB."""
    return f"{n / 2**20:,.0f}"


def report(results: list[dict[str, Any]], smoke: bool) -> None:
    """The tables: per size, per stage; then the ratios between consecutive sizes."""
    head = "".join(f"{r['m']}x ({r['series']:,} series)".rjust(26) for r in results)
    print(f"\n{'stage: seconds (series/s/core)':<32}{head}")
    for stage in (*STAGES, *PARTS):
        cells = ""
        for r in results:
            s = r["times"][stage]
            rate = r["series"] / s / cores(stage, r["workers"]) if s > 0 else float("inf")
            cells += f"{s:10.1f} s ({rate:9.1f}/s)".rjust(26)
        print(f"{('  ' if stage in PARTS else '') + stage:<32}{cells}")
    total = [sum(r["times"][s] for s in STAGES) + r["times"]["holdout_score"] + r["times"]["evaluate"] for r in results]
    print(f"{'all stages':<32}" + "".join(f"{t:10.1f} s".rjust(26) for t in total))
    kinds = sorted({k for r in results for k in r["rss"]})
    print(f"\n{'peak RSS, MiB':<32}" + "".join(f"{r['m']}x".rjust(26) for r in results))
    for k in kinds:
        print(f"{k:<32}" + "".join(mib(r["rss"].get(k, 0)).rjust(26) for r in results))
    print(f"\n{'lake, MiB':<32}" + "".join(f"{r['m']}x".rjust(26) for r in results))
    for k in results[0]["lake"]:
        print(f"{k:<32}" + "".join(mib(r["lake"].get(k, 0)).rjust(26) for r in results))
    for r in results:
        print(f"{r['m']}x: {r['groups']} groups, {r['series'] // r['groups']:,} series per group, {r['load']}")
    worst = 0.0
    for a, b in zip(results, results[1:], strict=False):
        x = b["series"] / a["series"]
        ratios = {s: b["times"][s] / a["times"][s] for s in STAGES if a["times"][s] > 0}
        worst = max(worst, max(ratios.values()) / x)
        cells = ", ".join(f"{s} {v:.2f}x" for s, v in ratios.items())
        mem = b["rss"].get("train_groups worker", 0) / max(a["rss"].get("train_groups worker", 1), 1)
        print(f"{a['m']}x -> {b['m']}x ({x:.0f}x the series): {cells}; worker peak RSS {mem:.2f}x")
    if len(results) < 2:
        print("one size: no ratio to judge")
    elif smoke:
        print("not judged at smoke size")
    else:
        verdict = "linear" if worst <= 1.1 else "NOT linear"
        print(f"worst stage time ratio / series ratio: {worst:.2f} ({verdict}: the target is <= 1.10)")


def main(argv: list[str] | None = None) -> int:
    """Run every size, print the tables."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1,4,16", help="multiples of the default's stores, comma separated")
    p.add_argument("--work", type=Path, default=Path("/tmp/forecastops-bench-scale"))
    p.add_argument("--regions", type=int, default=14)
    p.add_argument("--stores", type=int, default=6, help="stores per region at 1x")
    p.add_argument("--skus", type=int, default=10)
    p.add_argument("--weeks", type=int, default=104)
    p.add_argument("--keep", action="store_true", help="keep each size's folder (default: deleted once measured)")
    a = p.parse_args(argv)
    sizes = [int(s) for s in a.sizes.split(",") if s.strip()]
    base = {"regions": a.regions, "stores_per_region": a.stores, "skus": a.skus, "weeks": a.weeks}
    workers = os.cpu_count() or 1
    smoke = (a.regions, a.stores, a.skus) != (14, 6, 10)
    print(
        f"{workers} cores; sizes {sizes} x ({a.regions} regions x {a.stores} stores x {a.skus} SKUs x {a.weeks} weeks)"
    )
    results = []
    for m in sizes:
        t0 = time.monotonic()
        print(f"{m}x: {load()} ...", flush=True)
        results.append(run_size(a.work, m, base, workers))
        print(f"{m}x: done in {time.monotonic() - t0:.0f} s, {results[-1]['load']}", flush=True)
        if not a.keep:
            shutil.rmtree(a.work / f"{m}x", ignore_errors=True)
    report(results, smoke)
    (a.work / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
