"""The command line: the same services as the function app, without a Functions host.

    python -m shared run                 the main job: generated raw data -> ingest -> forecast -> report
    python -m shared ingest PATH...      ingest raw files already in the lake
    python -m shared formats             list the raw formats (mapping files)
    python -m shared pipelines           list the pipeline catalog
    python -m shared submit NAME [--param k=v] [--key K] [--wait]
    python -m shared status RUN_ID [--wait] / cancel RUN_ID
    python -m shared aml-assets [--check]   register what the pipelines name in Azure ML
    python -m shared lineage THING       a forecast's, model's, data version's, curated file's or run's lineage

The lake is the one the settings name (``FORECASTOPS_LAKE_BACKEND``; a local folder,
``.lake``, by default), or ``--lake DIR`` for a local folder; ``--mappings DIR`` adds a folder
of your own raw formats. Options go before or after the command.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from shared import ROOT, runtime
from shared.aml import runs
from shared.aml.backend import Backend
from shared.aml.catalog import load_catalog
from shared.ingestion.datasets import SOURCES
from shared.ingestion.formats import MAPPINGS_DIR, Mapping, current_mappings
from shared.ingestion.layout import outputs_for
from shared.lake import Lake, LakeError, make_lake
from shared.settings import Settings, get_settings
from shared.tooling import mainjob
from shared.tooling.bulk_ingest import FAILED, INTERRUPTED, OK, USAGE, ingest_all, outcome, raw_paths, summarise
from shared.watch import loop, policy

EXIT_CODES = """exit codes:
  0    all good
  1    failed: a file failed to ingest, the pipeline run did not complete, storage refused or is unreachable
  2    wrong usage: a bad option or argument, a lake or path that does not exist, a bad mapping file
  3    done, but some raw files were quarantined (their error records say why)
  130  interrupted (Ctrl-C or SIGTERM): temporary files removed; rerun to resume"""

SAMPLES = ROOT / "samples" / "raw"


class UsageError(Exception):
    """A wrong use of the command line: one line on stderr, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse's own errors as one line (no usage block), exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (python -m shared --help)")


def _settings(args: argparse.Namespace) -> Settings:
    try:
        settings = get_settings()
    except ValueError as e:  # an app setting in the environment that does not parse
        raise UsageError(f"the settings: {e}") from None
    if args.lake:
        settings = settings.model_copy(update={"lake_root": args.lake, "lake_backend": "local"})
    if args.mappings:
        settings = settings.model_copy(update={"extra_mappings_dir": args.mappings})
    return settings


def _mappings(args: argparse.Namespace) -> dict[str, Mapping]:
    try:
        return current_mappings(_settings(args))
    except ValueError as e:  # a mapping file that does not load names itself and its problems
        raise UsageError(str(e)) from None


def _lake(args: argparse.Namespace, create: bool = False) -> Lake:
    """The lake to work on; a local one must be a writable folder (``create``: made if absent)."""
    settings = _settings(args)
    if settings.lake_backend == "local":
        _check_folder(Path(settings.lake_root), create)
    return make_lake(settings)


def _check_folder(root: Path, create: bool) -> None:
    if root.exists() and not root.is_dir():
        raise UsageError(f"the lake {root} is a file, not a folder")
    if not root.exists():
        if not create:
            raise UsageError(f"no lake at {root}: the folder does not exist (python -m shared run creates one)")
        try:
            root.mkdir(parents=True)
        except OSError as e:
            raise UsageError(f"cannot create the lake {root}: {e.strerror}") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise UsageError(f"the lake {root} is not writable")


def cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    """Run the main job: the weekly loop on generated data, or on a folder of raw files (--samples)."""
    size = mainjob.Size(
        regions=args.regions, stores_per_region=args.stores_per_region, skus=args.skus, weeks=args.weeks, seed=args.seed
    )
    try:
        if args.samples is not None:
            mainjob.check_samples(args.samples)
        else:
            mainjob.check_size(size, None if args.no_pipeline else mainjob.holdout_weeks())
    except ValueError as e:
        raise UsageError(str(e)) from None
    mappings = _mappings(args)
    lake = _lake(args, create=True)
    return mainjob.run(
        lake,
        _backend(args, lake),
        out,
        samples=args.samples,
        size=size,
        with_pipeline=not args.no_pipeline,
        force=args.force,
        mappings=mappings,
    )


def cmd_ingest(args: argparse.Namespace, out: TextIO) -> int:
    """Ingest the given raw files, or all of the lake's."""
    lake = _lake(args)
    mappings = _mappings(args)
    for path in args.paths:
        try:
            outputs_for(path)
        except ValueError as e:  # a path that is not raw/<source>/...
            raise UsageError(str(e)) from None
        if not lake.exists(path):
            raise UsageError(f"{path}: not found in the lake ({lake.describe(path)})")
    paths = args.paths or raw_paths(lake)
    if not paths:
        print(f"no raw files in {lake.describe('raw/x')[:-2]} ({', '.join(SOURCES)}): nothing to ingest", file=out)
        return OK
    results = ingest_all(lake, paths, out, force=args.force, mappings=mappings)
    summarise(results, out)
    return outcome(results)


def cmd_formats(args: argparse.Namespace, out: TextIO) -> int:
    """List the mappings: dataset, reader, detection and required columns."""
    for m in _mappings(args).values():
        cols = ", ".join(m.required_columns) or "-"
        extra = "" if Path(m.file).parent == MAPPINGS_DIR else f"  ({m.file})"
        print(f"{m.id:<34} {m.dataset:<20} {m.reader:<6} {m.detect:<10} {cols}{extra}", file=out)
    return OK


def _backend(args: argparse.Namespace, lake: Lake | None = None) -> Backend:
    return runtime.make_backend(_settings(args), lake or _lake(args))


def _print_answer(answer: tuple[int, dict[str, Any], dict[str, str]], out: TextIO) -> int:
    status, body, _ = answer
    print(json.dumps(body, indent=2), file=out)
    if status < 400:
        return OK
    return USAGE if status == 404 else FAILED


def _pairs(items: list[str], what: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"{what} {item!r}: expected NAME=VALUE")
        pairs[name] = value
    return pairs


