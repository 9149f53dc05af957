"""The score pipeline's work done once per batch, before its groups fan out: production.json
checked (exit 2 with one line, nothing written, as score_production.py), each group's baseline
chosen on the lake's backtest origins, and one work file per group to score (the parallel
step's mini-batches): ``<work>/<group>.json`` = ``{"group", "baseline"}``, for every group
production.json lists and every group of the lake. With ``--parts P``, each of those groups'
data too (``<P>/<group>.pkl``, ``Data.part``: its rows of the features and what is pooled over
the lake), so that score_groups.py ``--parts P`` reads its group's rows alone, never the whole
table (a folder of its own: every file of the work folder is a mini-batch).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pergroup import write_parts, write_work
from score_production import baseline_choice, open_or_refuse


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--features", type=Path, required=True, help="prepare's output folder")
    p.add_argument(
        "--production",
        type=Path,
        required=True,
        help="production.json and each group's version (<group>/MLmodel, ... or model.pkl)",
    )
    p.add_argument("--work", type=Path, required=True, help="out: one <group>.json per group to score")
    p.add_argument("--parts", type=Path, help="out: one <group>.pkl per group to score, its data")
    a = p.parse_args(argv)
    t0 = time.monotonic()
    scoring = open_or_refuse(a.features, a.production)
    if scoring is None:
        return 2
    baselines = baseline_choice(scoring.data)
    groups = scoring.groups()
    write_work(a.work, groups, {g: {"baseline": baselines.get(g, "baseline")} for g in groups})
    if a.parts is not None:
        write_parts(a.parts, scoring.data, groups)
    print(f"score_plan: week {scoring.week}, {len(groups)} groups to score, {time.monotonic() - t0:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
