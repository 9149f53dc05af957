"""A parallel step (AML's ``type: parallel``, task ``run_function``) on this machine: the same
entry script, over the same mini-batches, in a process pool.

``python -m shared.aml.local.parallel --entry-script train_groups.py --input-data <folder>
[--mini-batch-size 1] [--error-threshold -1] [--max-retries 2] [--timeout 1800]
[--append-row-to <folder>] [--workers N] -- <program arguments>``, run from the task's code
folder. As AML does:

- the input folder's files, sorted, are cut into mini-batches of ``--mini-batch-size`` files;
- each worker process imports the entry script with the program arguments as its ``sys.argv``
  and calls ``init()`` once; each mini-batch is one ``run(mini_batch, mini_batch_context)``,
  which returns one row per item (a list, or a DataFrame);
- a mini-batch that raises, outlives ``--timeout`` seconds or kills its process is run again up
  to ``--max-retries`` times, then counted failed (a death breaks the pool: the mini-batches it
  held run again one at a time, and only the one whose own run died is charged); the step fails
  (exit 1) when more than ``--error-threshold`` mini-batches failed (-1: never for them);
- the rows go to ``<append-row-to>/parallel_run_step.txt``, one line each.

``--workers`` (default: the machine's cores) is the pool's size: AML's instance_count x
max_concurrency_per_instance. A process pool mapping mini-batches, nothing more.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: the file AML appends the rows to, in the append_row_to folder
ROWS_FILE = "parallel_run_step.txt"

_ENTRY: dict[str, Any] = {}


@dataclass(frozen=True)
class MiniBatchContext:
    """What ``run`` is told about its mini-batch (AML's ``mini_batch_context``)."""

    minibatch_index: int
    partition_key_value: dict[str, Any] | None = None
    dataset: str = ""


class MiniBatchTimeout(Exception):
    """A mini-batch ran past the step's timeout."""


def _init(entry_script: str, program_args: list[str]) -> None:
    """Once per worker: the entry script imported with its arguments, and its ``init()``."""
    sys.argv = [entry_script, *program_args]
    sys.path.insert(0, os.getcwd())
    spec = importlib.util.spec_from_file_location(Path(entry_script).stem, entry_script)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load entry script {entry_script}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    if hasattr(module, "init"):
        module.init()
    _ENTRY["module"] = module


def _timeout(signum: int, frame: Any) -> None:
    raise MiniBatchTimeout("the mini-batch ran past the step's timeout")


def _run(batch: list[str], index: int, timeout: int) -> list[str]:
    """One mini-batch in a worker: ``run`` within ``timeout`` seconds; its rows as lines."""
    old = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(max(int(timeout), 0))
    try:
        result = _ENTRY["module"].run(batch, MiniBatchContext(index))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return _lines(result)


def _lines(result: Any) -> list[str]:
    if result is None:
        return []
    if hasattr(result, "to_csv"):  # a DataFrame: one space-separated line per row, as AML writes it
        return [ln for ln in result.to_csv(sep=" ", header=False, index=False).splitlines() if ln]
    return [r if isinstance(r, str) else json.dumps(r, default=str) for r in result]


def mini_batches(folder: Path, size: int) -> list[list[str]]:
    """The folder's files (every depth, sorted) in mini-batches of ``size``."""
    files = sorted(str(p) for p in Path(folder).rglob("*") if p.is_file())
    return [files[i : i + size] for i in range(0, len(files), max(size, 1))]


def run_parallel(
    entry_script: str,
    batches: list[list[str]],
    program_args: list[str],
    *,
    workers: int,
    max_retries: int = 2,
    timeout: int = 1800,
) -> tuple[list[str], dict[int, str]]:
    """Every mini-batch through ``run`` in a pool of ``workers`` processes (each ``init()``
    once); the rows, and the mini-batches that failed after their retries (index -> why).

    A process that dies breaks the pool, and every mini-batch it held raises, the queued ones
    too: those are charged nothing and run again one at a time in a pool of one, where a death
    is the mini-batch's own; only that one is charged, and its retries stay alone."""
    rows: list[str] = []
    failed: dict[int, str] = {}
    attempts = dict.fromkeys(range(len(batches)), 0)

    def charge(i: int, e: BaseException, again: list[int]) -> None:
        attempts[i] += 1
        why = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:300]
        print(f"parallel: mini-batch {i} failed (attempt {attempts[i]}): {why}", file=sys.stderr)
        if attempts[i] <= max_retries:
            again.append(i)
        else:
            failed[i] = why

    todo = list(range(len(batches)))
    while todo:
        alone: list[int] = []
        with ProcessPoolExecutor(
            max(1, min(workers, len(todo))), initializer=_init, initargs=(entry_script, program_args)
        ) as pool:
            futures = {pool.submit(_run, batches[i], i, timeout): i for i in todo}
            todo = []
            for fut in as_completed(futures):
                try:
                    rows += fut.result()
                except BrokenProcessPool:  # some process died: whose mini-batch killed it is unknown
                    alone.append(futures[fut])
                except Exception as e:
                    charge(futures[fut], e, todo)
        if alone:
            print(f"parallel: a process died; mini-batches {', '.join(map(str, sorted(alone)))} run again "
                  "one at a time", file=sys.stderr)  # fmt: skip
        rows += _one_at_a_time(sorted(alone), entry_script, batches, program_args, timeout, charge)
        todo.sort()
    return rows, failed


