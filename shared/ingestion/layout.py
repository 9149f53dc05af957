"""Where a raw file's outputs live in the lake (the data contract's layout):

``raw/<source>/<path>`` -> ``curated/<dataset>/v1/<base>.csv`` and ``.manifest.json``,
``quarantine/<dataset>/v1/<base>.rejected.csv`` and ``.error.json``, where ``<base>`` is
``<path>`` without a trailing ``.gz`` and ``.csv``.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.ingestion.datasets import SCHEMA_VERSION, SOURCES
from shared.lake import check_path


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
        collision_error=f"quarantine/{dataset}/v{SCHEMA_VERSION}/{rel}.collision.error.json",
    )
