"""Raw readers: bytes in any supported container (plain, gzip; CSV, JSON, JSON Lines) to
batches of raw text columns, streamed, with the line each record started on.

Every reader yields :class:`RawBatch` objects whose columns are string arrays keyed by the
normalised raw name (``normalise_header``), so the conversion that follows is one code path
for every layout. File-level problems raise :class:`DataError` with words a data engineer
understands; row-level problems (a CSV row with the wrong number of fields, a JSON Lines
line that is not JSON) come back as :class:`BadRecord` and are quarantined as rows.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

import pyarrow as pa
import pyarrow.csv as pacsv

if TYPE_CHECKING:
    from typing_extensions import Buffer

from shared.ingestion.formats import Mapping, normalise_header

SNIFF_BYTES = 1024 * 1024
CSV_BLOCK_BYTES = 2 * 1024 * 1024
JSON_MAX_BYTES = 256 * 1024 * 1024
JSONL_BATCH_LINES = 20_000
GZIP_MAGIC = b"\x1f\x8b"
#: compressions recognised by their first bytes and refused by name (gzip is read)
OTHER_MAGIC = {
    b"PK\x03\x04": "zip",
    b"PK\x05\x06": "zip",
    b"BZh": "bz2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"7z\xbc\xaf\x27\x1c": "7z",
}
#: Python's JSON reader recurses per level: a document nested deeper is refused by name
TOO_DEEP = "too_deep"


#: how much of a file's own text a quarantine record (and the route's answer) may show
SAMPLE_CHARS = 60
SAMPLE_ITEMS = 20
MESSAGE_CHARS = 600


def sample(text: str, limit: int = SAMPLE_CHARS) -> str:
    """A short, escaped sample of raw text: what is not printable written as an escape
    (``\\x07``, ``\\u2028``), then cut to ``limit`` characters with an ellipsis."""
    shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _sampled(value: Any) -> Any:
    if isinstance(value, str):
        return sample(value)
    if isinstance(value, list | tuple):
        items = [_sampled(v) for v in value[:SAMPLE_ITEMS]]
        return items + ([f"... {len(value) - SAMPLE_ITEMS} more"] if len(value) > SAMPLE_ITEMS else [])
    if isinstance(value, dict):
        kept = list(value.items())[:SAMPLE_ITEMS]
        return {sample(str(k)): _sampled(v) for k, v in kept}
    return value


class DataError(Exception):
    """The file cannot be read as a whole; ``reason`` is a stable code, ``message`` a sentence.

    What the file itself holds reaches the record (and the re-ingest route's answer) only as a
    short escaped sample: the message is escaped and bounded, each detail too (a raw header of
    10,000 columns, or a file that is not data at all, is never echoed back whole)."""

    def __init__(self, reason: str, message: str, **details: Any) -> None:
        message = sample(message, MESSAGE_CHARS)
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.details = {k: _sampled(v) for k, v in details.items()}


@dataclass
class BadRecord:
    """A record that could not be read: its line, rule, text and why."""

    line: int | None
    rule: str
    text: str
    message: str


@dataclass
class RawBatch:
    """Rows read from a raw file: text columns, each row's line, and the records not read."""

    columns: dict[str, pa.Array]
    lines: pa.Array
    bad: list[BadRecord] = field(default_factory=list)

    @property
    def num_rows(self) -> int:
        return len(self.lines)


class PrefixedReader(io.RawIOBase):
    """Replays bytes already read (the sniffed prefix) before the rest of a stream."""

    def __init__(self, prefix: bytes, rest: Any) -> None:
        self._prefix = memoryview(prefix)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, b: Buffer) -> int:
        b = memoryview(b).cast("B")
        if self._prefix:
            n = min(len(b), len(self._prefix))
            b[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._rest.read(len(b))
        n = len(data)
        b[:n] = data
        return n


class CrToLf(io.RawIOBase):
    """A stream whose lone CR line endings (old Mac exports) read as LF."""

    def __init__(self, rest: Any) -> None:
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, b: Buffer) -> int:
        b = memoryview(b).cast("B")
        data = bytes(self._rest.read(len(b))).replace(b"\r", b"\n")
        n = len(data)
        b[:n] = data
        return n


