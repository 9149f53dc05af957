"""Benchmark: a raw file whose every row is rejected, against one whose every row is good.

How to run (from the repository root)::

    .venv/bin/python bench/bench_rejects.py                 # 1,000,000 rows (~1 min)
    .venv/bin/python bench/bench_rejects.py --rows 2000     # a few seconds: the tests' proof it runs

Inputs (generated into a temporary folder, or ``--data``): gzip CSVs of ``--rows`` rows in the
"US observation CSV" layout (``Zip,Obs Date,High (F),Low (F),Rain (in),Snow (in)``):

- ``good``: every row good, unique on (zip, date);
- ``bad``: one row repeated, ``x,13/45/2026,hot,cold,0.10,``, that breaks rules five times (the
  zip's pattern, the date and the issue date taken from it, two numbers): a few KB of gzip
  that is all rejects.

Cases, each ingested once into a fresh local lake by a child process of its own (so that its
peak RSS, ``ru_maxrss``, belongs to that run only):

- ``good``: the good file;
- ``bad``: the bad file with the default settings: its reject ratio passes
  ``FORECASTOPS_REJECT_RATIO_MAX``, so it is quarantined whole (``too_many_rejects``);
- ``bad, every reject``: the bad file with ``FORECASTOPS_REJECT_RATIO_MAX=1``, so that every
  reject is written to ``rejected.csv``: the streamed path, whose memory must stay flat.

Printed per case: rows read, rejected, the status (and reason), seconds, peak RSS (MiB), the
bytes the ingest wrote (``wchar`` of ``/proc/self/io``: temporary files included) and the bytes
its outputs take in the lake once it is done. Numbers only; nothing is judged.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HEADER = "Zip,Obs Date,High (F),Low (F),Rain (in),Snow (in)\n"
BAD_ROW = "x,13/45/2026,hot,cold,0.10,\n"
CASES = {"good": ("good", None), "bad": ("bad", None), "bad, every reject": ("bad", "1")}


def make_inputs(folder: Path, rows: int) -> dict[str, Path]:
    """The good and the bad gzip files of ``rows`` rows (made once per folder and size)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {kind: folder / f"{kind}-{rows}.csv.gz" for kind in ("good", "bad")}
    if not paths["bad"].exists():
        with gzip.open(paths["bad"], "wt", compresslevel=6) as f:
            f.write(HEADER)
            for start in range(0, rows, 100_000):
                f.write(BAD_ROW * min(100_000, rows - start))
    if not paths["good"].exists():
        with gzip.open(paths["good"], "wt", compresslevel=6) as f:
            f.write(HEADER)
            for i in range(rows):
                day = 1 + i // 99_000
                date = f"{1 + day // 28 % 12:02d}/{1 + day % 28:02d}/{2020 + day // 336}"
                f.write(f"{1000 + i % 99_000},{date},50.0,32.0,0.10,\n")
    return paths


def _wchar() -> int | None:
    try:
        text = Path("/proc/self/io").read_text()
    except OSError:
        return None
    return int(next(line.split()[1] for line in text.splitlines() if line.startswith("wchar:")))


def child(raw_file: str, lake_root: str) -> None:
    """Ingest ``raw_file`` into a fresh lake at ``lake_root`` and print one JSON line."""
    from shared.ingestion.service import ingest
    from shared.lake import LocalLake

    lake = LocalLake(lake_root)
    path = f"raw/weather/us_obs/{Path(raw_file).name}"
    target = Path(lake_root) / path
    target.parent.mkdir(parents=True)
    os.link(raw_file, target)
    before, t0 = _wchar(), time.perf_counter()
    record = ingest(lake, path)
    seconds, after = time.perf_counter() - t0, _wchar()
    rows = record.get("rows") or record["error"]["details"].get("rows") or {}
    outputs = [p for top in ("curated", "quarantine") for p in (Path(lake_root) / top).rglob("*") if p.is_file()]
    print(
        json.dumps(
            {
                "read": rows.get("read"),
                "rejected": rows.get("rejected"),
                "status": record["status"] + (f" ({record['error']['reason']})" if record.get("error") else ""),
                "seconds": round(seconds, 2),
                "peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "written_bytes": None if before is None or after is None else after - before,
                "output_bytes": sum(p.stat().st_size for p in outputs),
            }
        )
    )


def run_case(raw_file: Path, ratio_max: str | None, tmp: Path) -> dict[str, Any]:
    """One case in a child process of its own; its JSON line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORECASTOPS_REJECT_")}
    if ratio_max is not None:
        env["FORECASTOPS_REJECT_RATIO_MAX"] = ratio_max
    lake = tempfile.mkdtemp(dir=tmp)
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(raw_file), lake],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    """Parse the options, make the inputs, run every case and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--data", type=Path, default=None, help="where the inputs go (default: a temporary folder)")
    parser.add_argument("--child", nargs=2, metavar=("RAW", "LAKE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        inputs = make_inputs(args.data or Path(tmp) / "data", args.rows)
        sizes = {kind: f"{path.stat().st_size:,}" for kind, path in inputs.items()}
        print(f"rows {args.rows:,}; gzip bytes: good {sizes['good']}, bad {sizes['bad']}")
        head = ("read", "rejected", "seconds", "peak MiB", "written B", "left B")
        print(f"{'case':<18} {head[0]:>10} {head[1]:>10} {head[2]:>8} {head[3]:>9} {head[4]:>13} {head[5]:>13}  status")
        for name, (kind, ratio_max) in CASES.items():
            r = run_case(inputs[kind], ratio_max, Path(tmp))
            print(
                f"{name:<18} {r['read'] or 0:>10,} {r['rejected'] or 0:>10,} {r['seconds']:>8} {r['peak_mib']:>9} "
                f"{r['written_bytes'] or 0:>13,} {r['output_bytes']:>13,}  {r['status']}"
            )


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
