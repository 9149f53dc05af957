"""Which mapping reads a raw file, and its records as batches of raw text.

A file's format is named in its path (``format=<id>``) or found from its content: the one
mapping of the file's dataset whose required raw columns (or JSON paths) are all present.
None or several candidates quarantine the file with a reason that names them.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any, BinaryIO

from shared.ingestion.formats import Mapping, normalise_header, rank
from shared.ingestion.readers import (
    DataError,
    RawBatch,
    check_unique_columns,
    csv_batches,
    csv_header,
    flatten_keys,
    json_available,
    json_batch,
    jsonl_batches,
    jsonl_first_record,
    load_json,
    sample,
)

#: how many of a file's own column names a "no format fits" message shows
SHOWN_COLUMNS = 12


def _columns(available: set[str] | None) -> str:
    """The file's columns as the message shows them: a few, each a short escaped sample."""
    names = sorted(available or [])
    shown = ", ".join(sample(n, 40) for n in names[:SHOWN_COLUMNS]) or "none"
    return shown + (f" and {len(names) - SHOWN_COLUMNS} more" if len(names) > SHOWN_COLUMNS else "")


def choose(
    mappings: dict[str, Mapping], dataset: str, fields: dict[str, str], kind: str, available: set[str] | None
) -> tuple[Mapping, str]:
    """The mapping for a file of ``kind`` whose raw columns are ``available``, and how it was
    found; :class:`DataError` when the path names a wrong one, or none or several fit."""
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
            f"no {dataset} format fits this {kind} file (columns: {_columns(available)}); "
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


def open_batches(
    src: BinaryIO | None, prefix: bytes, kind: str, dataset: str, fields: dict[str, str], mappings: dict[str, Mapping]
) -> tuple[Iterator[RawBatch], Mapping, str, Any]:
    """The file's batches, its mapping, how the mapping was found (``path`` or ``content``)
    and, for a JSON document, the document (whose other paths a mapping may read)."""
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
            mapping, how = choose(mappings, dataset, fields, kind, available)
        except DataError:
            if not_utf8 is not None:
                raise not_utf8 from None  # the encoding, not the columns, is what is wrong
            raise
        if (mapping.encoding, mapping.delimiter) != (encoding, delimiter):
            header = csv_header(prefix, mapping.encoding, mapping.delimiter)
        check_unique_columns(header, mapping)
        return csv_batches(src, prefix, mapping, header), mapping, how, None
    if kind == "json-or-jsonl":
        # one object on one line: a JSON document if a JSON format fits it, else one record
        doc = load_json(src, prefix, encoding)
        pool = [m for m in mappings.values() if m.dataset == dataset and m.reader == "json"]
        if any(not rank([m], json_available(doc, m))[0].missing for m in pool) or not isinstance(doc, dict):
            kind, src, prefix = "json", None, prefix
        else:
            data = json.dumps(doc).encode()
            return open_batches(io.BytesIO(b""), data, "jsonl", dataset, fields, mappings)
    else:
        doc = load_json(src, prefix, encoding) if kind == "json" else None
    if kind == "jsonl":
        available = flatten_keys(jsonl_first_record(prefix, encoding))
        mapping, how = choose(mappings, dataset, fields, kind, available)
        return jsonl_batches(src, prefix, mapping), mapping, how, None
    json_pool = [m for m in mappings.values() if m.dataset == dataset and m.reader == "json"]
    available = set().union(*(json_available(doc, m) for m in json_pool)) if json_pool else set()
    mapping, how = choose(mappings, dataset, fields, kind, available)
    return iter([json_batch(doc, mapping)]), mapping, how, doc