def open_decoded(stream: BinaryIO | io.RawIOBase) -> tuple[Any, bytes, str | None]:
    """The stream decompressed if it is gzip, its first bytes, and the compression found;
    another compression (zip, bz2, xz) is refused by name. A file whose lines end in CR
    alone (no LF in its first MiB) is read with LF line endings."""
    head = read_up_to(stream, 6)
    for magic, name in OTHER_MAGIC.items():
        if head.startswith(magic):
            raise DataError(
                "unsupported_compression",
                f"the file is {name}-compressed, which is not read: send it uncompressed or as gzip (.gz)",
                compression=name,
            )
    src: Any = PrefixedReader(head, stream)
    compression = None
    if head[:2] == GZIP_MAGIC:
        compression = "gzip"
        src = pa.CompressedInputStream(pa.PythonFile(src, mode="r"), "gzip")
    try:
        prefix = read_up_to(src, SNIFF_BYTES)
    except (OSError, EOFError, pa.ArrowException) as e:
        raise DataError("unreadable_gzip", f"the file starts like gzip but cannot be decompressed: {e}") from e
    if b"\r" in prefix and b"\n" not in prefix:
        return CrToLf(src), bytes(prefix).replace(b"\r", b"\n"), compression
    return src, bytes(prefix), compression


def read_up_to(src: Any, n: int) -> bytes:
    """Up to ``n`` bytes: fewer only at the end of the stream (raw reads may return less)."""
    parts, got = [], 0
    while got < n:
        chunk = src.read(n - got)
        if not chunk:
            break
        parts.append(bytes(chunk))
        got += len(chunk)
    return b"".join(parts)


def sniff_kind(prefix: bytes) -> str:
    """``csv``, ``json``, ``jsonl`` or ``json-or-jsonl`` (one object on one line), from the
    first bytes of the (decompressed) file."""
    text = prefix.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not text.strip():
        raise DataError("empty_file", "the file is empty: no header and no rows")
    if text[:1] not in (b"{", b"["):
        return "csv"
    first_line, _, rest = text.partition(b"\n")
    try:
        # numbers kept as text: a 5,000-digit integer is JSON, whatever int() accepts
        json.loads(first_line, parse_float=str, parse_int=str)
    except RecursionError:
        pass  # one line, but nested too deep: the reader that follows says so
    except ValueError:
        return "json"  # a document spread over lines (or broken: the JSON reader says where)
    if rest.strip():
        return "jsonl"
    return "json-or-jsonl"


