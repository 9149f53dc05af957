"""Ingestion: one raw file in, its standard CSV, rejected rows, manifest or error out.

:func:`ingest` is the one service behind the blob triggers, the HTTP re-ingest routes and
the command line. Its promises:

- every row is accounted for: ``rows.read == rows.written + rows.rejected``;
- a file that cannot be read at all is quarantined with an ``error.json`` saying why, and
  the call returns normally (a data error is never worth a retry);
- a transient storage error raises :class:`TransientLakeError` after a few local retries, so
  that the host retries the trigger;
- outputs are atomic and idempotent: the same raw version (same ETag) with the same code and
  mapping leaves everything untouched; a new version replaces the outputs.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from shared import __version__, clock
from shared.ingestion.convert import (
    REJECT_SCHEMA,
    Context,
    Converter,
    FirstWins,
    KeyCounter,
    duplicate_rejects,
    key_hashes,
)
from shared.ingestion.datasets import SCHEMA_VERSION, SOURCES, spec
from shared.ingestion.formats import Mapping, load_mappings, normalise_header, path_fields, rank
from shared.ingestion.readers import (
    DataError,
    RawBatch,
    csv_batches,
    csv_header,
    flatten_keys,
    json_available,
    json_batch,
    jsonl_batches,
    jsonl_first_record,
    load_json,
    open_decoded,
    sniff_kind,
)
from shared.lake import HashingReader, HashingWriter, Lake, NotFoundError, TransientLakeError, check_path

log = logging.getLogger(__name__)

CODE_VERSION = f"forecastops-{__version__}"
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Outputs:
    """Where one raw file's outputs live."""

    raw: str
    source: str
    dataset: str
    curated: str
    manifest: str
    rejected: str
    error: str


def outputs_for(raw_path: str) -> Outputs:
    """The output paths of ``raw/<source>/<path>``; ``ValueError`` for any other path."""
    check_path(raw_path)
    parts = raw_path.split("/")
    if parts[0] != "raw" or len(parts) < 3 or parts[1] not in SOURCES:
        raise ValueError(
            f"{raw_path!r} is not a raw file: expected raw/<source>/<file> with source one of {', '.join(SOURCES)}"
        )
    source, dataset = parts[1], SOURCES[parts[1]]
    rel = "/".join(parts[2:])
    # "2026.csv" and "2026.csv.gz" -> "2026"; "stores.jsonl" -> "stores.jsonl". Two raw files
    # that would share outputs ("2026.csv" and "2026.csv.gz" side by side) are not allowed to
    # overwrite each other: the second is quarantined as an output_collision.
    base = rel.removesuffix(".gz").removesuffix(".csv")
    return Outputs(
        raw=raw_path,
        source=source,
        dataset=dataset,
        curated=f"curated/{dataset}/v{SCHEMA_VERSION}/{base}.csv",
        manifest=f"curated/{dataset}/v{SCHEMA_VERSION}/{base}.manifest.json",
        rejected=f"quarantine/{dataset}/v{SCHEMA_VERSION}/{base}.rejected.csv",
        error=f"quarantine/{dataset}/v{SCHEMA_VERSION}/{base}.error.json",
    )


def _read_json(lake: Lake, path: str) -> dict[str, Any] | None:
    try:
        return json.loads(lake.read_bytes(path))
    except NotFoundError:
        return None
    except ValueError:
        return None


def _dump(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=False, ensure_ascii=False) + "\n").encode()


class _CsvOut:
    """A CSV written through a lake writer, header unquoted, values quoted where needed."""

    def __init__(self, sink: Any, schema: pa.Schema) -> None:
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


class _Restart(Exception):
    """Pass one found repeated keys: discard its outputs and run the first-wins pass."""


