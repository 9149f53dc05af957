"""The command line: the same services as the function app, without a Functions host.

    python -m shared run                 the main job: samples/raw -> lake raw/ -> ingest all
    python -m shared ingest PATH...      ingest raw files already in the lake
    python -m shared formats             list the raw formats (mapping files)

The lake is the one the settings name (``FORECASTOPS_LAKE_BACKEND``; a local folder,
``.lake``, by default), or ``--lake DIR`` for a local folder.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from shared.datasets import SOURCES
from shared.formats import load_mappings
from shared.ingest import ingest
from shared.lake import Lake, LocalLake, NotFoundError, make_lake
from shared.settings import get_settings
from shared.telemetry import Throttle

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "raw"


def _lake(args: argparse.Namespace) -> Lake:
    return LocalLake(args.lake) if args.lake else make_lake(get_settings())


def upload_tree(lake: Lake, folder: Path) -> list[str]:
    """Copy every file below ``folder`` to ``raw/<same relative path>`` in the lake.

    A file whose copy in the lake already has the same bytes is left alone, so that its ETag,
    and so its ingested outputs, stay current.
    """
    paths = []
    for file in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "README.md"):
        path = "raw/" + file.relative_to(folder).as_posix()
        if not _same_bytes(lake, path, file):
            with open(file, "rb") as f:
                lake.upload(path, f)
        paths.append(path)
    return paths


def _same_bytes(lake: Lake, path: str, file: Path) -> bool:
    try:
        if lake.stat(path).size != file.stat().st_size:
            return False
    except NotFoundError:
        return False
    with lake.open(path) as (stream, _), open(file, "rb") as local:
        return _sha256(stream) == _sha256(local)


def _sha256(stream: BinaryIO) -> str:
    h = hashlib.sha256()
    while chunk := stream.read(1 << 20):
        h.update(chunk)
    return h.hexdigest()


def raw_paths(lake: Lake) -> list[str]:
    return [p for source in SOURCES for p in lake.list(f"raw/{source}")]


def ingest_all(lake: Lake, paths: Sequence[str], out: TextIO, force: bool = False) -> list[dict[str, Any]]:
    """Ingest ``paths`` one by one, printing a line per file as it finishes."""
    run_id = uuid.uuid4().hex[:12]
    results = []
    width = max((len(p) for p in paths), default=10)
    print(f"{'raw file':<{width}}  {'format':<32} {'read':>8} {'written':>8} {'rejected':>8}  status", file=out)
    for i, path in enumerate(paths, 1):
        progress = Throttle(
            lambda rows, nbytes, path=path: print(
                f"  ... {path}: {rows:,} rows, {nbytes / 1e6:,.1f} MB read", file=out, flush=True
            ),
            5.0,
        )
        m = ingest(lake, path, invocation_id=f"cli-{run_id}-{i}", force=force, progress=progress)
        results.append(m)
        rows = m.get("rows") or {}
        fmt = (m.get("format") or {}).get("id", "-")
        status = m["status"] + (" (unchanged)" if m.get("unchanged") else "")
        if m["status"] == "quarantined":
            status += f": {m['error']['reason']}"
        print(
            f"{path:<{width}}  {fmt:<32} {rows.get('read', '-'):>8} {rows.get('written', '-'):>8} "
            f"{rows.get('rejected', '-'):>8}  {status}",
            file=out,
            flush=True,
        )
    return results


def summarise(results: list[dict[str, Any]], out: TextIO) -> None:
    total = {"read": 0, "written": 0, "rejected": 0}
    for m in results:
        for k in total:
            total[k] += (m.get("rows") or {}).get(k, 0)
    quarantined = sum(m["status"] == "quarantined" for m in results)
    print(
        f"{len(results)} file(s): {total['read']} rows read, {total['written']} written, "
        f"{total['rejected']} rejected; {quarantined} file(s) quarantined",
        file=out,
    )


def cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    lake = _lake(args)
    t0 = time.perf_counter()
    uploaded = upload_tree(lake, Path(args.samples))
    print(f"copied {len(uploaded)} raw file(s) from {args.samples} into {lake.describe('raw/x')[:-2]}", file=out)
    results = ingest_all(lake, raw_paths(lake), out, force=args.force)
    summarise(results, out)
    print(f"done in {time.perf_counter() - t0:.1f}s; outputs under {lake.describe('curated/x')[:-2]}", file=out)
    return 0


def cmd_ingest(args: argparse.Namespace, out: TextIO) -> int:
    lake = _lake(args)
    paths = args.paths or raw_paths(lake)
    results = ingest_all(lake, paths, out, force=args.force)
    summarise(results, out)
    return 0


def cmd_formats(args: argparse.Namespace, out: TextIO) -> int:
    for m in load_mappings().values():
        cols = ", ".join(m.required_columns) or "-"
        print(f"{m.id:<34} {m.dataset:<20} {m.reader:<6} {m.detect:<10} {cols}", file=out)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m shared", description=__doc__.split("\n\n")[0])
    p.add_argument("--lake", type=Path, help="a local lake folder (default: the settings' lake)")
    p.add_argument("-v", "--verbose", action="store_true", help="log what the services do")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="the main job: copy raw samples into the lake and ingest them all")
    run.add_argument("--samples", type=Path, default=SAMPLES, help="folder of raw files (default: samples/raw)")
    run.add_argument("--force", action="store_true", help="re-ingest files whose outputs are current")
    run.set_defaults(func=cmd_run)
    ing = sub.add_parser("ingest", help="ingest raw files already in the lake (all of raw/ by default)")
    ing.add_argument("paths", nargs="*", help="lake paths such as raw/weather/us_obs/2026.csv")
    ing.add_argument("--force", action="store_true", help="re-ingest files whose outputs are current")
    ing.set_defaults(func=cmd_ingest)
    fmt = sub.add_parser("formats", help="list the raw formats")
    fmt.set_defaults(func=cmd_formats)
    return p


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return args.func(args, out)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
