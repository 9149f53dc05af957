"""One pass over a raw file: read, convert, deduplicate or fold, and write the curated CSV and
the rejected rows, counting every row.

:func:`write_outputs` answers one of three things, never ``Any``: :class:`Written` (the
outputs are committed), :class:`Repeated` (keys repeat: the caller runs a second, first-wins
pass with those hashes) or :class:`Unreadable` (a data error: the file goes to quarantine).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from shared.ingestion.aggregate import Folder
from shared.ingestion.convert import REJECT_SCHEMA, Context, Converted, Converter
from shared.ingestion.coverage import Coverage
from shared.ingestion.datasets import spec
from shared.ingestion.dedupe import FirstWins, KeyCounter, duplicate_rejects, key_hashes
from shared.ingestion.detect import open_batches
from shared.ingestion.formats import Mapping
from shared.ingestion.layout import Outputs
from shared.ingestion.readers import DataError, open_decoded, sniff_kind, too_deep
from shared.lake import Lake, NotFoundError

if TYPE_CHECKING:
    from typing_extensions import Buffer

Progress = Callable[[int, int], None]
#: the rejects a file quarantined for its reject ratio keeps in its record (``too_many_rejects``)
REJECT_SAMPLES = 10


@dataclass(frozen=True)
class RejectLimit:
    """When a file is rejected rather than its rows: more than ``ratio_max`` of its rows
    rejected, and at least ``min_rows`` of them (``FORECASTOPS_REJECT_RATIO_MAX`` and
    ``FORECASTOPS_REJECT_FILE_MIN_ROWS``)."""

    ratio_max: float
    min_rows: int

    def passed(self, read: int, rejected: int) -> bool:
        """Whether ``rejected`` of ``read`` rows pass the limit."""
        return rejected >= self.min_rows and rejected > self.ratio_max * read


@dataclass(frozen=True)
class Written:
    """The outputs are written: the row counts, the raw file's facts, the mapping and how it
    was found, each output's path, sha256 and bytes, and the weeks and keys the curated rows
    cover (:meth:`Coverage.result`)."""

    rows: dict[str, Any]
    raw: dict[str, Any]
    mapping: Mapping
    detected_by: str
    outputs: dict[str, Any]
    coverage: dict[str, Any]


@dataclass(frozen=True)
class Repeated:
    """Key hashes seen more than once (or none: the first pass stopped writing its rejects
    and the file stayed under the limit after all): nothing was committed; pass again with them."""

    hashes: np.ndarray


class Superseded(Exception):
    """The raw file changed while it was read: what was read is discarded, so that a slow
    ingest of an old version never overwrites the outputs of a newer one. ``committed``: some
    outputs of the old version were already committed (the next pass must rewrite them)."""

    def __init__(self, path: str, read: str, now: str | None, committed: bool) -> None:
        super().__init__(f"{path} changed while it was ingested (read {read}, now {now or 'deleted'})")
        self.committed = committed


def check_current(lake: Lake, raw_path: str, etag: str, committed: bool = False) -> None:
    """Raise :class:`Superseded` unless ``raw_path`` is still the version ``etag`` that was read."""
    try:
        now: str | None = lake.stat(raw_path).etag
    except NotFoundError:
        now = None
    if now != etag:
        raise Superseded(raw_path, etag, now, committed)


@dataclass(frozen=True)
class Unreadable:
    """The file cannot be read as a whole; ``raw`` holds what is known of it (sha256, bytes)."""

    error: DataError
    raw: dict[str, Any]


class HashingReader(io.RawIOBase):
    """Passes a stream through, counting its bytes and their sha256 as they are read."""

    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Buffer) -> int:
        n = cast(io.RawIOBase, self._inner).readinto(b)
        if n:
            self.sha256.update(memoryview(b)[:n])
            self.bytes += n
        return n or 0


class HashingWriter(io.RawIOBase):
    """Passes writes through, counting their bytes and their sha256."""

    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Buffer) -> int:
        b = memoryview(b).cast("B")
        self.sha256.update(b)
        self.bytes += len(b)
        self._inner.write(bytes(b))
        return len(b)


class CsvOut:
    """A CSV written through a lake writer, header unquoted, values quoted where needed."""

    def __init__(self, sink: BinaryIO, schema: pa.Schema) -> None:
        self.hashing = HashingWriter(sink)
        self.hashing.write((",".join(schema.names) + "\n").encode())
        self.writer = pacsv.CSVWriter(
            self.hashing, schema, write_options=pacsv.WriteOptions(include_header=False, quoting_style="needed")
        )
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        # batch by batch, skipping empty ones: pyarrow 26's CSVWriter writes an empty
        # batch as ~40 KB of NUL bytes
        for batch in table.to_batches():
            if batch.num_rows:
                self.writer.write_batch(batch)
                self.rows += batch.num_rows

    def close(self) -> dict[str, Any]:
        self.writer.close()
        return {"sha256": self.hashing.sha256.hexdigest(), "bytes": self.hashing.bytes, "rows": self.rows}


#: a cell a spreadsheet would take for a formula (OWASP's CSV-injection list) ...
_FORMULA = r"^[=+\-@\t\r]"
#: ... unless it is a number (``-5``, ``+3.25``, ``-1e5``)
_NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"


def neutralise_formulas(table: pa.Table) -> pa.Table:
    """``table`` with every text cell that starts like a formula (``=``, ``+``, ``-``, ``@``, a
    tab, a carriage return) and is not a number behind a single quote, for a CSV people open in
    a spreadsheet (docs/lake.md, "CSV files for people")."""
    columns = []
    for column in table.columns:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            formula = pc.and_(
                pc.match_substring_regex(column, _FORMULA), pc.invert(pc.match_substring_regex(column, _NUMBER))
            )
            column = pc.if_else(formula, pc.binary_join_element_wise("'", column, ""), column)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=table.schema)


class LazyCsv:
    """A CSV opened only when its first row comes (most files reject nothing); ``result`` is
    its sha256, bytes and rows once the ``with`` block closed it, else None. It is for people
    (the rejected rows): formula prefixes are neutralised (:func:`neutralise_formulas`)."""

    def __init__(self, lake: Lake, path: str, schema: pa.Schema) -> None:
        self.lake, self.path, self.schema = lake, path, schema
        self._stack = contextlib.ExitStack()
        self._csv: CsvOut | None = None
        self.result: dict[str, Any] | None = None

    def __enter__(self) -> LazyCsv:
        return self

    def write(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        if self._csv is None:
            self._csv = CsvOut(self._stack.enter_context(self.lake.writer(self.path)), self.schema)
        self._csv.write(neutralise_formulas(table))

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        # the writer must see the exception: only a pass that ended well commits its rejects
        if self._csv is not None and exc_type is None:
            self.result = self._csv.close()
        return bool(self._stack.__exit__(exc_type, exc, tb))


def write_outputs(
    lake: Lake,
    out: Outputs,
    fields: dict[str, str],
    mappings: dict[str, Mapping],
    progress: Progress | None,
    repeated: np.ndarray | None,
    limit: RejectLimit | None = None,
) -> Written | Repeated | Unreadable:
    """Read ``out.raw`` once and write its curated and rejected outputs. With ``repeated`` (the
    hashes of a first pass), the first row of each repeated key wins and the others are rejected.

    A file whose rejected rows pass ``limit`` is :class:`Unreadable` (``too_many_rejects``) and
    leaves no output. The decision is taken at the end, on every row: a file whose first rows
    are bad may be good after all. But the first pass stops writing its rejects as soon as the
    rows read so far pass the limit (a file of bad rows writes a few KB, not a rejects file ten
    thousand times its size); should the file end under the limit, it answers
    :class:`Repeated` and the second pass, which never stops, writes them all."""
    with lake.open(out.raw) as (stream, info):
        hashing = HashingReader(stream)
        raw: dict[str, Any] = {"etag": info.etag}
        try:
            result = _pass(lake, hashing, raw, out, fields, mappings, progress, repeated, limit)
        except _Again as again:
            return Repeated(again.hashes)
        except DataError as e:
            return Unreadable(e, _drain(hashing, raw))
        except RecursionError:  # a JSON value nested deeper than some later step goes
            return Unreadable(too_deep(), _drain(hashing, raw))
        _drain(hashing, raw)
    return result


class _Rejects:
    """The rejects of one pass: written as they come, with the first few kept as samples; on
    the first pass (``may_pause``) no longer written once the rows so far pass the limit."""

    def __init__(self, sink: LazyCsv, limit: RejectLimit | None, may_pause: bool) -> None:
        self.sink, self.limit, self.may_pause = sink, limit, may_pause
        self.paused = False
        self.samples: list[dict[str, Any]] = []

    def add(self, rejects: pa.Table, rows: dict[str, Any]) -> None:
        if len(self.samples) < REJECT_SAMPLES and rejects.num_rows:
            self.samples += rejects.slice(0, REJECT_SAMPLES - len(self.samples)).to_pylist()
        if self.limit is not None and self.may_pause and not self.paused:
            self.paused = self.limit.passed(rows["read"], rows["rejected"])
        if not self.paused:
            self.sink.write(rejects)

    def check(self, out: Outputs, rows: dict[str, Any]) -> None:
        """Raise ``too_many_rejects`` when the whole file passes the limit."""
        limit = self.limit
        if limit is None or not limit.passed(rows["read"], rows["rejected"]):
            return
        read, rejected = rows["read"], rows["rejected"]
        raise DataError(
            "too_many_rejects",
            f"{rejected:,} of the {read:,} rows read were rejected ({rejected / read:.0%}): more than "
            f"{limit.ratio_max:.0%} of the rows (and at least {limit.min_rows:,}) quarantines the whole "
            "file, most often a wrong mapping or a broken export; see the counts per rule and the samples",
            rows={"read": read, "passed": rows["written"], "rejected": rejected, "written": 0},
            rejected_by_rule=dict(sorted(rows["rejected_by_rule"].items())),
            samples=self.samples,
        )


def _pass(
    lake: Lake,
    hashing: HashingReader,
    raw: dict[str, Any],
    out: Outputs,
    fields: dict[str, str],
    mappings: dict[str, Mapping],
    progress: Progress | None,
    repeated: np.ndarray | None,
    limit: RejectLimit | None,
) -> Written:
    ds = spec(out.dataset)
    src, prefix, compression = open_decoded(hashing)
    raw["compression"] = compression
    batches, mapping, detected_by, document = open_batches(
        src, prefix, sniff_kind(prefix), out.dataset, fields, mappings
    )
    conv = Converter(mapping, Context(fields, document))
    # a key column the mapping fills with one value per file (a constant, a path field)
    # cannot tell rows apart: leave it out of the hash
    hash_key = tuple(k for k in ds.key if mapping.columns[k].const is None and mapping.columns[k].field is None)
    hash_key = hash_key or ds.key
    counter = KeyCounter() if (repeated is None and not mapping.aggregate) else None
    first_wins = FirstWins(repeated, hash_key) if repeated is not None else None
    folder = Folder(ds.key, mapping, conv.schema) if mapping.aggregate else None
    rows: dict[str, Any] = {"read": 0, "written": 0, "rejected": 0, "output": 0, "rejected_by_rule": {}}
    # gathered from the rows as they go to the curated CSV: the same rows, no second read
    coverage = Coverage(out.dataset)
    # the duplicate search's spill files go whatever ends the pass (an error, Ctrl-C)
    spill = contextlib.closing(counter) if counter is not None else contextlib.nullcontext()
    with spill, lake.writer(out.curated) as sink, LazyCsv(lake, out.rejected, REJECT_SCHEMA) as rejected_out:
        csv_out = CsvOut(sink, conv.schema)
        rejects_out = _Rejects(rejected_out, limit, may_pause=repeated is None)
        for batch in batches:
            try:
                res = conv.convert(batch)
            except pa.ArrowException as e:
                # a value no rule foresaw: quarantine the file, never crash (a crash
                # would make the host retry a bad file, and lose its good rows anyway)
                raise DataError("unconvertible_value", f"a value could not be converted: {e}") from e
            _merge(rows["rejected_by_rule"], res.per_rule)
            good, rejects, rejected = _first_wins(first_wins, res, ds.key, rows["rejected_by_rule"])
            if counter is not None and good.num_rows:
                counter.add(key_hashes(good, hash_key))
            rows["read"] += res.rows_read
            rows["rejected"] += rejected
            rows["written"] += good.num_rows
            if folder is not None:
                folder.add(good)
            else:
                csv_out.write(good)
                coverage.add(good)
            rejects_out.add(rejects, rows)
            if progress:
                progress(rows["read"], hashing.bytes)
        # leaving the writers by an exception discards what they staged
        rejects_out.check(out, rows)
        found = np.empty(0, np.uint64)
        if counter is not None:
            found = counter.repeated()
            counter.close()
        if len(found) or rejects_out.paused:
            raise _Again(found)
        if folder is not None:
            folded = folder.finish()
            csv_out.write(folded)
            coverage.add(folded)
        curated = csv_out.close()
        # the last moment before the writers commit: leaving by an exception discards them
        check_current(lake, out.raw, raw["etag"])
    rows["output"] = curated.pop("rows")
    outputs: dict[str, Any] = {"curated": {"path": out.curated, **curated}, "rejected": None}
    if rejected_out.result:
        rejected_out.result.pop("rows")
        outputs["rejected"] = {"path": out.rejected, **rejected_out.result}
    rows["rejected_by_rule"] = dict(sorted(rows["rejected_by_rule"].items()))
    if rows["read"] != rows["written"] + rows["rejected"]:
        raise RuntimeError(f"{out.raw}: rows do not balance: {rows}")
    return Written(rows, raw, mapping, detected_by, outputs, coverage.result())


def _first_wins(
    first_wins: FirstWins | None, res: Converted, key: tuple[str, ...], per_rule: dict[str, int]
) -> tuple[pa.Table, pa.Table, int]:
    """A batch's good rows, rejects and rejected count once later repeats of a key are rejected."""
    good, rejects, rejected = res.good, res.rejects, res.rejected_rows
    if first_wins is None or not good.num_rows:
        return good, rejects, rejected
    dup = first_wins.duplicates(good)
    if not dup.any():
        return good, rejects, rejected
    found = int(dup.sum())
    _merge(per_rule, {"duplicate_key": found})
    rejects = pa.concat_tables([rejects, duplicate_rejects(good, dup, res.kept_lines, key)])
    return good.filter(pa.array(~dup)), rejects, rejected + found


class _Again(Exception):
    """Raised inside the writers' ``with`` so that they discard their staged outputs."""

    def __init__(self, hashes: np.ndarray) -> None:
        super().__init__(f"{len(hashes)} repeated key hash(es)")
        self.hashes = hashes


def _drain(hashing: HashingReader, raw: dict[str, Any]) -> dict[str, Any]:
    """Read the raw stream to its end so that sha256 and bytes describe the whole file."""
    while hashing.read(4 * 1024 * 1024):
        pass
    raw["sha256"] = hashing.sha256.hexdigest()
    raw["bytes"] = hashing.bytes
    return raw


def _merge(into: dict[str, int], more: dict[str, int]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0) + v