def ingest(
    lake: Lake,
    raw_path: str,
    *,
    invocation_id: str | None = None,
    force: bool = False,
    retries: int = 3,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Ingest one raw file; return its manifest (or, if quarantined, its error record).

    Raises ``ValueError`` for a path that is not ``raw/<source>/...``, :class:`NotFoundError`
    when the raw file does not exist, and :class:`TransientLakeError` when storage keeps
    failing after ``retries`` attempts.
    """
    out = outputs_for(raw_path)
    invocation_id = invocation_id or uuid.uuid4().hex
    for attempt in range(1, retries + 1):
        try:
            return _ingest_once(lake, out, invocation_id, force, progress)
        except TransientLakeError as e:
            if attempt == retries:
                raise
            wait = min(2 ** (attempt - 1), 8)
            log.warning(
                "ingest %s: transient storage error (%s); attempt %d of %d in %ss",
                raw_path,
                e,
                attempt + 1,
                retries,
                wait,
            )
            time.sleep(wait)
    raise AssertionError("unreachable")


def _ingest_once(
    lake: Lake, out: Outputs, invocation_id: str, force: bool, progress: Progress | None
) -> dict[str, Any]:
    info = lake.stat(out.raw)
    mappings = load_mappings()
    previous = _read_json(lake, out.manifest) or _read_json(lake, out.error)
    if previous and previous.get("raw", {}).get("path") not in (None, out.raw):
        return _quarantine(
            lake,
            out,
            info.etag,
            invocation_id,
            clock.now_iso(),
            DataError(
                "output_collision",
                f"{out.raw} and {previous['raw']['path']} would write the same outputs "
                f"({out.curated}); rename one of them",
                other=previous["raw"]["path"],
            ),
            None,
            touch_outputs=False,
        )
    if not force and previous and _unchanged(previous, info.etag, mappings):
        log.info("ingest %s: unchanged (etag %s); outputs kept", out.raw, info.etag)
        return {**previous, "unchanged": True}

    started = clock.now_iso()
    t0 = time.perf_counter()
    fields = path_fields(out.raw)
    try:
        result = _run(lake, out, fields, mappings, progress, dedupe=None)
        if isinstance(result, _Restart):
            result = _run(lake, out, fields, mappings, progress, dedupe=result.args[0])
    except DataError as e:
        return _quarantine(lake, out, info.etag, invocation_id, started, e, getattr(e, "raw", None))
    stats, raw_meta, mapping, detected_by, outputs = result
    manifest = {
        "manifest_version": 1,
        "status": "ingested",
        "dataset": out.dataset,
        "schema_version": SCHEMA_VERSION,
        "raw": {**raw_meta, "path": out.raw},
        "format": {"id": mapping.id, "detected_by": detected_by, "mapping_sha256": mapping.sha256},
        "rows": stats,
        "outputs": outputs,
        "started_at": started,
        "finished_at": clock.now_iso(),
        "duration_s": round(time.perf_counter() - t0, 3),
        "code_version": CODE_VERSION,
        "invocation_id": invocation_id,
    }
    if not outputs.get("rejected"):
        lake.delete(out.rejected)
    lake.write_bytes(out.manifest, _dump(manifest))
    lake.delete(out.error)
    return manifest


def mappings_digest(mappings: dict[str, Mapping]) -> str:
    """One digest of every mapping file: a file quarantined for its format is retried when
    the mappings change (a new vendor layout onboarded)."""
    return hashlib.sha256("".join(sorted(m.sha256 for m in mappings.values())).encode()).hexdigest()


def _unchanged(previous: dict[str, Any], etag: str, mappings: dict[str, Mapping]) -> bool:
    if previous.get("raw", {}).get("etag") != etag or previous.get("code_version") != CODE_VERSION:
        return False
    fmt = previous.get("format") or {}
    if fmt.get("id") is None:  # quarantined before a format was chosen
        return previous.get("mappings_sha256") == mappings_digest(mappings)
    m = mappings.get(fmt["id"])
    return m is not None and m.sha256 == fmt.get("mapping_sha256")


def _choose(
    mappings: dict[str, Mapping], dataset: str, fields: dict[str, str], kind: str, available: set[str] | None
) -> tuple[Mapping, str]:
    mine = {k: m for k, m in mappings.items() if m.dataset == dataset}
    named = fields.get("format")
    if named is not None:
        m = mine.get(named)
        if m is None:
            raise DataError(
                "unknown_format",
                f"the path names format={named}, which is not a {dataset} format; known: {', '.join(sorted(mine))}",
                known=sorted(mine),
            )
        if m.reader != kind:
            raise DataError("format_mismatch", f"format {named} reads {m.reader}, and this file is {kind}")
        if available is not None:
            missing = [c for c in m.required_columns if normalise_header(c) not in available]
            if missing:
                raise DataError(
                    "format_mismatch",
                    f"the path names format={named}, and the file lacks its required column(s): {', '.join(missing)}",
                    missing=missing,
                )
        return m, "path"
    pool = [m for m in mine.values() if m.reader == kind and m.detect == "content"]
    ranked = rank(pool, available or set())
    fits = [c.mapping for c in ranked if not c.missing]
    if len(fits) == 1:
        return fits[0], "content"
    if not fits:
        closest = "; ".join(f"{c.mapping.id} lacks {', '.join(c.missing)}" for c in ranked[:3]) or "none"
        raise DataError(
            "no_matching_format",
            f"no {dataset} format fits this {kind} file (columns: {', '.join(sorted(available or [])) or 'none'}); "
            f"closest: {closest}. Add a mapping, or name one in the path (format=<id>)",
            columns=sorted(available or []),
            candidates={c.mapping.id: c.missing for c in ranked},
        )
    ids = [m.id for m in fits]
    raise DataError(
        "several_matching_formats",
        f"several {dataset} formats fit this file: {', '.join(ids)}; name one in the path (format=<id>)",
        candidates=ids,
    )


@contextlib.contextmanager
def _lazy_writer(lake: Lake, path: str) -> Iterator[Callable[[pa.Table], None]]:
    """Opens the quarantine file only when the first rejected row comes."""
    stack = contextlib.ExitStack()
    state: dict[str, Any] = {}

    def write(table: pa.Table) -> None:
        if not table.num_rows:
            return
        if "csv" not in state:
            state["csv"] = _CsvOut(stack.enter_context(lake.writer(path)), REJECT_SCHEMA)
        state["csv"].write(table)

    with stack:
        yield write
        if "csv" in state:
            state["result"] = state["csv"].close()
    write.result = state.get("result")  # type: ignore[attr-defined]


def _run(
    lake: Lake,
    out: Outputs,
    fields: dict[str, str],
    mappings: dict[str, Mapping],
    progress: Progress | None,
    dedupe: np.ndarray | None,
) -> Any:
    ds = spec(out.dataset)
    with lake.open(out.raw) as (stream, info):
        hashing = HashingReader(stream)
        raw_meta: dict[str, Any] = {"etag": info.etag}
        try:
            src, prefix, compression = open_decoded(hashing)
            raw_meta["compression"] = compression
            kind = sniff_kind(prefix)
            batches, mapping, detected_by, document = _open_batches(src, prefix, kind, out, fields, mappings)
            conv = Converter(mapping, Context(fields, document))
            # a key column the mapping fills with one value per file (a constant, a path field)
            # cannot tell rows apart: leave it out of the hash
            hash_key = (
                tuple(k for k in ds.key if mapping.columns[k].const is None and mapping.columns[k].field is None)
                or ds.key
            )
            counter = KeyCounter() if (dedupe is None and not mapping.aggregate) else None
            first_wins = FirstWins(dedupe, hash_key) if dedupe is not None else None
            stats = {"read": 0, "written": 0, "rejected": 0, "output": 0, "rejected_by_rule": {}}
            partials: list[pa.Table] = []
            with lake.writer(out.curated) as sink, _lazy_writer(lake, out.rejected) as write_rejects:
                csv_out = _CsvOut(sink, conv.schema)
                for batch in batches:
                    try:
                        res = conv.convert(batch)
                    except pa.ArrowException as e:
                        # a value no rule foresaw: quarantine the file, never crash (a crash
                        # would make the host retry a bad file, and lose its good rows anyway)
                        raise DataError("unconvertible_value", f"a value could not be converted: {e}") from e
                    good, rejects = res.good, res.rejects
                    rejected = res.rejected_rows
                    _merge(stats["rejected_by_rule"], res.per_rule)
                    if first_wins is not None and good.num_rows:
                        good_lines = res.kept_lines
                        dup = first_wins.duplicates(good)
                        if dup.any():
                            rejects = pa.concat_tables([rejects, duplicate_rejects(good, dup, good_lines, ds.key)])
                            rejected += int(dup.sum())
                            _merge(stats["rejected_by_rule"], {"duplicate_key": int(dup.sum())})
                            good = good.filter(pa.array(~dup))
                    if counter is not None and good.num_rows:
                        counter.add(key_hashes(good, hash_key))
                    stats["read"] += res.rows_read
                    stats["rejected"] += rejected
                    stats["written"] += good.num_rows
                    if mapping.aggregate:
                        partials.append(_fold(good, ds.key, mapping))
                        if len(partials) > 64:
                            partials = [_refold(partials, ds.key, mapping)]
                    else:
                        csv_out.write(good)
                    write_rejects(rejects)
                    if progress:
                        progress(stats["read"], hashing.bytes)
                if counter is not None:
                    repeated = counter.repeated()
                    counter.close()
                    if len(repeated):
                        raise _Restart(repeated)
                if mapping.aggregate:
                    final = _finish_fold(partials, ds.key, mapping, conv.schema)
                    csv_out.write(final)
                curated = csv_out.close()
            rejected_out = write_rejects.result  # type: ignore[attr-defined]
        except _Restart as r:
            return r
        except DataError as e:
            e.raw = _drain(hashing, raw_meta)  # type: ignore[attr-defined]
            raise
        _drain(hashing, raw_meta)
    stats["output"] = curated.pop("rows")
    outputs: dict[str, Any] = {"curated": {"path": out.curated, **curated}, "rejected": None}
    if rejected_out:
        rejected_out.pop("rows")
        outputs["rejected"] = {"path": out.rejected, **rejected_out}
    stats["rejected_by_rule"] = dict(sorted(stats["rejected_by_rule"].items()))
    assert stats["read"] == stats["written"] + stats["rejected"], stats
    return stats, raw_meta, mapping, detected_by, outputs


def _drain(hashing: HashingReader, raw_meta: dict[str, Any]) -> dict[str, Any]:
    """Read the raw stream to its end so that sha256 and bytes describe the whole file."""
    while hashing.read(4 * 1024 * 1024):
        pass
    raw_meta["sha256"] = hashing.sha256.hexdigest()
    raw_meta["bytes"] = hashing.bytes
    return raw_meta


def _open_batches(
    src: Any, prefix: bytes, kind: str, out: Outputs, fields: dict[str, str], mappings: dict[str, Mapping]
) -> tuple[Iterator[RawBatch], Mapping, str, Any]:
    named = mappings.get(fields.get("format", ""))
    encoding = named.encoding if named else "utf-8"
    if kind == "csv":
        delimiter = named.delimiter if named else ","
        not_utf8: DataError | None = None
        try:
            header = csv_header(prefix, encoding, delimiter)
        except DataError as e:
            if named is not None or e.reason != "bad_encoding":
                raise
            # not UTF-8: read the header leniently only to find the format; the format's own
            # declared encoding then decides, strictly, whether the file can be read
            not_utf8, header = e, csv_header(prefix, "latin-1", delimiter)
        available = {normalise_header(h) for h in header}
        try:
            mapping, how = _choose(mappings, out.dataset, fields, kind, available)
        except DataError:
            if not_utf8 is not None:
                raise not_utf8 from None  # the encoding, not the columns, is what is wrong
            raise
        if (mapping.encoding, mapping.delimiter) != (encoding, delimiter):
            header = csv_header(prefix, mapping.encoding, mapping.delimiter)
        return csv_batches(src, prefix, mapping, header), mapping, how, None
    if kind == "json-or-jsonl":
        # one object on one line: a JSON document if a JSON format fits it, else one record
        doc = load_json(src, prefix, encoding)
        pool = [m for m in mappings.values() if m.dataset == out.dataset and m.reader == "json"]
        if any(not rank([m], json_available(doc, m))[0].missing for m in pool) or not isinstance(doc, dict):
            kind, src, prefix = "json", None, prefix
        else:
            data = json.dumps(doc).encode()
            return _open_batches(io.BytesIO(b""), data, "jsonl", out, fields, mappings)
    else:
        doc = load_json(src, prefix, encoding) if kind == "json" else None
    if kind == "jsonl":
        available = flatten_keys(jsonl_first_record(prefix, encoding))
        mapping, how = _choose(mappings, out.dataset, fields, kind, available)
        return jsonl_batches(src, prefix, mapping), mapping, how, None
    pool = {k: m for k, m in mappings.items() if m.dataset == out.dataset and m.reader == "json"}
    available = set().union(*(json_available(doc, m) for m in pool.values())) if pool else set()
    mapping, how = _choose(mappings, out.dataset, fields, kind, available)
    return iter([json_batch(doc, mapping)]), mapping, how, doc


def _merge(into: dict[str, int], more: dict[str, int]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0) + v


_COMBINE = {"sum": "sum", "min": "min", "max": "max", "count": "sum"}


def _partial_ops(mapping: Mapping) -> list[tuple[str, str]]:
    """(column, op) pairs kept per group; a mean is kept as its sum and count."""
    ops = []
    for col, how in mapping.aggregate.items():
        ops += [(col, "sum"), (col, "count")] if how == "mean" else [(col, how)]
    return ops


def _fold(table: pa.Table, key: tuple[str, ...], mapping: Mapping) -> pa.Table:
    """One batch's rows folded to the key: columns ``<key...>, <col>:<op>...``."""
    return _group(table, key, [(c, op, op) for c, op in _partial_ops(mapping)])


def _refold(partials: list[pa.Table], key: tuple[str, ...], mapping: Mapping) -> pa.Table:
    """Partial folds combined into one (sums of sums, mins of mins, sums of counts)."""
    ops = [(f"{c}:{op}", _COMBINE[op], op) for c, op in _partial_ops(mapping)]
    return _group(pa.concat_tables(partials), key, ops)


def _group(table: pa.Table, key: tuple[str, ...], ops: list[tuple[str, str, str]]) -> pa.Table:
    grouped = table.group_by(list(key), use_threads=False).aggregate([(col, fn) for col, fn, _ in ops])
    # pyarrow names each aggregate "<column>_<function>"; name it "<standard column>:<op>"
    names = {f"{col}_{fn}": f"{col.split(':')[0]}:{op}" for col, fn, op in ops}
    return grouped.rename_columns([names.get(n, n) for n in grouped.column_names])


def _finish_fold(partials: list[pa.Table], key: tuple[str, ...], mapping: Mapping, schema: pa.Schema) -> pa.Table:
    if not partials:
        return schema.empty_table()
    folded = _refold(partials, key, mapping)
    cols = {}
    for field in schema:
        name = field.name
        if name in key:
            cols[name] = folded.column(name)
        elif name == "source":
            cols[name] = pa.repeat(pa.scalar(mapping.id), folded.num_rows)
        elif mapping.aggregate[name] == "mean":
            total = folded.column(f"{name}:sum").cast(pa.float64())
            cols[name] = pc.divide(total, folded.column(f"{name}:count").cast(pa.float64())).cast(field.type)
        else:
            cols[name] = folded.column(f"{name}:{mapping.aggregate[name]}").cast(field.type)
    table = pa.table(cols, schema=schema)
    # sorted by key so that the same raw file always gives the same bytes
    return table.sort_by([(k, "ascending") for k in key])


def _quarantine(
    lake: Lake,
    out: Outputs,
    etag: str,
    invocation_id: str,
    started: str,
    error: DataError,
    raw_meta: dict[str, Any] | None,
    touch_outputs: bool = True,
) -> dict[str, Any]:
    record = {
        "manifest_version": 1,
        "status": "quarantined",
        "dataset": out.dataset,
        "schema_version": SCHEMA_VERSION,
        "raw": {"path": out.raw, "etag": etag, **(raw_meta or {})},
        "format": None,
        "error": {"reason": error.reason, "message": error.message, "details": error.details},
        "mappings_sha256": mappings_digest(load_mappings()),
        "started_at": started,
        "finished_at": clock.now_iso(),
        "code_version": CODE_VERSION,
        "invocation_id": invocation_id,
    }
    log.warning("ingest %s: quarantined (%s): %s", out.raw, error.reason, error.message)
    if touch_outputs:
        # outputs of an earlier version of this raw file no longer describe it
        for stale in (out.curated, out.manifest, out.rejected):
            lake.delete(stale)
        lake.write_bytes(out.error, _dump(record))
    return record
