"""The pull request's model validation: read the metrics of the forecast run that
`python -m shared --lake DIR run ...` just made and fail when a gate fails.

Gates, the health policy's (pipelines/health_policy.json, read through shared.health: the same
file and the same rule as the app's): the run completed; the overall MAPE is at most the MAPE
gate and beats the historical-average baseline's; at least the policy's baseline.min_share of the
models beat their baseline; no model is older than the age gate. A model beats its baseline by
the policy's rule (MAPE below the baseline's by more than baseline.margin). Models above the
per-model MAPE gate are reported as warnings: on a small generated batch some slow movers miss
it by nature. Each limit has an option, for a stricter local check; --policy reads another file.

    python .github/scripts/validate_models.py --lake "$RUNNER_TEMP/lake"
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

# the app's package: the health policy and its rule come from where the app reads them
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from shared.health import POLICY_FILE, HealthPolicy, policy


def latest_run(lake: Path, pipeline: str) -> Path:
    runs = sorted((lake / "runs").glob(f"{pipeline}-*"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise SystemExit(f"::error::no {pipeline} run under {lake / 'runs'}")
    return runs[-1]


def check(
    run: Path,
    rules: HealthPolicy,
    max_overall_mape: float,
    max_model_mape: float,
    min_beats: float,
    max_age_days: float,
) -> list[str]:
    """The gates that failed (empty: every gate passed); prints warnings as it goes. A model
    beats its baseline by the policy's rule (``rules``)."""
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
        failures.append(f"overall MAPE {mape:.3f} > {max_overall_mape:g}")
    if not rules.beats_baseline(mape, base):
        failures.append(f"overall MAPE {mape:.3f} does not beat the baseline's {base:.3f}")
    beats = sum(rules.beats_baseline(_num(r["mape"]), _num(r["baseline_mape"])) for r in models) / len(models)
    if beats < min_beats:
        failures.append(f"{beats:.0%} of the models beat their baseline; the gate is {min_beats:.0%}")
    now = time.time()
    for r in models:
        age = (now - float(r["trained_at"])) / 86400
        if age > max_age_days:
            failures.append(f"{r['model']} was trained {age:.0f} days ago (> {max_age_days:g})")
        if r["mape"] and float(r["mape"]) > max_model_mape:
            print(f"::warning::{r['model']}: MAPE {float(r['mape']):.3f} > {max_model_mape:g}")
    print(f"{len(models)} models; overall MAPE {mape:.3f} against the baseline's {base:.3f}; ", end="")
    print(f"{beats:.0%} beat their baseline")
    return failures


def _num(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", type=Path, required=True)
    parser.add_argument("--pipeline", default="forecast")
    parser.add_argument("--policy", type=Path, default=POLICY_FILE, help="the health policy (the repo's by default)")
    # each limit defaults to the policy's
    parser.add_argument("--max-overall-mape", type=float, help="default: the policy's gates.max_mape")
    parser.add_argument("--max-model-mape", type=float, help="default: the policy's gates.max_mape")
    parser.add_argument("--min-beats-baseline", type=float, help="default: the policy's baseline.min_share")
    parser.add_argument("--max-age-days", type=float, help="default: the policy's gates.max_age_days")
    args = parser.parse_args(argv)
    rules = policy(args.policy)
    run = latest_run(args.lake, args.pipeline)
    failures = check(
        run,
        rules,
        rules.gates.max_mape if args.max_overall_mape is None else args.max_overall_mape,
        rules.gates.max_mape if args.max_model_mape is None else args.max_model_mape,
        rules.baseline.min_share if args.min_beats_baseline is None else args.min_beats_baseline,
        rules.gates.max_age_days if args.max_age_days is None else args.max_age_days,
    )
    for failure in failures:
        print(f"::error::{failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