def _one_at_a_time(alone: list[int], entry_script: str, batches: list[list[str]], program_args: list[str],
                   timeout: int, charge: Any) -> list[str]:  # fmt: skip
    """``alone``'s mini-batches, each the only one in a pool of one process (a new pool after a
    death): a failure, a death included, is charged to that mini-batch and retried here."""
    rows: list[str] = []
    pool: ProcessPoolExecutor | None = None
    try:
        while alone:
            i = alone.pop(0)
            if pool is None:
                pool = ProcessPoolExecutor(1, initializer=_init, initargs=(entry_script, program_args))
            try:
                rows += pool.submit(_run, batches[i], i, timeout).result()
            except BrokenProcessPool as e:
                pool.shutdown()
                pool = None
                charge(i, e, alone)
            except Exception as e:
                charge(i, e, alone)
    finally:
        if pool is not None:
            pool.shutdown()
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run a parallel step here; exit 1 when more mini-batches failed than the threshold allows."""
    argv = list(sys.argv[1:] if argv is None else argv)
    program = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--entry-script", required=True)
    p.add_argument("--input-data", type=Path, required=True)
    p.add_argument("--mini-batch-size", type=int, default=1)
    p.add_argument("--error-threshold", type=int, default=-1, help="failed mini-batches allowed (-1: any)")
    p.add_argument("--max-retries", type=int, default=2)
    p.add_argument("--timeout", type=int, default=1800)
    p.add_argument("--append-row-to", type=Path)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    a = p.parse_args(own)
    t0 = time.monotonic()
    batches = mini_batches(a.input_data, a.mini_batch_size)
    rows, failed = run_parallel(
        a.entry_script, batches, program, workers=a.workers, max_retries=a.max_retries, timeout=a.timeout
    )
    if a.append_row_to is not None:
        a.append_row_to.mkdir(parents=True, exist_ok=True)
        with open(a.append_row_to / ROWS_FILE, "a", encoding="utf-8") as f:
            f.writelines(f"{r}\n" for r in rows)
    for i, why in sorted(failed.items()):
        print(
            f"parallel: mini-batch {i} ({', '.join(Path(b).name for b in batches[i])}) failed: {why}", file=sys.stderr
        )
    seconds = time.monotonic() - t0
    print(
        f"parallel: {len(batches)} mini-batches, {len(failed)} failed, {len(rows)} rows, "
        f"{min(a.workers, max(len(batches), 1))} workers, {seconds:.1f}s",
        flush=True,
    )
    if a.error_threshold >= 0 and len(failed) > a.error_threshold:
        print(
            f"parallel: {len(failed)} failed mini-batches, more than the threshold {a.error_threshold}", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
