"""Many raw files at once, for the command line and the main job: copy a folder into the
lake's ``raw/``, ingest them one by one with progress, and total what became of every row."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from shared.ingestion.datasets import SOURCES
from shared.ingestion.service import ingest
from shared.lake import Lake, NotFoundError
from shared.telemetry import Throttle


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
    """Ingest ``paths`` one by one: a line per file for a few files; for many, a progress line
    every few seconds and a line per file that had a problem."""
    run_id = uuid.uuid4().hex[:12]
    results = []
    each = len(paths) <= 60
    width = max((len(p) for p in paths), default=10)
    if each:
        print(f"{'raw file':<{width}}  {'format':<32} {'read':>8} {'written':>8} {'rejected':>8}  status", file=out)
    t0 = last = time.monotonic()
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
        if each or m["status"] == "quarantined" or rows.get("rejected"):
            print(
                f"{path:<{width}}  {fmt:<32} {rows.get('read', '-'):>8} {rows.get('written', '-'):>8} "
                f"{rows.get('rejected', '-'):>8}  {status}",
                file=out,
                flush=True,
            )
        elif time.monotonic() - last > 5 or i == len(paths):
            last = time.monotonic()
            print(f"  ingested {i:,} of {len(paths):,} files ({time.monotonic() - t0:.0f} s)", file=out, flush=True)
    return results


def summarise(results: list[dict[str, Any]], out: TextIO) -> None:
    """Totals per dataset and overall: every row read is written or rejected."""
    per: dict[str, dict[str, int]] = {}
    for m in results:
        d = per.setdefault(m["dataset"], {"files": 0, "read": 0, "written": 0, "rejected": 0, "quarantined": 0})
        d["files"] += 1
        d["quarantined"] += m["status"] == "quarantined"
        for k in ("read", "written", "rejected"):
            d[k] += (m.get("rows") or {}).get(k, 0)
    if len(per) > 1:
        for name, d in sorted(per.items()):
            print(
                f"  {name:<20} {d['files']:>6} files {d['read']:>10,} read {d['written']:>10,} written "
                f"{d['rejected']:>8,} rejected {d['quarantined']:>4} quarantined",
                file=out,
            )
    total = {k: sum(d[k] for d in per.values()) for k in ("read", "written", "rejected", "quarantined")}
    unchanged = sum(bool(m.get("unchanged")) for m in results)
    if unchanged:
        print(f"{unchanged} file(s) unchanged since their last ingest: outputs left as they were", file=out)
    print(
        f"{len(results)} file(s): {total['read']} rows read, {total['written']} written, "
        f"{total['rejected']} rejected; {total['quarantined']} file(s) quarantined",
        file=out,
    )
