"""Every benchmark runs at a small size, as a subprocess, the way a person runs it: a benchmark
that no longer runs fails here, not on the day someone needs its numbers. Their numbers are not
judged (they vary with the machine); that each script runs to its table is."""

from __future__ import annotations

import subprocess
import sys

from tests.drivers import ROOT_DIR


def run_bench(script: str, *args: str) -> str:
    """The script's output; its exit status must be 0."""
    done = subprocess.run(
        [sys.executable, str(ROOT_DIR / "bench" / script), *args],
        cwd=ROOT_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{script} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def test_the_normalise_benchmark_runs_at_smoke_size(tmp_path):
    out = run_bench("bench_normalise.py", "--smoke", "--data", str(tmp_path))
    rows = [line.split() for line in out.splitlines() if line.startswith(("baseline ", "product "))]
    assert [r[0] for r in rows] == ["baseline", "product"] * 2  # the plain CSV, then the gzip one
    assert out.count("product/baseline throughput:") == 2
    assert "VERDICT: PASS" in out and "not judged at smoke size" in out


def test_the_watch_benchmark_follows_a_small_batch_to_its_end():
    """``make bench-watch`` at 3 runs: the batch is submitted to AML's fake (its components
    registered as the deploy registers them), followed 6 simulated hours, and succeeds."""
    out = run_bench("bench_watch.py", "--runs", "3")
    header, polling, events = (line.split() for line in out.splitlines()[1:4])
    assert header[:2] == ["mode", "outcome"]
    assert polling[:2] == ["polling", "succeeded"] and events[:2] == ["events", "succeeded"]
    assert "no targets at 3 runs" in out
