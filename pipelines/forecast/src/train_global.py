"""Step 2a, train's work done once per batch: the global LightGBM member at every forecast
origin (one model across every group), and one work file per group to fit (the parallel
step's mini-batches).

Writes ``<boosters>/boosters.json`` (trained_at, seed, the groups asked for, the groups to fit
(``work``), per origin whether it has a booster, its train rows and seconds),
``<boosters>/<origin>/lgbm.txt|json`` and ``<boosters>/groups/<group>.pkl``, each group's data
(its rows of the features and what is pooled over the lake, ``Data.part``: the parallel step's
workers read their group's file, never the whole table); ``<work>/<group>.json`` per group to
fit. Exit 2 as train.py: no train rows, or none of the listed groups in the data.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from backtest import Data
from forecast_lib import now_epoch
from pergroup import PARTS, fit_boosters, save_boosters, work_groups, write_parts, write_work
from train import check_data


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--features", type=Path, required=True, help="prepare's output folder")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--groups", default="all", help='"all" or comma-separated groups (<region>.<format>.<velocity>)')
    p.add_argument("--boosters", type=Path, required=True, help="out: the boosters and boosters.json")
    p.add_argument("--work", type=Path, required=True, help="out: one <group>.json per group to fit")
    a = p.parse_args(argv)
    t0 = time.monotonic()
    data = Data(a.features)
    groups, problem = check_data(data, a.groups)
    if problem:
        print(f"train: {problem}", file=sys.stderr)
        return 2
    trained_at = now_epoch()
    boosters, notes = fit_boosters(data, a.seed)
    work = work_groups(data, groups)
    meta = {
        "trained_at": trained_at,
        "seed": a.seed,
        "groups": "all" if groups is None else groups,
        "work": work,
        "origins": notes,
    }
    save_boosters(a.boosters, boosters, meta)
    t1 = time.monotonic()
    write_parts(a.boosters / PARTS, data, work)
    write_work(a.work, work)
    print(
        f"train_global: {len(notes)} origins, {len(work)} groups to fit, {time.monotonic() - t0:.1f}s "
        f"(the groups' data {time.monotonic() - t1:.1f}s)",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
