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
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from shared import ROOT, runtime
from shared.aml import runs
from shared.aml.backend import Backend
from shared.aml.catalog import load_catalog
from shared.ingestion.formats import load_mappings
from shared.lake import Lake, LakeError, LocalLake, make_lake
from shared.settings import get_settings
from shared.tooling import mainjob
from shared.tooling.batch import ingest_all, raw_paths, summarise
from shared.watch import loop, policy

SAMPLES = ROOT / "samples" / "raw"


def _lake(args: argparse.Namespace) -> Lake:
    return LocalLake(args.lake) if args.lake else make_lake(get_settings())


def cmd_run(args: argparse.Namespace, out: TextIO) -> int:

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


def _backend(args: argparse.Namespace) -> Backend:
    settings = get_settings()
    if args.lake:
        settings = settings.model_copy(update={"lake_root": args.lake, "lake_backend": "local"})
    return runtime.make_backend(settings, _lake(args))


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
    return _print_answer(runs.list_pipelines(load_catalog()), out)


def cmd_submit(args: argparse.Namespace, out: TextIO) -> int:
    body: dict[str, Any] = {
        "parameters": {k: _typed(v) for k, v in _pairs(args.param, "--param").items()},
        "inputs": _pairs(args.input, "--input"),
    }
    if args.key:
        body["idempotency_key"] = args.key
    if args.experiment:
        body["experiment"] = args.experiment
    backend = _backend(args)
    answer = runs.submit(backend, load_catalog(), args.pipeline, json.dumps(body).encode(), "")
    code = _print_answer(answer, out)
    if code or not args.wait:
        return code
    return _wait(backend, [answer[1]["run_id"]], out)


def _wait(backend: Backend, run_ids: list[str], out: TextIO, timeout_s: float = 12 * 3600) -> int:
    """Follow runs with the durable watch's policy (backoff, stuck limit, gates, timeout)."""
    options = policy.WatchOptions(timeout_s=timeout_s, polling=policy.Polling(first_s=1.0, factor=1.5, max_s=15.0))
    last: dict[int, str] = {}

    def show(state: policy.WatchState) -> None:
        for r in state.runs:
            line = f"{r.aml_status}" + (f" ({r.outcome})" if r.outcome else "")
            if last.get(r.index) != line:
                print(f"  {r.run_id}: {line}", file=out, flush=True)
                last[r.index] = line

    final = loop.follow(backend, run_ids, options, on_change=show)
    for r in final.runs:
        for g in r.gate_failures:
            detail = g.get("message") or f"{g['metric']} = {g['value']} (limit {g['limit']})"
            print(f"  {r.run_id}: gate {g['gate']} failed: {detail}", file=out)
        if r.error and r.outcome != "completed":
            print(f"  {r.run_id}: {r.error.get('step') or ''} {r.error.get('message')}", file=out)
    print(f"watch: {final.outcome}", file=out)
    return 0 if final.outcome == "succeeded" else 1


def cmd_status(args: argparse.Namespace, out: TextIO) -> int:
    if args.wait:
        return _wait(_backend(args), [args.run_id], out)
    return _print_answer(runs.get(_backend(args), args.run_id), out)


def cmd_watch(args: argparse.Namespace, out: TextIO) -> int:
    return _wait(_backend(args), args.run_ids, out, args.timeout)


def cmd_cancel(args: argparse.Namespace, out: TextIO) -> int:
    return _print_answer(runs.cancel(_backend(args), args.run_id), out)


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
