"""Where a raw file's outputs live in the lake (the data contract's layout):

``raw/<source>/<path>`` -> ``curated/<dataset>/v1/<base>.csv`` and ``.manifest.json``,
``quarantine/<dataset>/v1/<base>.rejected.csv`` and ``.error.json``, where ``<base>`` is
``<path>`` without a trailing ``.gz`` and ``.csv``; ``curated/<dataset>/v1/<base>.claim.json``
names the one raw file those outputs belong to.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from shared.ingestion.datasets import SCHEMA_VERSION, SOURCES
from shared.lake import MAX_PATH_CHARS, MAX_SEGMENT_CHARS, check_path

#: the prefix of the lake writers' temporary names (``LocalLake._TMP``): every reader skips
#: such names, so no output may take it (a store master named ``.tmp-stores.csv``)
TEMPORARY_PREFIX = ".tmp-"
#: the room a writer's temporary name takes beyond its file's name (prefix, 32 hex, "-")
TEMPORARY_ROOM = len(TEMPORARY_PREFIX) + 33
#: the longest segment an output may have: it leaves the room for the writer's temporary name
MAX_OUTPUT_SEGMENT_CHARS = MAX_SEGMENT_CHARS - TEMPORARY_ROOM


class NameTooLong(ValueError):
    """A raw file whose own name, or whose outputs' names, exceed the lake's limits."""


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
    #: where the error record goes when this file's outputs are another raw file's
    #: (``output_collision``): named after the whole raw file name, so it overwrites nothing
    collision_error: str
    #: the claim naming the raw file that owns these outputs, created only if absent, so that
    #: of two raw files racing for one ``<base>`` exactly one writes (``output_collision``)
    claim: str


def outputs_for(raw_path: str) -> Outputs:
    """The output paths of ``raw/<source>/<path>``; ``ValueError`` for any other path, and
    :class:`NameTooLong` (a ValueError) when the path or an output exceeds the lake's limits."""
    try:
        check_path(raw_path)
    except ValueError as e:
        if len(raw_path) > MAX_PATH_CHARS or any(len(p) > MAX_SEGMENT_CHARS for p in raw_path.split("/")):
            raise NameTooLong(str(e)) from e
        raise
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
    base = _escaped(rel.removesuffix(".gz").removesuffix(".csv"))
    out = Outputs(
        raw=raw_path,
        source=source,
        dataset=dataset,
        curated=f"curated/{dataset}/v{SCHEMA_VERSION}/{base}.csv",
        manifest=f"curated/{dataset}/v{SCHEMA_VERSION}/{base}.manifest.json",
        rejected=f"quarantine/{dataset}/v{SCHEMA_VERSION}/{base}.rejected.csv",
        error=f"quarantine/{dataset}/v{SCHEMA_VERSION}/{base}.error.json",
        collision_error=f"quarantine/{dataset}/v{SCHEMA_VERSION}/{_escaped(rel)}.collision.error.json",
        claim=f"curated/{dataset}/v{SCHEMA_VERSION}/{base}.claim.json",
    )
    for path in (out.curated, out.manifest, out.rejected, out.error, out.collision_error, out.claim):
        longest = max(path.split("/"), key=len)
        if len(path) > MAX_PATH_CHARS or len(longest) > MAX_OUTPUT_SEGMENT_CHARS:
            raise NameTooLong(
                f"{raw_path[:60]}...: its output {path[:60]}... would be {len(path)} characters long with a "
                f"{len(longest)}-character name; the lake takes {MAX_PATH_CHARS} and "
                f"{MAX_OUTPUT_SEGMENT_CHARS}: shorten the raw file's name or folders"
            )
    return out


def _escaped(rel: str) -> str:
    """``rel`` with no segment that starts with the writers' temporary prefix (``.tmp-x`` ->
    ``_tmp-x``; a raw ``_tmp-x`` beside it is then an ``output_collision``)."""
    return "/".join("_" + seg[1:] if seg.startswith(TEMPORARY_PREFIX) else seg for seg in rel.split("/"))


def refused_record_path(raw_path: str) -> str:
    """Where the error record of a raw file whose path no output can be named after goes:
    named after the path's sha256, under its dataset when the source folder is known."""
    digest = hashlib.sha256(raw_path.encode("utf-8", "surrogatepass")).hexdigest()
    parts = raw_path.split("/")
    dataset = SOURCES.get(parts[1]) if len(parts) > 2 and parts[0] == "raw" else None
    folder = f"quarantine/{dataset}/v{SCHEMA_VERSION}" if dataset else "quarantine/_unknown_source"
    return f"{folder}/_refused/{digest}.error.json"
