"""The registry of sources and datasets: ``shared/sources.json``, read here (and by
``infra/main.bicep``, which loads the same file). One entry per source names its lake folder
(``raw/<source>/``), the dataset it feeds and the short name of its Azure resources; from it come
the source's function folder (``ingest_<source>``), azd service (``ingest-<source>``) and
function names. One entry per dataset states its facts: key column, date column (none for a
timeless dataset), region key, and whether a week's batch needs it. Row schemas are
:mod:`shared.ingestion.datasets`'."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

#: the registry's file (package data: the apps read it, and so does the deploy)
FILE = Path(__file__).with_name("sources.json")


@dataclass(frozen=True)
class Source:
    """A raw source: the lake folder ``raw/<name>/`` and its own ingest app."""

    name: str
    dataset: str
    short: str

    @property
    def folder(self) -> str:
        """The function folder (blueprint) of the source's app."""
        return f"ingest_{self.name}"

    @property
    def service(self) -> str:
        """The azd service (``azure.yaml``) that deploys the source's app."""
        return f"ingest-{self.name}"

    @property
    def functions(self) -> tuple[str, ...]:
        """The four functions of its folder: blob arrival, re-ingest route, its queue, its status."""
        return tuple(f"{self.folder}_{kind}" for kind in ("blob", "http", "queue", "request"))


@dataclass(frozen=True)
class Dataset:
    """A standard dataset's facts (its rows' schema is :mod:`shared.ingestion.datasets`')."""

    name: str
    #: the column whose distinct values a manifest's coverage lists
    key_column: str
    #: the column its weeks are read from; None: timeless, a file covers every week
    date_column: str | None
    #: the store master's key (store_id or zip_code) a region has the dataset by
    region_key: str | None
    #: whether a week's batch needs it
    required: bool

    @property
    def timeless(self) -> bool:
        return self.date_column is None


def _load() -> tuple[tuple[Source, ...], dict[str, Dataset]]:
    doc = json.loads(FILE.read_text(encoding="utf-8"))
    sources = tuple(Source(s["source"], s["dataset"], s["short"]) for s in doc["sources"])
    datasets = {
        d["dataset"]: Dataset(d["dataset"], d["key_column"], d["date_column"], d["region_key"], d["required"])
        for d in doc["datasets"]
    }
    unknown = [s.dataset for s in sources if s.dataset not in datasets]
    if unknown:
        raise ValueError(f"{FILE}: source(s) feed unknown dataset(s) {', '.join(unknown)}")
    return sources, datasets


#: every source, in the registry's order (the app registers their folders in it)
SOURCES, DATASETS = _load()
#: source name -> the source
BY_NAME: dict[str, Source] = {s.name: s for s in SOURCES}


def ingest_folders() -> tuple[str, ...]:
    """The function folders of the ingest apps, one per source."""
    return tuple(s.folder for s in SOURCES)


def required() -> tuple[str, ...]:
    """The datasets a week's batch needs."""
    return tuple(name for name, d in DATASETS.items() if d.required)
