"""Progress on long work (generating, ingesting, the pipeline's steps): a tqdm bar on stderr
with a rate and an ETA, drawn only when stderr is a terminal, so that tests, CI and pipes see
only the summary lines the command prints on stdout."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from tqdm import tqdm

#: at most this often a bar is redrawn
MIN_INTERVAL_S = 0.5


def bar(total: int | None, desc: str, unit: str, stream: TextIO | None = None, **options: Any) -> tqdm[Any]:
    """A progress bar on ``stream`` (stderr), silent unless it is a terminal."""
    stream = stream or sys.stderr
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=stream,
        disable=not stream.isatty(),
        leave=False,
        dynamic_ncols=True,
        mininterval=MIN_INTERVAL_S,
        miniters=1,
        **options,
    )


def say(line: str, out: TextIO) -> None:
    """A result line on ``out`` that does not tear a bar being drawn on stderr."""
    tqdm.write(line, file=out)
    out.flush()
