"""Many raw files at once, for the command line and the main job: copy a folder into the
lake's ``raw/``, ingest them one by one with progress, and total what became of every row."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from shared.ingestion.datasets import SOURCES
from shared.ingestion.formats import Mapping
from shared.ingestion.layout import outputs_for
from shared.ingestion.service import ingest
from shared.ingestion.write import Progress
from shared.lake import Lake, LakeError, NotFoundError
from shared.tooling.progress import bar, say
from shared.weeks.announce import Signal, after_ingest

log = logging.getLogger(__name__)


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
    """Every raw file in the lake, source by source."""
    return [p for source in SOURCES for p in lake.list(f"raw/{source}")]


#: the command line's exit codes (``python -m shared --help`` and docs/command-line.md list them)
OK, FAILED, USAGE, QUARANTINED, INTERRUPTED = 0, 1, 2, 3, 130


def ingest_all(
    lake: Lake,
    paths: Sequence[str],
    out: TextIO,
    force: bool = False,
    mappings: dict[str, Mapping] | None = None,
    signal: Signal | None = None,
) -> list[dict[str, Any]]:
    """Ingest ``paths`` one by one: a line per file for a few files; for many, a line per file
    that had a problem, and a progress bar (files, rate, ETA) on a terminal's stderr.

    Every file's weeks are indexed in the lake (``batches/index/``), as the triggers do; with
    a ``signal`` (the main job's :class:`~shared.weeks.announce.CollectSignal`), a week
    whose data becomes complete is announced on it.

    A file the service cannot handle (a fault of the app) is recorded as ``failed`` and the
    batch goes on; storage errors end the batch (the storage is down for every file)."""
    run_id = uuid.uuid4().hex[:12]
    results = []
    each = len(paths) <= 60
    width = max((len(p) for p in paths), default=10)
    if each and paths:
        say(f"{'raw file':<{width}}  {'format':<32} {'read':>8} {'written':>8} {'rejected':>8}  status", out)
    with bar(len(paths), "ingesting", "file") as files:
        for i, path in enumerate(paths, 1):

            def show(rows: int, nbytes: int, path: str = path) -> None:
                files.set_postfix_str(f"{path}: {rows:,} rows, {nbytes / 1e6:,.1f} MB", refresh=False)

            m = _ingest_one(lake, path, f"cli-{run_id}-{i}", force, mappings, show, signal)
            results.append(m)
            rows = m.get("rows") or {}
            if each or m["status"] != "ingested" or rows.get("rejected"):
                say(_line(m, path, width), out)
            files.update(1)
    return results


def _ingest_one(
    lake: Lake,
    path: str,
    invocation_id: str,
    force: bool,
    mappings: dict[str, Mapping] | None,
    progress: Progress,
    signal: Signal | None = None,
) -> dict[str, Any]:
    try:
        m = ingest(lake, path, invocation_id=invocation_id, force=force, progress=progress, mappings=mappings)
        after_ingest(lake, m, signal, curated=outputs_for(path).curated)
        return m
    except LakeError as e:
        if not isinstance(e, NotFoundError):
            raise
        reason, message = "not_found", f"{path}: not found (removed while the batch ran?)"
    except Exception as e:  # a fault of the app on one file: record it, and go on with the others
        log.exception("ingest %s failed", path)
        reason, message = "internal_error", f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e) else ''}"
    source = path.split("/")[1] if path.count("/") >= 2 else ""
    return {
        "status": "failed",
        "dataset": SOURCES.get(source, "-"),
        "raw": {"path": path},
        "error": {"reason": reason, "message": message},
    }


def _line(m: dict[str, Any], path: str, width: int) -> str:
    rows = m.get("rows") or {}
    fmt = (m.get("format") or {}).get("id", "-")
    status = m["status"] + (" (unchanged)" if m.get("unchanged") else "")
    if m["status"] != "ingested":
        status += f": {m['error']['reason']}"
        if m["status"] == "failed":
            status += f" ({m['error']['message']})"
    return (
        f"{path:<{width}}  {fmt:<32} {rows.get('read', '-'):>8} {rows.get('written', '-'):>8} "
        f"{rows.get('rejected', '-'):>8}  {status}"
    )


def outcome(results: list[dict[str, Any]]) -> int:
    """The exit code of a batch: FAILED if a file failed, QUARANTINED if one was quarantined."""
    statuses = {m["status"] for m in results}
    if "failed" in statuses:
        return FAILED
    return QUARANTINED if "quarantined" in statuses else OK


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
    failed = sum(m["status"] == "failed" for m in results)
    unchanged = sum(bool(m.get("unchanged")) for m in results)
    if unchanged:
        print(f"{unchanged} file(s) unchanged since their last ingest: outputs left as they were", file=out)
    print(
        f"{len(results)} file(s): {total['read']} rows read, {total['written']} written, "
        f"{total['rejected']} rejected; {total['quarantined']} file(s) quarantined"
        + (f"; {failed} file(s) failed (see above)" if failed else ""),
        file=out,
    )
