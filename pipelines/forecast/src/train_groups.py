"""Step 2b, the parallel step's entry script: each group's fit (pergroup.fit_one), as AML's
parallel job runs it (and the local backend, from a process pool, the same way).

The contract: ``init()`` once per worker process loads what every group shares (the boosters
of train_global.py, its meta) from the program arguments (``--boosters``, ``--out``);
``run(mini_batch, mini_batch_context)`` gets a list of work files (``<group>.json``), reads
each group's data alone (``<boosters>/groups/<group>.pkl``, train_global's), fits it, writes
``<out>/<group>.pkl`` and returns one row per group: a JSON line ``{"group", "outcome",
"reason"}`` (outcome ``ok``, ``not_fitted`` or ``failed``; the reason one line). A worker never
reads the whole features table, so its memory follows the largest group, not the batch.

A group's failure is its row, never an exception (its data file missing or unreadable too): a
mini-batch fails only when its process does (killed, out of memory, past the timeout), and
then AML's retry and ``mini_batch_error_threshold`` apply.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pergroup import PARTS, GroupFit, PartError, fit_one, load_boosters, read_part, read_work, save_fit

_STATE: dict[str, Any] = {}


def init() -> None:
    """Once per worker: the boosters, their meta and where the fits go (no group's data)."""
    p = argparse.ArgumentParser(description="train: the per-group fit (AML parallel entry script)")
    p.add_argument("--boosters", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    a, _ = p.parse_known_args()  # AML adds arguments of its own
    boosters, meta = load_boosters(a.boosters)
    _STATE.update(parts=a.boosters / PARTS, boosters=boosters, meta=meta, out=a.out)
    a.out.mkdir(parents=True, exist_ok=True)


def run(mini_batch: list[str], mini_batch_context: Any = None) -> list[str]:
    """Fit each group the mini-batch's work files name, on its own data; one JSON row per group."""
    rows = []
    meta = _STATE["meta"]
    for path in mini_batch:
        group = read_work(Path(path))
        try:
            data = read_part(_STATE["parts"], group)
        except PartError as e:
            fit = GroupFit(group, outcome="failed", reason=str(e))
        else:
            fit = fit_one(data, group, _STATE["boosters"], int(meta["seed"]), float(meta["trained_at"]))
            del data  # the next group's data replaces it, never joins it
        save_fit(_STATE["out"], fit)
        print(f"train_groups: {group}: {fit.outcome} in {fit.seconds:.1f}s {fit.reason}".rstrip(), flush=True)
        rows.append(json.dumps(fit.row()))
    return rows
