"""The forecast pipeline's train step fanned out per group (issue 22): its time with the
parallel step on 1 worker and on 2, the ratio, and each part's peak RSS (the parallel step's
workers': what a worker holds) (prints numbers; not a test).

On ``make run``'s default batch (14 regions x 6 stores x 10 SKUs: 840 series, 56 groups):
builds the lake once with ``python -m shared run --no-pipeline`` under ``--work`` (reused on a
second run) and prepare's features, then runs the train step as the local backend does:
train_global.py, the parallel step (``shared.aml.local.parallel`` over train_groups.py, one
mini-batch per group) with ``--workers`` 1, then 2, and train.py ``--fitted``. Peak RSS:
sampled every 0.1 s from /proc (psutil) over each part's process and its children (the pool's
workers apart). ``--src`` runs another checkout's steps (the same features, the code of
before a change: ``git worktree add /tmp/before HEAD~1``, ``--src /tmp/before/pipelines/forecast/src``).

    .venv/bin/python bench/bench_parallel_train.py [--work /tmp/forecastops-bench-parallel] [--features F] [--src S]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "pipelines" / "forecast" / "src"
#: the size CI runs it at (tests/pipelines/test_bench_runs.py): 8 groups
TINY = ["--regions", "2", "--stores-per-region", "2", "--skus", "4", "--weeks", "40"]


#: each part's peak RSS in bytes ("<part>" its process, "<part> worker" its children), of the last step()
PEAKS: dict[str, int] = {}


def _sample(proc: subprocess.Popen, name: str, done: threading.Event) -> None:
    """The peak RSS of ``proc`` and, apart, of its children (a pool's workers), into PEAKS."""
    try:
        root = psutil.Process(proc.pid)
        while not done.is_set():
            for p, kind in [(root, name), *((c, f"{name} worker") for c in root.children(recursive=True))]:
                try:
                    PEAKS[kind] = max(PEAKS.get(kind, 0), p.memory_info().rss)
                except psutil.Error:
                    continue
            done.wait(0.1)
    except psutil.Error:
        return


def step(argv: list[str], cwd: Path = SRC, name: str = "") -> float:
    """Run one command as a step runs it; its wall time in seconds (its peak RSS in PEAKS)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FORECASTOPS_METRICS_FILE": os.devnull}
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL)
    done = threading.Event()
    sampler = threading.Thread(target=_sample, args=(proc, name or Path(argv[1]).stem, done), daemon=True)
    sampler.start()
    code = proc.wait()
    done.set()
    sampler.join()
    if code:
        raise subprocess.CalledProcessError(code, argv)
    return time.monotonic() - t0


def features_of(work: Path, tiny: bool = False) -> Path:
    """prepare's features of the default batch (or the tiny one), built under ``work`` unless already there."""
    features = work / "features"
    if (features / "meta.json").exists():
        return features
    lake = work / "lake"
    if not (lake / "curated").exists():
        env = {**os.environ, "FORECASTOPS_LAKE_ROOT": str(lake)}
        size = TINY if tiny else []
        subprocess.run([sys.executable, "-m", "shared", "run", "--no-pipeline", *size], cwd=ROOT, env=env, check=True)
    step([sys.executable, "prepare.py", "--curated", str(lake / "curated"), "--out", str(features)])
    return features


def train_step(features: Path, out: Path, workers: int, src: Path = SRC) -> dict[str, float]:
    """The three parts of the train step, each timed (``src``: the steps' code folder)."""
    py = sys.executable
    b, w, f, r, m = (out / k for k in ("boosters", "work", "fitted", "results", "models"))
    PEAKS.clear()
    times = {
        "global": step(
            [py, "train_global.py", "--features", str(features), "--boosters", str(b), "--work", str(w)], src
        )
    }
    # --features too: the steps of before the groups' data read it (today's ignore it)
    times["groups"] = step(
        [py, "-m", "shared.aml.local.parallel", "--entry-script", "train_groups.py", "--input-data", str(w),
         "--workers", str(workers), "--append-row-to", str(r), "--",
         "--features", str(features), "--boosters", str(b), "--out", str(f)], src, "train_groups"
    )  # fmt: skip
    times["blend"] = step(
        [py, "train.py", "--features", str(features), "--boosters", str(b), "--fitted", str(f), "--out", str(m)], src
    )
    times["total"] = sum(times.values())
    return times


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/forecastops-bench-parallel"))
    p.add_argument("--features", type=Path, help="prepare's output to use instead of building the default batch")
    p.add_argument("--tiny", action="store_true", help="a batch of 8 groups instead of the default's 56 (CI's size)")
    p.add_argument("--src", type=Path, default=SRC, help="the steps' code folder (another checkout's)")
    p.add_argument("--workers", default="1,2", help="the pool sizes to run, comma separated")
    a = p.parse_args()
    features = a.features or features_of(a.work, a.tiny)
    print(f"features: {features} ({os.cpu_count()} cores), steps of {a.src}")
    results = {}
    for workers in [int(w) for w in a.workers.split(",")]:
        results[workers] = train_step(features, a.work / f"train-{workers}", workers, a.src)
        t = results[workers]
        print(
            f"--workers {workers}: train step {t['total']:.1f} s (LightGBM once {t['global']:.1f} s, "
            f"per-group parallel step {t['groups']:.1f} s, blend {t['blend']:.1f} s)"
        )
        print(f"--workers {workers}: peak RSS MiB: " + ", ".join(f"{k} {v / 2**20:.0f}" for k, v in PEAKS.items()))
    if not (1 in results and 2 in results):
        return 0
    one, two = results[1], results[2]
    step_ratio, groups_ratio = one["total"] / two["total"], one["groups"] / two["groups"]
    print(f"ratio 1 worker / 2 workers: train step {step_ratio:.2f}x, parallel step {groups_ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
