"""The command line: the same services as the function app, without a Functions host.

    python -m shared run                 the main job: generated raw data -> ingest -> forecast -> report
    python -m shared ingest PATH...      ingest raw files already in the lake
    python -m shared formats             list the raw formats (mapping files)
    python -m shared pipelines           list the pipeline catalog
    python -m shared submit NAME [--param k=v] [--key K] [--wait]
    python -m shared status RUN_ID [--wait] / cancel RUN_ID

The lake is the one the settings name (``FORECASTOPS_LAKE_BACKEND``; a local folder,
``.lake``, by default), or ``--lake DIR`` for a local folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from shared import ROOT
from shared.ingestion.datasets import SOURCES
from shared.ingestion.formats import load_mappings
from shared.ingestion.service import ingest
from shared.lake import Lake, LakeError, LocalLake, NotFoundError, make_lake
from shared.settings import get_settings
from shared.telemetry import Throttle

SAMPLES = ROOT / "samples" / "raw"


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


def cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    from shared.tooling import mainjob

    size = mainjob.Size(
        regions=args.regions, stores_per_region=args.stores_per_region, skus=args.skus, weeks=args.weeks, seed=args.seed
    )
    return mainjob.run(
        _lake(args),
        _backend(args),
        out,
        samples=args.samples,
        size=size,
        with_pipeline=not args.no_pipeline,
        force=args.force,
    )


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


def _backend(args: argparse.Namespace) -> Any:
    settings = get_settings()
    if settings.aml_backend == "local":
        from shared.aml.local.backend import LocalBackend

        if args.lake:
            settings = settings.model_copy(update={"lake_root": args.lake, "lake_backend": "local"})
        return LocalBackend(_lake(args), settings)
    from shared.aml.azureml import AzureMLBackend

    return AzureMLBackend.from_settings(settings)


def _print_answer(answer: tuple[int, dict[str, Any], dict[str, str]], out: TextIO) -> int:
    status, body, _ = answer
    print(json.dumps(body, indent=2), file=out)
    return 0 if status < 400 else 1


def _pairs(items: list[str], what: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"{what} {item!r}: expected NAME=VALUE")
        pairs[name] = value
    return pairs


def _typed(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def cmd_pipelines(args: argparse.Namespace, out: TextIO) -> int:
    from shared.aml.catalog import load_catalog
    from shared.aml.runs import list_pipelines

    return _print_answer(list_pipelines(load_catalog()), out)


def cmd_submit(args: argparse.Namespace, out: TextIO) -> int:
    from shared.aml.catalog import load_catalog
    from shared.aml.runs import submit

    body: dict[str, Any] = {
        "parameters": {k: _typed(v) for k, v in _pairs(args.param, "--param").items()},
        "inputs": _pairs(args.input, "--input"),
    }
    if args.key:
        body["idempotency_key"] = args.key
    if args.experiment:
        body["experiment"] = args.experiment
    backend = _backend(args)
    answer = submit(backend, load_catalog(), args.pipeline, json.dumps(body).encode(), "")
    code = _print_answer(answer, out)
    if code or not args.wait:
        return code
    return _wait(backend, [answer[1]["run_id"]], out)


def _wait(backend: Any, run_ids: list[str], out: TextIO, timeout_s: float = 12 * 3600) -> int:
    """Follow runs with the durable watch's policy (backoff, stuck limit, gates, timeout)."""
    from shared.aml import runs
    from shared.watch import policy as watch

    options = watch.WatchOptions(timeout_s=timeout_s, polling=watch.Polling(first_s=1.0, factor=1.5, max_s=15.0))
    last: dict[int, str] = {}

    def show(state: watch.WatchState) -> None:
        for r in state.runs:
            line = f"{r.aml_status}" + (f" ({r.outcome})" if r.outcome else "")
            if last.get(r.index) != line:
                print(f"  {r.run_id}: {line}", file=out, flush=True)
                last[r.index] = line

    final = runs.follow(backend, run_ids, options, on_change=show)
    for r in final.runs:
        for g in r.gate_failures:
            detail = g.get("message") or f"{g['metric']} = {g['value']} (limit {g['limit']})"
            print(f"  {r.run_id}: gate {g['gate']} failed: {detail}", file=out)
        if r.error and r.outcome != "completed":
            print(f"  {r.run_id}: {r.error.get('step') or ''} {r.error.get('message')}", file=out)
    print(f"watch: {final.outcome}", file=out)
    return 0 if final.outcome == "succeeded" else 1


