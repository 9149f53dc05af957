"""The score pipeline's parallel step (issue 22): its workers' peak RSS and the step's time when
each worker reads the whole features (score_groups.py with ``--features``, as the score pipeline
ran it before it bound score_plan's parts) and when each reads its group's data alone (``--parts``,
as the pipeline runs it)
(prints numbers; not a test).

On a scoring run the local backend kept (``make bench-scale ARGS="--keep"`` keeps every size's
lake): its prepare's features, its score_plan's work and parts, and the production folder it
scored with, run again through ``shared.aml.local.parallel`` with ``--workers`` 2.

    .venv/bin/python bench/bench_parallel_score.py --run LAKE/runs/score-... \
        --production LAKE/batches/week=W/production/T
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_parallel_train import PEAKS, step  # a sibling script, not a package


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True, help="a kept scoring run's folder (runs/score-...)")
    p.add_argument("--production", type=Path, required=True, help="the production folder it scored with")
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args()
    out = a.run / "outputs"
    features, work, parts = out / "prepare" / "features", out / "score_plan" / "work", out / "score_plan" / "parts"
    groups = len(list(work.glob("*.json")))
    print(f"{groups} groups, {a.workers} workers")
    for label, extra in (("whole features", []), ("the group's part", ["--parts", str(parts)])):
        with tempfile.TemporaryDirectory() as tmp:
            PEAKS.clear()
            seconds = step(
                [sys.executable, "-m", "shared.aml.local.parallel", "--entry-script", "score_groups.py",
                 "--input-data", str(work), "--workers", str(a.workers), "--append-row-to", f"{tmp}/results", "--",
                 "--features", str(features), "--production", str(a.production), "--out", f"{tmp}/served", *extra],
                name="score_groups",
            )  # fmt: skip
        worker = PEAKS.get("score_groups worker", 0) / 2**20
        print(f"{label}: score_groups {seconds:.1f} s, worker peak RSS {worker:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
