"""The pull request's model validation: read the metrics of the forecast run that
`python -m shared --lake DIR run ...` just made and fail when a gate fails.

Gates (each an option): the run completed; the overall MAPE is at most --max-overall-mape and
below the historical-average baseline's; at least --min-beats-baseline of the models beat their
baseline; no model is older than --max-age-days. Models above the per-model MAPE gate are
reported as warnings: on a small generated batch some slow movers miss it by nature.

    python .github/scripts/validate_models.py --lake "$RUNNER_TEMP/lake"
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path


def latest_run(lake: Path, pipeline: str) -> Path:
    runs = sorted((lake / "runs").glob(f"{pipeline}-*"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise SystemExit(f"::error::no {pipeline} run under {lake / 'runs'}")
    return runs[-1]


def check(
    run: Path, max_overall_mape: float, max_model_mape: float, min_beats: float, max_age_days: float
) -> list[str]:
    """The gates that failed (empty: every gate passed); prints warnings as it goes."""
    status = json.loads((run / "status.json").read_text(encoding="utf-8"))
    if status.get("aml_status") != "Completed":
        return [f"run {run.name} ended {status.get('aml_status')}"]
    metrics_file = run / "outputs" / "evaluate" / "metrics" / "metrics.csv"
    with metrics_file.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    overall = next((r for r in rows if r["model"] == "overall"), None)
    models = [r for r in rows if r["model"] != "overall"]
    failures = []
    if overall is None or not models:
        return [f"{metrics_file} has no models or no overall row"]
    mape, base = float(overall["mape"]), float(overall["baseline_mape"])
    if mape > max_overall_mape:
        failures.append(f"overall MAPE {mape:.3f} > {max_overall_mape}")
    if mape >= base:
        failures.append(f"overall MAPE {mape:.3f} does not beat the baseline's {base:.3f}")
    beats = sum(r["beats_baseline"] == "True" for r in models) / len(models)
    if beats < min_beats:
        failures.append(f"{beats:.0%} of the models beat their baseline; the gate is {min_beats:.0%}")
    now = time.time()
    for r in models:
        age = (now - float(r["trained_at"])) / 86400
        if age > max_age_days:
            failures.append(f"{r['model']} was trained {age:.0f} days ago (> {max_age_days})")
        if r["mape"] and float(r["mape"]) > max_model_mape:
            print(f"::warning::{r['model']}: MAPE {float(r['mape']):.3f} > {max_model_mape}")
    print(f"{len(models)} models; overall MAPE {mape:.3f} against the baseline's {base:.3f}; ", end="")
    print(f"{beats:.0%} beat their baseline")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", type=Path, required=True)
    parser.add_argument("--pipeline", default="forecast")
    parser.add_argument("--max-overall-mape", type=float, default=0.45)
    parser.add_argument("--max-model-mape", type=float, default=0.45)
    parser.add_argument("--min-beats-baseline", type=float, default=0.75)
    parser.add_argument("--max-age-days", type=float, default=60)
    args = parser.parse_args(argv)
    run = latest_run(args.lake, args.pipeline)
    failures = check(run, args.max_overall_mape, args.max_model_mape, args.min_beats_baseline, args.max_age_days)
    for failure in failures:
        print(f"::error::{failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
