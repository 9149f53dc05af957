"""Duplicate keys in a file, found in bounded memory: the first row with a key wins.

Pass one counts 64-bit hashes of every row's key (:class:`KeyCounter`: a million in memory,
then 256 sorted partitions on disk), so a file of any size costs flat memory. Only when a
hash repeats does a second, exact pass (:class:`FirstWins`) keep each key's first row and
reject the others as ``duplicate_key``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shared.ingestion.convert import REJECT_SCHEMA

_MULT = np.uint64(0x100000001B3)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _powers(n: int) -> np.ndarray:
    p = np.full(max(n, 1), _MULT, dtype=np.uint64)
    p[0] = 1
    return np.cumprod(p, dtype=np.uint64)


def _hash_strings(arr: pa.Array) -> np.ndarray:
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    n = len(arr)
    if n == 0:
        return np.zeros(0, np.uint64)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset : arr.offset + n + 1]
    lengths = np.diff(offsets)
    start, end = int(offsets[0]), int(offsets[-1])
    h = lengths.astype(np.uint64) * _GOLDEN
    if end > start:
        data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[start:end].astype(np.uint64)
        rel = offsets[:-1] - start
        pos = np.arange(end - start) - np.repeat(rel, lengths)
        contrib = data * _powers(int(lengths.max()))[pos]
        nz = lengths > 0
        h[nz] ^= np.add.reduceat(contrib, rel[nz])
    return h


def _mix(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def key_hashes(table: pa.Table, key: tuple[str, ...]) -> np.ndarray:
    """A 64-bit hash of each row's key (collisions are resolved exactly by the caller)."""
    h = np.zeros(table.num_rows, np.uint64)
    for name in key:
        col = table.column(name).combine_chunks()
        if pa.types.is_string(col.type):
            part = _hash_strings(col)
        else:
            if pa.types.is_date32(col.type):
                col = col.cast(pa.int32())
            part = col.cast(pa.int64()).to_numpy(zero_copy_only=False).astype(np.uint64)
        h = _mix(h * _MULT ^ part)
    return h


class KeyCounter:
    """Counts key hashes over a whole file in bounded memory.

    Up to ``budget`` hashes stay in memory; beyond that they are spilled to temporary files
    partitioned by their top bits, so that finding the repeated ones needs one partition in
    memory at a time, however large the file.
    """

    PARTITIONS = 256
    _SHIFT = np.uint64(56)

    def __init__(self, budget: int = 1_000_000) -> None:
        self.budget = budget
        self._held: list[np.ndarray] = []
        self._count = 0
        self._dir: str | None = None

    def add(self, hashes: np.ndarray) -> None:
        self._held.append(hashes)
        self._count += len(hashes)
        if self._count >= self.budget:
            self._spill()

    def _spill(self) -> None:
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="forecastops-keys-")
        allh = np.concatenate(self._held) if self._held else np.zeros(0, np.uint64)
        self._held, self._count = [], 0
        allh.sort()
        # sorted, each partition (the top byte) is one slice; no temporary array of the size of allh
        starts = np.arange(self.PARTITIONS, dtype=np.uint64) << self._SHIFT
        bounds = np.append(np.searchsorted(allh, starts), len(allh))
        for p in range(self.PARTITIONS):
            lo, hi = int(bounds[p]), int(bounds[p + 1])
            if hi > lo:
                with open(os.path.join(self._dir, f"{p}.u64"), "ab") as f:
                    allh[lo:hi].tofile(f)

    def repeated(self) -> np.ndarray:
        """Hashes seen more than once."""
        if self._dir is None:
            allh = np.concatenate(self._held) if self._held else np.zeros(0, np.uint64)
            return _repeated(allh)
        self._spill()
        found = []
        for p in range(self.PARTITIONS):
            path = os.path.join(self._dir, f"{p}.u64")
            if os.path.exists(path):
                found.append(_repeated(np.fromfile(path, np.uint64)))
        return np.concatenate(found) if found else np.zeros(0, np.uint64)

    def close(self) -> None:
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def _repeated(h: np.ndarray) -> np.ndarray:
    """Values that occur more than once (sorts ``h`` in place: no copies of a large array)."""
    if len(h) < 2:
        return np.zeros(0, np.uint64)
    h.sort()
    same = h[1:] == h[:-1]
    return np.unique(h[1:][same])


class FirstWins:
    """Second pass over a file whose keys repeat: keeps each key's first row, flags the rest."""

    def __init__(self, repeated: np.ndarray, key: tuple[str, ...]) -> None:
        self.repeated = np.sort(repeated)
        self.key = key
        self.seen: set[tuple[Any, ...]] = set()

    def duplicates(self, table: pa.Table) -> np.ndarray:
        mask = np.zeros(table.num_rows, bool)
        if not len(self.repeated) or not table.num_rows:
            return mask
        h = key_hashes(table, self.key)
        cand = np.flatnonzero(np.isin(h, self.repeated))
        if not len(cand):
            return mask
        sub = table.select(list(self.key)).take(pa.array(cand))
        for i, key in zip(cand, zip(*(sub.column(k).to_pylist() for k in self.key), strict=True), strict=True):
            if key in self.seen:
                mask[i] = True
            else:
                self.seen.add(key)
        return mask


def duplicate_rejects(table: pa.Table, mask: np.ndarray, lines: pa.Array, key: tuple[str, ...]) -> pa.Table:
    """The reject rows of the rows ``mask`` marks as duplicates of an earlier key."""
    idx = pa.array(np.flatnonzero(mask))
    k = len(idx)
    keys = table.select(list(key)).take(idx)
    text = pc.binary_join_element_wise(*[keys.column(c).cast(pa.string()) for c in key], "|")
    return pa.table(
        [
            pc.take(lines, idx),
            pa.repeat(pa.scalar("|".join(key)), k),
            pa.repeat(pa.scalar("duplicate_key"), k),
            text,
            pa.repeat(pa.scalar("the same key appears on an earlier line of this file; the first wins"), k),
        ],
        schema=REJECT_SCHEMA,
    )
