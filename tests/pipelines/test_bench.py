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


def test_the_scale_benchmark_runs_a_tiny_batch_through_every_stage(tmp_path):
    """``make bench-scale`` at one tiny size (2 regions x 2 stores x 4 SKUs x 40 weeks, the
    batch test's): the generator and the main job run, every stage has its seconds (its first
    row), the processes their peak RSS, the lake its bytes."""
    out = run_bench(
        "bench_scale.py", "--sizes", "1", "--regions", "2", "--stores", "2", "--skus", "4", "--weeks", "40",
        "--work", str(tmp_path),
    )  # fmt: skip
    rows: dict[str, str] = {}
    for line in out.splitlines():
        if line.strip():
            rows.setdefault(line.split()[0], line)
    for stage in ("generate", "ingest", "plan", "prepare", "train", "score", "publish", "train_groups"):
        assert stage in rows and " s (" in rows[stage], out
    assert "train_groups worker" in out and "main job" in out and "curated" in out
    assert "one size: no ratio to judge" in out
    assert not (tmp_path / "1x").exists()  # measured, then deleted
