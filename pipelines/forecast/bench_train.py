"""How long the forecast pipeline's train step takes, and how good the backtest is (prints
numbers; not a test).

For each size (the default weekly batch; groups of ~250 series: 1 region x 50 stores x 20
SKUs; of ~500; and ~30 SKUs per group), generates the raw files with the oracle, ingests them
into a lake of their own (kept under ``--work``, reused on a second run), then runs prepare,
train, score and evaluate as the components' commands do and prints the train step's wall
time and evaluate's table and targets. ``--baseline REV`` also times the train step of the
pipeline at git revision REV (e.g. the commit before the backtest) on the same lake.

    .venv/bin/python pipelines/forecast/bench_train.py [--sizes default,groups250] [--baseline REV]
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "pipelines" / "forecast" / "src"
SIZES = {
    "default": {"regions": 14, "stores_per_region": 6, "skus": 10},
    "groups250": {"regions": 1, "stores_per_region": 50, "skus": 20},
    # twice the rows per group: the train time of a group should double, not more
    "groups500": {"regions": 1, "stores_per_region": 100, "skus": 20},
    # many SKUs per group (about 30), like a real chain's panel
    "skus60": {"regions": 1, "stores_per_region": 15, "skus": 60},
    # the size CI runs it at (tests/pipelines/test_bench_runs.py), so that it cannot rot unseen
    "tiny": {"regions": 2, "stores_per_region": 2, "skus": 4},
}
STEPS = ("prepare.py", "train.py", "score.py", "evaluate.py")


def lake_for(work: Path, name: str) -> Path:
    """A lake with the size's raw files ingested, and the oracle beside (built once)."""
    sys.path.insert(0, str(ROOT))
    from shared.tooling import cli, mainjob, synth

    base = work / name
    if (base / "lake" / "curated").is_dir() and (base / "oracle" / "expected_demand.csv").is_file():
        return base
    size = SIZES[name]
    # make run's start: its world ends before today (rows dated after it are future_date rejects)
    start = mainjob.Size().start
    synth.generate(base / "raw", weeks=104, start=start, seed=7, oracle_dir=base / "oracle", **size)
    out = io.StringIO()
    rc = cli.main(["--lake", str(base / "lake"), "run", "--samples", str(base / "raw"), "--no-pipeline"], out=out)
    if rc != 0:
        raise SystemExit(f"ingest failed:\n{out.getvalue()}")
    return base


def policy_args() -> list[str]:
    """evaluate's health-policy arguments, as the catalog passes them (pipelines/health_policy.json)."""
    sys.path.insert(0, str(ROOT))
    from shared.health import policy

    p = policy()
    return ["--max-mape", str(p.gates.max_mape), "--baseline-margin", str(p.baseline.margin)]


def run(src: Path, script: str, *args: str | Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, script, *map(str, args)], cwd=src, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"{script} failed:\n{proc.stdout}\n{proc.stderr}")
    return time.perf_counter() - t0, proc.stdout


def baseline_src(rev: str, into: Path) -> Path:
    """The pipeline's src/ at git revision ``rev``."""
    files = subprocess.run(
        ["git", "ls-tree", "--name-only", rev, "pipelines/forecast/src/"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    into.mkdir(parents=True, exist_ok=True)
    for f in files:
        data = subprocess.run(["git", "show", f"{rev}:{f}"], cwd=ROOT, capture_output=True, check=True).stdout
        (into / Path(f).name).write_bytes(data)
    return into


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="default,groups250")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "forecastops-bench")
    p.add_argument("--baseline", help="also time train.py at this git revision")
    p.add_argument("--jobs", type=int, default=1)
    a = p.parse_args(argv)
    for name in a.sizes.split(","):
        base = lake_for(a.work, name)
        out = base / "run"
        curated = base / "lake" / "curated"
        t_prep, _ = run(SRC, "prepare.py", "--curated", curated, "--out", out / "features")
        t_train, log = run(SRC, "train.py", "--features", out / "features", "--jobs", a.jobs, "--out", out / "models")
        run(SRC, "score.py", "--features", out / "features", "--models", out / "models", "--out", out / "scores")
        _, report = run(
            SRC, "evaluate.py", "--scores", out / "scores", "--models", out / "models",
            "--oracle", base / "oracle", *policy_args(), "--out", out / "metrics",
        )  # fmt: skip
        meta = json.loads((out / "features" / "meta.json").read_text())
        manifest = json.loads((out / "models" / "manifest.json").read_text())
        print(f"\n== {name}: {meta['series']} series, {len(meta['groups'])} groups, origins {meta['origins']}")
        print(f"prepare {t_prep:.1f} s; train {t_train:.1f} s (wall, {len(manifest['origins'])} fits per member)")
        for o in manifest["origins"]:
            slowest = max(o["group_seconds"].items(), key=lambda kv: kv[1])
            print(f"  origin {o['origin']}: {o['seconds']:.1f} s (LightGBM {o['lgbm_seconds']:.1f} s, "
                  f"{o['train_rows']} rows; slowest group {slowest[0]} {slowest[1]:.1f} s)")  # fmt: skip
        print(report)
        if a.baseline:
            old = baseline_src(a.baseline, a.work / f"src-{a.baseline}")
            old_out = base / f"run-{a.baseline}"
            run(old, "prepare.py", "--curated", curated, "--out", old_out / "features")
            t_old, _ = run(old, "train.py", "--features", old_out / "features", "--out", old_out / "models")
            print(f"train at {a.baseline}: {t_old:.1f} s (wall)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
