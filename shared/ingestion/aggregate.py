"""Folding a file's rows to its dataset's key (a mapping's ``[aggregate]``: daily delivery
lines summed into weekly rows), batch by batch in bounded memory: each batch is folded to
partial results, partials are folded again when they pile up, and the last fold turns them
into standard rows, sorted by key so that the same raw file always gives the same bytes."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from shared.ingestion.formats import Mapping

#: partial folds kept before they are folded together
MAX_PARTIALS = 64


class Folder:
    """Folds batches of standard rows to ``key`` with ``mapping.aggregate``'s functions."""

    def __init__(self, key: tuple[str, ...], mapping: Mapping, schema: pa.Schema) -> None:
        self.key, self.mapping, self.schema = key, mapping, schema
        self.partials: list[pa.Table] = []

    def add(self, table: pa.Table) -> None:
        self.partials.append(_fold(table, self.key, self.mapping))
        if len(self.partials) > MAX_PARTIALS:
            self.partials = [_refold(self.partials, self.key, self.mapping)]

    def finish(self) -> pa.Table:
        return _finish_fold(self.partials, self.key, self.mapping, self.schema)


_COMBINE = {"sum": "sum", "min": "min", "max": "max", "count": "sum"}


def _partial_ops(mapping: Mapping) -> list[tuple[str, str]]:
    """(column, op) pairs kept per group; a mean is kept as its sum and count."""
    ops: list[tuple[str, str]] = []
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