def decode_prefix(prefix: bytes, encoding: str) -> str:
    """The sniffed prefix as text; undecodable bytes raise a ``not_utf8``-style DataError."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    try:
        text = decoder.decode(prefix, final=False)
    except UnicodeDecodeError as e:
        raise DataError(
            "bad_encoding",
            f"the file is not valid {encoding} (byte {e.start} cannot be decoded); "
            "if the vendor sends another encoding, declare it in the mapping (encoding = ...)",
            encoding=encoding,
            byte_offset=e.start,
        ) from e
    return text.lstrip("\ufeff")


def csv_header(prefix: bytes, encoding: str, delimiter: str) -> list[str]:
    """The header row of a CSV file from its first bytes; DataError if there is none."""
    text = decode_prefix(prefix, encoding)
    try:
        first = next(csv.reader(io.StringIO(text), delimiter=delimiter), None)
    except csv.Error as e:
        # Python's csv module refuses a field over 128 KiB: no header is that long, so this
        # is a data file without a header, or a header with an unclosed quote
        raise DataError(
            "record_too_long",
            f"the first line is not a header: it has a field longer than {csv.field_size_limit() >> 10} KiB "
            f"({e}); is a quote left open?",
        ) from e
    if not first or all(not h.strip() for h in first):
        raise DataError("no_header", "the file has no header row")
    return first


def check_unique_columns(header: list[str], mapping: Mapping) -> None:
    """Refuse a header that names a column the mapping reads more than once: which of the
    two is meant cannot be known (headers match case- and whitespace-insensitively)."""
    wanted = {normalise_header(s.column) for s in mapping.columns.values() if s.column}
    wanted |= {normalise_header(s.multiply_by) for s in mapping.columns.values() if s.multiply_by}
    positions: dict[str, list[int]] = {}
    for i, name in enumerate(header, 1):
        positions.setdefault(normalise_header(name), []).append(i)
    twice = {name: at for name, at in positions.items() if name in wanted and len(at) > 1}
    if twice:
        where = "; ".join(f"{name!r} at columns {', '.join(map(str, at))}" for name, at in sorted(twice.items()))
        raise DataError(
            "duplicate_column",
            f"the header names a column format {mapping.id} reads more than once ({where}): "
            "which one is meant cannot be told; rename or drop the extra column",
            columns=sorted(twice),
        )


def csv_batches(src: Any, prefix: bytes, mapping: Mapping, header: list[str]) -> Iterator[RawBatch]:
    """Stream a CSV in ~2 MiB blocks as string columns (only the columns the mapping reads)."""
    wanted = {normalise_header(s.column) for s in mapping.columns.values() if s.column}
    wanted |= {normalise_header(s.multiply_by) for s in mapping.columns.values() if s.multiply_by}
    originals = {normalise_header(h): h for h in header}
    include = [originals[w] for w in wanted if w in originals]
    bad: list[BadRecord] = []

    def on_invalid(row: Any) -> str:
        bad.append(
            BadRecord(
                None,
                "wrong_field_count",
                row.text,
                f"{row.actual_columns} fields where the header has {row.expected_columns}",
            )
        )
        return "skip"

    reader_kwargs: dict[str, Any] = {"block_size": CSV_BLOCK_BYTES, "use_threads": True}
    if mapping.encoding.lower().replace("_", "-") not in ("utf-8", "utf8", "utf-8-sig"):
        reader_kwargs["encoding"] = mapping.encoding
    try:
        reader = pacsv.open_csv(
            PrefixedReader(prefix, src),
            read_options=pacsv.ReadOptions(**reader_kwargs),
            parse_options=pacsv.ParseOptions(
                delimiter=mapping.delimiter, newlines_in_values=True, invalid_row_handler=on_invalid
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={h: pa.string() for h in include},
                include_columns=include,
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        record = 0
        for batch in reader:
            n = batch.num_rows
            # line of each record, counting the header as line 1 (exact unless a quoted field
            # spans lines or malformed rows were skipped before it)
            lines = pa.array(range(record + 2, record + 2 + n), pa.int64())
            record += n
            cols = {normalise_header(name): batch.column(i) for i, name in enumerate(batch.schema.names)}
            out = RawBatch(cols, lines, bad[:])
            bad.clear()
            yield out
        if bad:
            yield RawBatch({}, pa.array([], pa.int64()), bad[:])
    except pa.ArrowInvalid as e:
        text = str(e)
        if "straddling object" in text:
            raise DataError(
                "record_too_long",
                f"a record (one row, with any line breaks inside its quotes) is longer than "
                f"{CSV_BLOCK_BYTES >> 20} MiB, the longest the CSV reader takes; is a quote left open?",
                limit_bytes=CSV_BLOCK_BYTES,
            ) from e
        if "UTF8" in text or "utf8" in text.lower():
            raise DataError(
                "bad_encoding",
                f"the file is not valid {mapping.encoding}: {text.splitlines()[0]}; declare the "
                "vendor's encoding in the mapping (encoding = ...) if it is not UTF-8",
                encoding=mapping.encoding,
            ) from e
        raise DataError("unreadable_csv", f"the CSV cannot be parsed: {text.splitlines()[0]}") from e
    except (OSError, EOFError) as e:
        raise DataError("truncated", f"the file ends early or is corrupt: {e}") from e


def _lookup(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return _MISSING
        obj = obj[part]
    return obj


_MISSING = object()


def _text(value: Any) -> str | None:
    if value is None or value is _MISSING:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def flatten_keys(obj: Any, prefix: str = "") -> set[str]:
    """Every dotted path of an object's keys, normalised like headers."""
    keys: set[str] = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            name = f"{prefix}{k}"
            keys.add(normalise_header(name))
            keys |= flatten_keys(v, f"{name}.")
    return keys


def _record_columns(mapping: Mapping) -> list[str]:
    cols = [s.column for s in mapping.columns.values() if s.column]
    return list(dict.fromkeys(cols))


def load_json(src: Any, prefix: bytes, encoding: str) -> Any:
    """The JSON document, numbers kept as text; DataError if too large, undecodable or invalid."""
    try:
        data = prefix + read_up_to(src, JSON_MAX_BYTES + 1 - len(prefix))
    except (OSError, EOFError) as e:  # a gzip stream that ends early or is corrupt
        raise DataError("truncated", f"the file ends early or is corrupt: {e}") from e
    if len(data) > JSON_MAX_BYTES:
        raise DataError("too_large", f"a JSON document over {JSON_MAX_BYTES >> 20} MiB; send JSON Lines instead")
    try:
        text = data.decode(encoding).lstrip("\ufeff")
    except UnicodeDecodeError as e:
        raise DataError("bad_encoding", f"the file is not valid {encoding} (byte {e.start} cannot be decoded)") from e
    try:
        # numbers stay text, so that the raw value reported for a bad row is what was sent
        return json.loads(text, parse_float=str, parse_int=str)
    except RecursionError as e:
        raise too_deep() from e
    except json.JSONDecodeError as e:
        where = "truncated" if e.pos >= len(text.rstrip()) else "invalid"
        raise DataError(
            "invalid_json",
            f"the JSON is {where}: {e.msg} at line {e.lineno}, column {e.colno} (character {e.pos})",
        ) from e


