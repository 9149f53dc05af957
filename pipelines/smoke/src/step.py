"""A pipeline step for rehearsals: sleeps, writes ``done.json`` to its output, logs a metric,
and fails when asked to."""

import argparse
import json
import os
import sys
import time
from pathlib import Path


def log_metric(name: str, value: float) -> None:
    """To AML's MLflow tracking on AML compute, and to the local runner's metrics file."""
    # a rehearsal step stays light: MLflow (a second of import) only where AML reads it
    if os.environ.get("MLFLOW_TRACKING_URI", "").startswith("azureml:"):
        import mlflow

        mlflow.log_metric(name, value)
    path = os.environ.get("FORECASTOPS_METRICS_FILE")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"name": name, "value": value}) + "\n")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--step-name", required=True)
    p.add_argument("--seconds", type=float, default=0.2)
    p.add_argument("--fail-step", default="none")
    p.add_argument("--region", default="all")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--upstream", type=Path)
    a = p.parse_args()
    print(f"{a.step_name}: region {a.region}, sleeping {a.seconds}s", flush=True)
    if a.upstream is not None and not (a.upstream / "done.json").exists():
        print(f"{a.step_name}: upstream output {a.upstream} is missing", file=sys.stderr)
        return 2
    deadline = time.monotonic() + a.seconds
    while time.monotonic() < deadline:
        time.sleep(0.02)
    if a.fail_step == a.step_name:
        print(f"{a.step_name}: failing as asked (fail_step={a.fail_step})", file=sys.stderr)
        return 1
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "done.json").write_text(json.dumps({"step": a.step_name, "region": a.region}))
    log_metric(f"{a.step_name}_seconds", a.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