def cmd_status(args: argparse.Namespace, out: TextIO) -> int:
    from shared.aml.runs import get

    if args.wait:
        return _wait(_backend(args), [args.run_id], out)
    return _print_answer(get(_backend(args), args.run_id), out)


def cmd_watch(args: argparse.Namespace, out: TextIO) -> int:
    return _wait(_backend(args), args.run_ids, out, args.timeout)


def cmd_cancel(args: argparse.Namespace, out: TextIO) -> int:
    from shared.aml.runs import cancel

    return _print_answer(cancel(_backend(args), args.run_id), out)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m shared", description=__doc__.split("\n\n")[0])
    p.add_argument("--lake", type=Path, help="a local lake folder (default: the settings' lake)")
    p.add_argument("-v", "--verbose", action="store_true", help="log what the services do")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run", help="the main job: raw data into the lake, ingest, forecast pipeline, watch, summary and report"
    )
    run.add_argument(
        "--samples", type=Path, help=f"use this folder of raw files instead of generating (e.g. {SAMPLES})"
    )
    run.add_argument("--regions", type=int, default=14)
    run.add_argument("--stores-per-region", type=int, default=6)
    run.add_argument("--skus", type=int, default=10)
    run.add_argument("--weeks", type=int, default=104)
    run.add_argument("--seed", type=int, default=7)
    run.add_argument("--no-pipeline", action="store_true", help="stop after ingesting")
    run.add_argument("--force", action="store_true", help="re-ingest files whose outputs are current")
    run.set_defaults(func=cmd_run)
    ing = sub.add_parser("ingest", help="ingest raw files already in the lake (all of raw/ by default)")
    ing.add_argument("paths", nargs="*", help="lake paths such as raw/weather/us_obs/2026.csv")
    ing.add_argument("--force", action="store_true", help="re-ingest files whose outputs are current")
    ing.set_defaults(func=cmd_ingest)
    fmt = sub.add_parser("formats", help="list the raw formats")
    fmt.set_defaults(func=cmd_formats)
    sub.add_parser("pipelines", help="list the pipeline catalog").set_defaults(func=cmd_pipelines)
    sb = sub.add_parser("submit", help="start a run of a catalog pipeline")
    sb.add_argument("pipeline")
    sb.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a parameter (JSON or text)")
    sb.add_argument("--input", action="append", default=[], metavar="NAME=PATH", help="an input path")
    sb.add_argument("--key", help="idempotency key: the same key re-attaches to the same run")
    sb.add_argument("--experiment", help="AML experiment (default: the catalog's)")
    sb.add_argument("--wait", action="store_true", help="follow the run to its end, printing each change")
    sb.set_defaults(func=cmd_submit)
    st = sub.add_parser("status", help="a run's status, steps, error and metrics")
    st.add_argument("run_id")
    st.add_argument("--wait", action="store_true", help="follow the run to its end")
    st.set_defaults(func=cmd_status)
    wt = sub.add_parser("watch", help="follow runs to their end with the durable watch's policy and gates")
    wt.add_argument("run_ids", nargs="+")
    wt.add_argument("--timeout", type=float, default=12 * 3600, help="seconds before the runs are canceled")
    wt.set_defaults(func=cmd_watch)
    cn = sub.add_parser("cancel", help="ask a run to stop")
    cn.add_argument("run_id")
    cn.set_defaults(func=cmd_cancel)
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
    except (ValueError, FileNotFoundError, LakeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
