"""The score pipeline's parallel step's entry script: each group served by its chain
(production, else previous, else baseline: score_production.score_each), as AML's parallel job
runs it (and the local backend, from a process pool, the same way).

The contract: ``init()`` once per worker process reads what every group shares from the program
arguments (``--parts``, ``--production``, ``--out``): production.json, and nothing of the
features: ``run`` reads each group's data alone (score_plan.py's ``<parts>/<group>.pkl``), so a
worker's memory follows its group, not the batch. The score pipeline binds ``--parts``; by
hand, ``--features`` instead of it reads prepare's whole features in every worker.
``run(mini_batch, mini_batch_context)`` gets a list of work files (score_plan.py's
``<group>.json``), writes ``<out>/<group>.csv`` and returns one JSON row per group (``group``,
``outcome`` ok or failed, one-line ``reason``, and what served it and its ``rows``). A group's
failure is its row, never an exception (its data file missing or unreadable too); the score
step (score_production.py ``--served``) serves a group without a result by its baseline and
lists it failed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pergroup import PartError, one_line, read_part
from score_production import Scoring, open_scoring, read_production, read_work_files, score_each

_STATE: dict[str, Any] = {}


def init() -> None:
    """Once per worker: production.json (with ``--parts``; else the whole features too) and
    where the forecasts go."""
    p = argparse.ArgumentParser(description="score: each group's forecasts (AML parallel entry script)")
    p.add_argument("--features", type=Path, help="prepare's whole features (without --parts)")
    p.add_argument("--production", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--parts", type=Path, help="score_plan.py's folder of each group's data (the pipeline's)")
    a, _ = p.parse_known_args()  # AML adds arguments of its own
    if a.parts is None and a.features is None:
        p.error("give --parts (each group's data) or --features (the whole table)")
    if a.parts is None:
        _STATE.update(scoring=open_scoring(a.features, a.production), out=a.out)
        return
    previous: dict[str, int] = {}
    stale: set[str] = set()
    week, versions = read_production(a.production, previous, stale)
    _STATE.update(production=(a.production, week, versions, previous, frozenset(stale)), parts=a.parts, out=a.out)


def _score_alone(group: str, baseline: str) -> dict[str, Any]:
    """One group served on its own data (score_plan.py's part): its row."""
    try:
        data = read_part(_STATE["parts"], group)
        origin = data.meta["future_from"]
        rows = data.horizon_rows(origin, int(data.meta["future_weeks"]))
    except PartError as e:
        return {"group": group, "outcome": "failed", "reason": str(e)}
    except Exception as e:  # nothing raises past one group
        return {"group": group, "outcome": "failed", "reason": one_line(e)}
    scoring = Scoring(*_STATE["production"], data, origin, rows)
    return score_each(scoring, [(group, baseline)], _STATE["out"])[0]


def run(mini_batch: list[str], mini_batch_context: Any = None) -> list[str]:
    """Serve each group the mini-batch's work files name; one JSON row per group."""
    work = read_work_files([Path(p) for p in mini_batch])
    if "parts" in _STATE:
        rows = [_score_alone(group, baseline) for group, baseline in work]
    else:
        rows = score_each(_STATE["scoring"], work, _STATE["out"])
    for row in rows:
        how = row.get("served", {}).get("source", "")
        print(f"score_groups: {row['group']}: {row['outcome']} {how} {row['reason']}".rstrip(), flush=True)
    return [json.dumps(row, default=str) for row in rows]