def _typed(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def cmd_pipelines(args: argparse.Namespace, out: TextIO) -> int:
    """List the catalog's pipelines."""
    return _print_answer(runs.list_pipelines(load_catalog()), out)


def cmd_submit(args: argparse.Namespace, out: TextIO) -> int:
    """Submit a pipeline run, and with --wait follow it to its end."""
    body: dict[str, Any] = {
        "parameters": {k: _typed(v) for k, v in _pairs(args.param, "--param").items()},
        "inputs": _pairs(args.input, "--input"),
    }
    if args.key:
        body["idempotency_key"] = args.key
    if args.experiment:
        body["experiment"] = args.experiment
    backend = _backend(args, _lake(args, create=True))
    answer = runs.submit(backend, load_catalog(), args.pipeline, json.dumps(body).encode(), "")
    code = _print_answer(answer, out)
    if code or not args.wait:
        return code
    return _wait(backend, [answer[1]["run_id"]], out)


def _wait(backend: Backend, run_ids: list[str], out: TextIO, timeout_s: float = 12 * 3600) -> int:
    """Follow runs with the durable watch's policy (backoff, stuck limit, gates, timeout); a
    run that does not exist is a wrong use, answered at once."""
    for run_id in run_ids:
        status, body, _ = runs.get(backend, run_id)
        if status == 404:
            raise UsageError(f"no run {run_id}")
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
    return OK if final.outcome == "succeeded" else FAILED


def cmd_status(args: argparse.Namespace, out: TextIO) -> int:
    """Show a run's status, or with --wait follow it to its end."""
    if args.wait:
        return _wait(_backend(args), [args.run_id], out)
    return _print_answer(runs.get(_backend(args), args.run_id), out)


def cmd_watch(args: argparse.Namespace, out: TextIO) -> int:
    """Follow runs to their end with the durable watch's policy."""
    return _wait(_backend(args), args.run_ids, out, args.timeout)


def cmd_cancel(args: argparse.Namespace, out: TextIO) -> int:
    """Cancel a run."""
    return _print_answer(runs.cancel(_backend(args), args.run_id), out)


def cmd_aml_assets(args: argparse.Namespace, out: TextIO) -> int:
    """Registers the environment and every component the pipelines name, at the versions the
    app submits, in the workspace the settings name (AML_SUBSCRIPTION_ID, AML_RESOURCE_GROUP,
    AML_WORKSPACE); ``--check`` registers nothing and fails when anything is missing."""
    from shared.aml import assets
    from shared.aml.azureml import AzureMLBackend
    from shared.aml.backend import BackendError

    try:
        backend = AzureMLBackend.from_settings(_settings(args))
    except BackendError as e:
        raise UsageError(str(e)) from None
    print(f"workspace {backend.workspace}:", file=out, flush=True)
    outcomes = assets.ensure(
        backend.client, check=args.check, say=lambda o: print(f"  {o.line()}", file=out, flush=True)
    )
    missing = [o for o in outcomes if o.state == "missing"]
    created = sum(o.state == "created" for o in outcomes)
    print(
        f"{created} created, {len(outcomes) - created - len(missing)} already there, {len(missing)} missing", file=out
    )
    if missing:
        print(
            "missing: "
            + ", ".join(f"{o.kind} {o.name}" for o in missing)
            + ("; run python -m shared aml-assets" if args.check and any(o.kind != "compute" for o in missing) else "")
            + ("; computes come from infra/ (azd provision)" if any(o.kind == "compute" for o in missing) else ""),
            file=out,
        )
        return FAILED
    return OK


def cmd_lineage(args: argparse.Namespace, out: TextIO) -> int:
    """Print the lineage of a forecast, a model, a data version, a curated file or a run, both
    ways, as JSON (:mod:`shared.mlops.lineage`); a thing it does not know is a wrong use (exit 2)."""
    from shared.mlops import lineage

    lake = _lake(args)
    if _settings(args).aml_backend == "azureml":
        from shared.aml.azureml import AzureMLBackend
        from shared.aml.backend import BackendError
        from shared.mlops.aml_data_assets import AzureDataCatalog
        from shared.mlops.aml_registry import AzureRegistry

        try:
            client = AzureMLBackend.from_settings(_settings(args)).client
        except BackendError as e:
            raise UsageError(str(e)) from None
        records = lineage.Sources(lake, AzureRegistry(client, lake), AzureDataCatalog(client, lake))
    else:
        from shared.mlops.data_assets import LakeDataCatalog
        from shared.mlops.registry import LakeRegistry

        records = lineage.Sources(lake, LakeRegistry(lake), LakeDataCatalog(lake))
    try:
        found = lineage.lineage(records, args.thing)
    except lineage.LineageNotFound as e:
        raise UsageError(str(e)) from None
    print(json.dumps(found, indent=2), file=out)
    return OK


def _common(sub: bool) -> _Parser:
    """The options every command takes, before or after its name: on a command they default
    to "not given", so that they never undo the same option given before it."""
    p = _Parser(add_help=False)
    unset: dict[str, Any] = {"default": argparse.SUPPRESS} if sub else {}
    p.add_argument("--lake", type=Path, help="a local lake folder (default: the settings' lake)", **unset)
    p.add_argument("--mappings", type=Path, help="a folder of your own mapping files, with the shipped ones", **unset)
    p.add_argument("-v", "--verbose", action="store_true", help="log what the services do", **unset)
    return p


def parser() -> argparse.ArgumentParser:
    """The command line's argument parser, a subcommand per command."""
    p = _Parser(
        prog="python -m shared",
        description=__doc__.split("\n\n")[0],
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common(sub=False)],
    )
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, help: str, func: Any) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help, parents=[_common(sub=True)], epilog=EXIT_CODES)
        c.formatter_class = argparse.RawDescriptionHelpFormatter
        c.set_defaults(func=func)
        return c

    run = command(
        "run", "the main job: raw data into the lake, ingest, forecast pipeline, watch, summary and report", cmd_run
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
    ing = command("ingest", "ingest raw files already in the lake (all of raw/ by default)", cmd_ingest)
    ing.add_argument("paths", nargs="*", help="lake paths such as raw/weather/us_obs/2026.csv")
    ing.add_argument("--force", action="store_true", help="re-ingest files whose outputs are current")
    command("formats", "list the raw formats", cmd_formats)
    command("pipelines", "list the pipeline catalog", cmd_pipelines)
    sb = command("submit", "start a run of a catalog pipeline", cmd_submit)
    sb.add_argument("pipeline")
    sb.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a parameter (JSON or text)")
    sb.add_argument("--input", action="append", default=[], metavar="NAME=PATH", help="an input path")
    sb.add_argument("--key", help="idempotency key: the same key re-attaches to the same run")
    sb.add_argument("--experiment", help="AML experiment (default: the catalog's)")
    sb.add_argument("--wait", action="store_true", help="follow the run to its end, printing each change")
    st = command("status", "a run's status, steps, error and metrics", cmd_status)
    st.add_argument("run_id")
    st.add_argument("--wait", action="store_true", help="follow the run to its end")
    wt = command("watch", "follow runs to their end with the durable watch's policy and gates", cmd_watch)
    wt.add_argument("run_ids", nargs="+")
    wt.add_argument("--timeout", type=float, default=12 * 3600, help="seconds before the runs are canceled")
    cn = command("cancel", "ask a run to stop", cmd_cancel)
    cn.add_argument("run_id")
    aa = command("aml-assets", "register the environment and components the pipelines name in Azure ML", cmd_aml_assets)
    aa.add_argument("--check", action="store_true", help="register nothing; list what is missing (exit 1 if any)")
    ln = command("lineage", "a thing's lineage both ways, as JSON", cmd_lineage)
    ln.add_argument(
        "thing",
        help="forecast:WEEK/GROUP[/STORE/SKU], model:GROUP:VERSION, data:VERSION, run:RUN_ID, or curated/...csv",
    )
    return p


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    """Run one command; every wrong use and failure is one line on stderr and an exit code
    (:data:`EXIT_CODES`), never a traceback (``-v`` adds the traceback of an unexpected error)."""
    verbose = False
    try:
        args = parser().parse_args(argv)
        verbose = args.verbose
        logging.basicConfig(
            level=logging.INFO if verbose else logging.WARNING,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        with _sigterm_as_interrupt():
            return int(args.func(args, out))
    except KeyboardInterrupt:
        return _fail(INTERRUPTED, "interrupted; rerun to resume (files already ingested are kept)")
    except (UsageError, FileNotFoundError) as e:
        # wrong use only: an error of the app's own (a ValueError deep inside) is a failure
        return _fail(USAGE, f"error: {_one_line(e)}")
    except LakeError as e:
        return _fail(FAILED, f"error: {_one_line(e)}")
    except Exception as e:
        if verbose:
            traceback.print_exc()
        hint = "" if verbose else " (-v shows the traceback)"
        return _fail(FAILED, f"error: unexpected {type(e).__name__}: {_one_line(e)}{hint}")


def _fail(code: int, line: str) -> int:
    print(line, file=sys.stderr, flush=True)
    return code


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """A SIGTERM (a killed run) unwinds like Ctrl-C, so temporary files are removed."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
