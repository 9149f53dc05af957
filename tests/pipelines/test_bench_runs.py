"""The train benchmarks run at a tiny size, as a person runs them (a subprocess, numbers
printed), so that neither rots unseen: ``pipelines/forecast/bench_train.py`` and
``bench/bench_parallel_train.py``. Their numbers are not judged here; that they print them is."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.drivers import ROOT_DIR


def _run(script: Path, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(script), *args], cwd=ROOT_DIR, capture_output=True, text=True, timeout=900, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_the_train_benchmark_runs_at_its_tiny_size(tmp_path):
    out = _run(ROOT_DIR / "pipelines" / "forecast" / "bench_train.py", "--sizes", "tiny", "--work", str(tmp_path))
    assert re.search(r"^== tiny: 16 series, 8 groups", out, re.M), out
    assert re.search(r"^prepare [\d.]+ s; train [\d.]+ s", out, re.M), out


def test_the_parallel_train_benchmark_runs_at_its_tiny_size(tmp_path):
    out = _run(ROOT_DIR / "bench" / "bench_parallel_train.py", "--tiny", "--work", str(tmp_path))
    assert re.search(r"^--workers 1: train step [\d.]+ s", out, re.M), out
    assert re.search(r"^ratio 1 worker / 2 workers: train step [\d.]+x, parallel step [\d.]+x$", out, re.M), out
    assert re.search(r"^--workers 2: peak RSS MiB: .*train_groups worker \d+", out, re.M), out
