"""The score pipeline's parallel step's entry script: each group served by its chain
(production, else previous, else baseline: score_production.score_each), as AML's parallel job
runs it (and the local backend, from a process pool, the same way).

The contract: ``init()`` once per worker process reads what every group shares (production.json,
prepare's features) from the program arguments (``--features``, ``--production``, ``--out``);
``run(mini_batch, mini_batch_context)`` gets a list of work files (score_plan.py's
``<group>.json``), writes ``<out>/<group>.csv`` and returns one JSON row per group (``group``,
``outcome`` ok or failed, one-line ``reason``, and what served it and its ``rows``). A group's
failure is its row, never an exception; the score step (score_production.py ``--served``) serves
a group without a result by its baseline and lists it failed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from score_production import open_scoring, read_work_files, score_each

_STATE: dict[str, Any] = {}


def init() -> None:
    """Once per worker: production.json, the features and where the forecasts go."""
    p = argparse.ArgumentParser(description="score: each group's forecasts (AML parallel entry script)")
    p.add_argument("--features", type=Path, required=True)
    p.add_argument("--production", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    a, _ = p.parse_known_args()  # AML adds arguments of its own
    _STATE.update(scoring=open_scoring(a.features, a.production), out=a.out)


def run(mini_batch: list[str], mini_batch_context: Any = None) -> list[str]:
    """Serve each group the mini-batch's work files name; one JSON row per group."""
    rows = score_each(_STATE["scoring"], read_work_files([Path(p) for p in mini_batch]), _STATE["out"])
    for row in rows:
        how = row.get("served", {}).get("source", "")
        print(f"score_groups: {row['group']}: {row['outcome']} {how} {row['reason']}".rstrip(), flush=True)
    return [json.dumps(row, default=str) for row in rows]