def too_deep() -> DataError:
    """The quarantine reason of a JSON document nested deeper than Python's parser goes."""
    limit = sys.getrecursionlimit()
    return DataError(TOO_DEEP, f"the JSON is nested deeper than the reader goes (about {limit} levels)")


def json_records(doc: Any, mapping: Mapping) -> tuple[dict[str, list[Any]], int]:
    """The records under ``mapping.records`` as raw columns, and their count."""
    records = _lookup(doc, mapping.records or "")
    if records is _MISSING:
        raise DataError("format_mismatch", f"the document has no {mapping.records!r}")
    if isinstance(records, dict):
        lengths = {k: len(v) for k, v in records.items() if isinstance(v, list)}
        if len(set(lengths.values())) > 1:
            raise DataError(
                "format_mismatch",
                f"the arrays under {mapping.records!r} have different lengths: {lengths}",
            )
        n = next(iter(lengths.values()), 0)
        cols = {normalise_header(k): [_text(x) for x in v] for k, v in records.items() if k in lengths}
        return cols, n
    if isinstance(records, list):
        cols = {normalise_header(c): [_text(_lookup(r, c)) for r in records] for c in _record_columns(mapping)}
        return cols, len(records)
    raise DataError("format_mismatch", f"{mapping.records!r} is neither an array nor an object of arrays")


def json_available(doc: Any, mapping: Mapping) -> set[str]:
    """The columns a JSON document's records offer the mapping."""
    records = _lookup(doc, mapping.records or "")
    if isinstance(records, dict):
        return {normalise_header(k) for k in records}
    if isinstance(records, list) and records:
        return flatten_keys(records[0])
    return set()


def json_batch(doc: Any, mapping: Mapping) -> RawBatch:
    """The mapping's records of a JSON document as one batch."""
    cols, n = json_records(doc, mapping)
    arrays = {k: pa.array(v, pa.string()) for k, v in cols.items()}
    return RawBatch(arrays, pa.array(range(1, n + 1), pa.int64()))


def jsonl_first_record(prefix: bytes, encoding: str) -> dict[str, Any]:
    """The first JSON object among the first bytes' lines; DataError if none."""
    text = decode_prefix(prefix, encoding)
    # JSON Lines end in \n (or \r\n): str.splitlines would split at U+2028 inside a string
    for line in text.split("\n"):
        if line.strip():
            try:
                obj = json.loads(line, parse_float=str, parse_int=str)
            except (ValueError, RecursionError):
                continue
            if isinstance(obj, dict):
                return obj
    raise DataError("invalid_json", "no line of the first MiB is a JSON object")


def jsonl_batches(src: Any, prefix: bytes, mapping: Mapping) -> Iterator[RawBatch]:
    """The rows of a JSON Lines stream in batches, with the lines that are not objects."""
    stream = io.TextIOWrapper(io.BufferedReader(PrefixedReader(prefix, src)), encoding=mapping.encoding, newline=None)
    wanted = _record_columns(mapping)
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    bad: list[BadRecord] = []
    try:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line, parse_float=str, parse_int=str)
                if not isinstance(obj, dict):
                    raise ValueError("not an object")
            except ValueError as e:
                bad.append(BadRecord(number, "invalid_json", line.rstrip("\r\n"), f"not a JSON object: {e}"))
                continue
            except RecursionError:
                bad.append(BadRecord(number, "invalid_json", line[:200], "nested deeper than the reader goes"))
                continue
            rows.append(obj)
            lines.append(number)
            if len(rows) >= JSONL_BATCH_LINES:
                yield _jsonl_batch(rows, lines, wanted, bad)
                rows, lines, bad = [], [], []
    except UnicodeDecodeError as e:
        raise DataError("bad_encoding", f"the file is not valid {mapping.encoding}: {e.reason}") from e
    except (OSError, EOFError) as e:  # a gzip stream that ends early or is corrupt
        raise DataError("truncated", f"the file ends early or is corrupt: {e}") from e
    if rows or bad:
        yield _jsonl_batch(rows, lines, wanted, bad)


def _jsonl_batch(rows: list[dict[str, Any]], lines: list[int], wanted: list[str], bad: list[BadRecord]) -> RawBatch:
    cols = {normalise_header(c): pa.array([_text(_lookup(r, c)) for r in rows], pa.string()) for c in wanted}
    return RawBatch(cols, pa.array(lines, pa.int64()), bad)
