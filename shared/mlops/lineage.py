"""Lineage both ways, at a glance (issue 23): from a forecast to the model version that served it,
the run that trained it, the data version it trained on and the code that trained it; from a
curated file to the data versions that hold it, the runs that trained on those, the models they
registered and the weeks whose forecasts those models served.

:func:`lineage` takes one *thing*:

- a forecast: ``forecast:<W>/<group>`` (``/<store_id>/<sku>`` for one series), or the path of a
  published file, ``curated/forecasts/v1/week=<W>/<group>.csv``;
- a model version: ``model:<group>:<version>``;
- a data version: ``data:<version>`` (of ``forecastops-curated``), ``data:<name>:<version>`` or
  ``azureml:<name>:<version>``;
- a curated file: ``curated/<dataset>/v1/<path>.csv``;
- a run: ``run:<run_id>``.

It reads only the records it needs: the week's batch summaries (``batches/week=<W>/summary*.json``),
the forecast file of one group (only for one store and SKU), a model card, a data version's record
and its run links, a curated file's manifest, the registry's listing by group (to find the models
a run or a data version gave), and the summaries of the weeks from a model's data week on (to find
the weeks it served). It never reads every forecast row. The same records exist on both backends:
the lake registry or Azure ML's, and the data versions' lake records (both catalogs keep them).

A thing that is unknown or not a thing at all is :class:`LineageNotFound`, whose message is one
line that names no file system path (the route answers 404, the command line exits 2).
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from typing import Any, Protocol

from shared.lake import Lake, NotFoundError, check_path
from shared.mlops.batch import DATA_ASSET, check_week
from shared.mlops.cards import NAME_PATTERN, ModelCard
from shared.mlops.data_assets import DataCatalog, DataCatalogError, DataVersion, LakeDataCatalog, version_key
from shared.mlops.registry import ModelNotFound, Registry, RegistryError
from shared.weeks import layout

__all__ = ["LineageNotFound", "Records", "answer", "lineage"]

#: the longest thing looked up: a lake path's limit and a little room for its prefix
MAX_THING_CHARS = 1100
_GROUP = NAME_PATTERN.strip("^$")
_FORECAST = re.compile(rf"^forecast:(\d{{4}}-\d{{2}}-\d{{2}})/({_GROUP})(?:/([^/]+)/([^/]+))?$")
_FORECAST_FILE = re.compile(rf"^curated/forecasts/v1/week=(\d{{4}}-\d{{2}}-\d{{2}})/({_GROUP})\.csv$")
_MODEL = re.compile(rf"^model:({_GROUP}):([1-9][0-9]{{0,8}})$")
_DATA = re.compile(r"^(?:data|azureml):(?:([A-Za-z0-9][A-Za-z0-9_-]{0,254}):)?([A-Za-z0-9][A-Za-z0-9_.-]{0,254})$")
_RUN = re.compile(r"^run:([A-Za-z0-9][A-Za-z0-9_.-]{0,254})$")
_CURATED = re.compile(r"^curated/[a-z0-9_]+/v[0-9]+/.+\.csv$")
_WEEK_FOLDER = re.compile(r"^week=(\d{4}-\d{2}-\d{2})$")
_SUMMARY = re.compile(r"^summary(-stale-[0-9a-f]+)?\.json$")


class LineageNotFound(LookupError):
    """The thing is unknown, or not a thing lineage answers; the message is one line."""


class Records(Protocol):
    """What lineage reads: the lake, the model registry and the data catalog (a batch
    :class:`~shared.mlops.context.Context` has them)."""

    @property
    def lake(self) -> Lake:
        """The lake: summaries, manifests, forecasts."""

    @property
    def registry(self) -> Registry:
        """The model registry: the cards."""

    @property
    def data(self) -> DataCatalog:
        """The data catalog: data versions and their run links."""


@dataclass(frozen=True)
class Sources:
    """The three record stores, for a caller that has no batch context (the route, the CLI)."""

    lake: Lake
    registry: Registry
    data: DataCatalog


def answer(ctx: Records, thing: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    """The route's answer: 200 with :func:`lineage`, 404 ``not_found`` with its one line."""
    try:
        return 200, lineage(ctx, thing), {}
    except LineageNotFound as e:
        return 404, {"error": "not_found", "message": str(e)}, {}


def lineage(ctx: Records, thing: str) -> dict[str, Any]:
    """``thing``'s lineage: ``{"thing", "kind", "upstream", "downstream", "reads"}``, JSON-able
    (see the module's docstring for the things), and ``problems`` when a record it read does not
    (skipped: the rest is answered); :class:`LineageNotFound` when it is unknown."""
    thing = _checked(thing)
    walk = _Walk(ctx)
    if m := _FORECAST.match(thing) or _FORECAST_FILE.match(thing):
        groups = m.groups()
        store, sku = (groups[2], groups[3]) if len(groups) == 4 else (None, None)
        up, down = walk.forecast(_week(groups[0], thing), groups[1], store, sku), {}
        kind = "forecast"
    elif m := _MODEL.match(thing):
        card = walk.card(m.group(1), int(m.group(2)), thing)
        up, down, kind = walk.model_upstream(card), {"weeks_served": walk.weeks_served([card])}, "model"
    elif m := _DATA.match(thing):
        name = m.group(1) or DATA_ASSET
        version = walk.data_version(name, m.group(2))
        if version is None:
            raise LineageNotFound(f"{_shown(thing)}: no data version {m.group(2)} of {name}")
        up, down, kind = walk.data_upstream(version), walk.from_versions([version]), "data"
    elif m := _RUN.match(thing):
        up, down, kind = walk.run(m.group(1), thing)
    elif _CURATED.match(thing):
        up, down, kind = walk.curated(thing)
    else:
        raise LineageNotFound(
            f"{_shown(thing)} is not a thing lineage knows: forecast:<week>/<group>[/<store>/<sku>], "
            "model:<group>:<version>, data:<version>, run:<run_id>, or a curated/... .csv path"
        )
    found = {"thing": thing, "kind": kind, "upstream": up, "downstream": down, "reads": walk.reads}
    if walk.problems:
        found["problems"] = walk.problems
    return found


def _checked(thing: Any) -> str:
    if not isinstance(thing, str) or not thing.strip():
        raise LineageNotFound("no thing given: forecast:<week>/<group>, model:<group>:<version>, data:<version>...")
    if len(thing) > MAX_THING_CHARS:
        raise LineageNotFound(f"a thing of {len(thing)} characters is not one (at most {MAX_THING_CHARS})")
    if any(ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF for c in thing):
        raise LineageNotFound(f"{_shown(thing)} holds a control character: not a thing")
    thing = thing.strip()
    if "/" in thing and not thing.startswith(("forecast:", "model:", "data:", "azureml:", "run:")):
        try:
            check_path(thing)
        except ValueError:
            raise LineageNotFound(f"{_shown(thing)} is not a lake path") from None
    return thing


def _shown(thing: str) -> str:
    return repr(thing[:80] + ("..." if len(thing) > 80 else ""))


def _week(week: str, thing: str) -> str:
    try:
        return check_week(week)
    except ValueError as e:
        raise LineageNotFound(f"{_shown(thing)}: {e}") from None


class _Walk:
    """One lineage question: its reads, counted and named, and the records it read once."""

    def __init__(self, ctx: Records) -> None:
        self.ctx = ctx
        self.reads: list[str] = []
        self.problems: list[str] = []
        self._summaries: dict[str, list[dict[str, Any]]] = {}
        self._listed: dict[str, list[ModelCard]] = {}

    # reading ------------------------------------------------------------------------------------
    def _json(self, path: str) -> dict[str, Any] | None:
        self.reads.append(path)
        try:
            doc = json.loads(self.ctx.lake.read_bytes(path))
        except (NotFoundError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def summaries(self, week: str) -> list[dict[str, Any]]:
        """The week's batch summaries (the week's own, then its staleness retrains'), read once."""
        if week not in self._summaries:
            folder = layout.week_path(week)
            self.reads.append(f"{folder}/ (names)")
            names = [n for n in self.ctx.lake.children(folder) if _SUMMARY.match(n)]
            found = [
                s for n in sorted(names, key=lambda n: (n != "summary.json", n)) if (s := self._json(f"{folder}/{n}"))
            ]
            self._summaries[week] = found
        return self._summaries[week]

    def card(self, group: str, version: int, thing: str) -> ModelCard:
        """One model version's card; :class:`LineageNotFound` when the registry has none."""
        self.reads.append(f"registry: {group} version {version}")
        try:
            return self.ctx.registry.get(group, version)
        except (ModelNotFound, RegistryError):
            raise LineageNotFound(f"{_shown(thing)}: the registry has no version {version} of {group}") from None

    def cards(self) -> list[ModelCard]:
        """Every registered version, by group (the registry's listing by group), read once."""
        if not self._listed:
            self.reads.append("registry: names, and each name's versions")
            for name in self.ctx.registry.names():
                if re.match(NAME_PATTERN, name):
                    self._listed[name] = self.ctx.registry.versions(name)
        return [c for cards in self._listed.values() for c in cards]

    def data_version(self, name: str, version: str) -> DataVersion | None:
        """A data version's record; None when the catalog does not know it."""
        self.reads.append(layout.data_record(name, version))
        try:
            return self.ctx.data.get(name, version)
        except (DataCatalogError, ValueError):
            return None

    # upstream -----------------------------------------------------------------------------------
    def forecast(self, week: str, group: str, store: str | None, sku: str | None) -> dict[str, Any]:
        """A published forecast back to what served it (the week's summary says which version)."""
        path = f"curated/forecasts/v1/week={week}/{group}.csv"
        line, summary = next(
            ((lines[group], s) for s in self.summaries(week) if group in (lines := _lines(s))), (None, None)
        )
        rows = self._rows(path, store, sku) if (store or line is None) else None
        if line is None and not rows:
            raise LineageNotFound(f"no forecasts of {group} for the week of {week}")
        if store and not rows:
            raise LineageNotFound(f"no forecast of store {store!r} and sku {sku!r} in {group} for the week of {week}")
        up: dict[str, Any] = {"week": week, "group": group, "forecasts": path}
        source, version = (line or {}).get("source"), (line or {}).get("scored_with")
        if line is None and rows:
            source, version = rows[0].get("source") or "production", _int(rows[0].get("model_version"))
        up |= {"source": source, "served_by": (line or {}).get("served_by") or group}
        if line and line.get("fallback_why"):
            up["fallback_why"] = line["fallback_why"]
        if rows is not None:
            up["rows"] = rows
        if summary is not None:
            up |= {"score_run": summary.get("score_run"), "batch_data": summary.get("data")}
        if version is None:
            up["model"] = None  # a baseline served it: no registry version
            return up
        card = self.card(str(up["served_by"]), version, f"model:{up['served_by']}:{version}")
        up["model"] = self.model_upstream(card)
        return up

    def _rows(self, path: str, store: str | None, sku: str | None) -> list[dict[str, str]]:
        """The rows of one published file for one series (or its first row when none is asked)."""
        self.reads.append(path)
        try:
            text = self.ctx.lake.read_bytes(path).decode("utf-8", "replace")
        except NotFoundError:
            return []
        reader = csv.DictReader(io.StringIO(text))
        if store is None:
            return [row for row, _ in zip(reader, range(1), strict=False)]
        return [r for r in reader if r.get("store_id") == store and r.get("sku") == sku]

    def model_upstream(self, card: ModelCard) -> dict[str, Any]:
        """model version -> training run -> data version -> code version."""
        reference = card.data_versions.get("curated", "")
        data = None
        if m := re.match(r"^azureml:([^:]+):(.+)$", reference):
            version = self.data_version(m.group(1), m.group(2))
            data = {"reference": reference, "known": version is not None}
            if version is not None:
                data |= {
                    "week": version.week,
                    "content_hash": version.content_hash,
                    "files": len(version.files),
                    "pinned": version.pinned,
                }
        return {
            "model": {"name": card.name, "version": card.version, "stage": card.stage, "mape": card.metrics.mape},
            "decision": card.decision.reason if card.decision else None,
            "training_run": card.run_id,
            "trained_at": card.trained_at,
            "data_version": data,
            "inputs_fingerprint": card.data_versions.get("inputs"),
            "code_version": card.code.version if card.code else None,
            "code_components": card.code.components if card.code else None,
        }

    def data_upstream(self, version: DataVersion) -> dict[str, Any]:
        """A data version: its week, hash and files (path -> sha256)."""
        return {
            "data_version": version.reference,
            "week": version.week,
            "content_hash": version.content_hash,
            "created_at": version.created_at,
            # pinned: it reads exactly these bytes (the pinned store); a record from before
            # the pinned store names the live curated folder, which later ingests change
            "pinned": version.pinned,
            "path": version.path,
            "files": version.files,
        }

    def curated(self, path: str) -> tuple[dict[str, Any], dict[str, Any], str]:
        """A curated file: its manifest and raw file; the versions holding it and what came of them."""
        if path.startswith("curated/forecasts/"):
            raise LineageNotFound(f"{_shown(path)} is not a published forecasts file (week=<W>/<group>.csv)")
        manifest = self._json(path[: -len(".csv")] + ".manifest.json")
        curated = ((manifest or {}).get("outputs") or {}).get("curated") or {}
        if manifest is None or curated.get("path") != path:
            raise LineageNotFound(f"{_shown(path)} is not an ingested curated file (no manifest names it)")
        raw = manifest.get("raw") or {}
        up = {
            "file": path,
            "sha256": curated.get("sha256"),
            "raw": {"path": raw.get("path"), "sha256": raw.get("sha256"), "etag": raw.get("etag")},
            "manifest": path[: -len(".csv")] + ".manifest.json",
            "ingested_at": manifest.get("finished_at"),
            "format": (manifest.get("format") or {}).get("id"),
            "code_version": manifest.get("code_version"),
        }
        self.reads.append("data versions: every record (which hold this file)")
        versions = self.ctx.data.versions_with_file(path)
        down = self.from_versions(versions, path, curated.get("sha256"))
        return up, down, "curated"

    def run(self, run_id: str, thing: str) -> tuple[dict[str, Any], dict[str, Any], str]:
        """A run: the data versions it used (their run links) and the models it registered."""
        links = self._links_of(run_id)
        models = [c for c in self.cards() if c.run_id == run_id]
        if not links and not models:
            raise LineageNotFound(f"{_shown(thing)}: no data version or model names run {run_id}")
        kinds = sorted({kind for _, kind in links})
        pairs = sorted({pair for pair, _ in links})
        versions = [v for name, version in pairs if (v := self.data_version(name, version)) is not None]
        up: dict[str, Any] = {
            "run_id": run_id,
            "kind": kinds[0] if len(kinds) == 1 else kinds,
            "data_versions": [v.reference for v in versions],
        }
        if models:
            up["code_versions"] = sorted({c.code.version for c in models if c.code})
        down: dict[str, Any] = {"models": [_model_ref(c) for c in models], "weeks_served": self.weeks_served(models)}
        scored = [
            {"week": s.get("week"), "forecasts": s.get("forecasts")}
            for v in versions
            for s in self.summaries(v.week)
            if s.get("score_run") == run_id
        ]
        if scored:
            down["forecasts"] = scored
        return up, down, "run"

    def _links_of(self, run_id: str) -> list[tuple[tuple[str, str], str]]:
        """The data versions linked to ``run_id``: one listing of the run links' names."""
        data = self.ctx.data
        top = data.top if isinstance(data, LakeDataCatalog) else layout.DATA
        self.reads.append(f"{top}/ (names of the run links)")
        found = []
        for path in data.lake.list(top) if isinstance(data, LakeDataCatalog) else []:
            parts = path[len(top) + 1 :].split("/")
            if len(parts) == 4 and parts[2] == "runs" and parts[3] == f"{run_id}.json":
                doc = self._json(path) or {}
                found.append(((parts[0], parts[1]), str(doc.get("kind") or "train")))
        return found

    # downstream ---------------------------------------------------------------------------------
    def from_versions(
        self, versions: list[DataVersion], path: str | None = None, sha256: str | None = None
    ) -> dict[str, Any]:
        """Data versions -> the runs linked to them -> the models trained on them -> the weeks served."""
        refs = {v.reference for v in versions}
        runs = []
        for v in versions:
            self.reads.append(f"{layout.data_runs(v.name, v.version)}/")
            runs += [{"run_id": run_id, "kind": kind, "data_version": v.reference} for run_id, kind in self._runs_of(v)]
        train_runs = {r["run_id"] for r in runs if r["kind"] == "train"}
        models = [c for c in self.cards() if c.data_versions.get("curated") in refs or c.run_id in train_runs]
        listed = []
        for v in sorted(versions, key=lambda v: (v.name, *version_key(v.version))):
            item: dict[str, Any] = {"data_version": v.reference, "week": v.week, "content_hash": v.content_hash}
            if path is not None:
                item |= {"file_sha256": v.files.get(path), "same_content": v.files.get(path) == sha256}
            listed.append(item)
        return {
            "data_versions": listed,
            "runs": runs,
            "models": [_model_ref(c) for c in models],
            "weeks_served": self.weeks_served(models),
        }

    def _runs_of(self, version: DataVersion) -> list[tuple[str, str]]:
        """The runs linked to a data version; when one link does not read (not JSON, not a link),
        the others one by one, the broken ones named in :attr:`problems`."""
        try:
            return [(r.run_id, r.kind) for r in self.ctx.data.runs_of(version.name, version.version)]
        except (ValueError, TypeError, KeyError, AttributeError):
            pass  # a run link the catalog cannot read: read the others
        data = self.ctx.data
        if not isinstance(data, LakeDataCatalog):
            self.problems.append(f"{version.reference}: its run links do not read: skipped")
            return []
        found = []
        for path in data.lake.list(layout.data_runs(version.name, version.version, data.top)):
            doc = self._json(path) or {}
            run_id, kind = doc.get("run_id"), doc.get("kind")
            if isinstance(run_id, str) and kind in ("train", "score"):
                found.append((str(doc.get("linked_at") or ""), run_id, kind))
            else:
                self.problems.append(f"{path}: not a run link (not JSON, or no run_id and kind): skipped")
        return [(run_id, kind) for _, run_id, kind in sorted(found)]

    def weeks_served(self, cards: list[ModelCard]) -> list[dict[str, Any]]:
        """The weeks whose forecasts one of ``cards`` served: the summaries of the weeks from the
        earliest data week of the cards on (a model serves no week before its data)."""
        wanted = {(c.name, c.version) for c in cards}
        if not wanted:
            return []
        first = min((_data_week(c) for c in cards), default="")
        self.reads.append(f"{layout.TOP}/ (names of the weeks)")
        weeks = sorted(m.group(1) for n in self.ctx.lake.children(layout.TOP) if (m := _WEEK_FOLDER.match(n)))
        served = []
        for week in (w for w in weeks if w >= first):
            for summary in self.summaries(week):
                for group, line in sorted(_lines(summary).items()):
                    if (line.get("served_by") or group, line.get("scored_with")) in wanted:
                        served.append(
                            {
                                "week": week,
                                "group": group,
                                "model": f"{line.get('served_by') or group}:{line.get('scored_with')}",
                                "source": line.get("source"),
                                "forecasts": f"curated/forecasts/v1/week={week}/{group}.csv",
                            }
                        )
        return served


def _lines(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A summary's group lines that read (``groups`` a mapping, each line one): a malformed one is
    skipped, the others answer."""
    groups = summary.get("groups")
    if not isinstance(groups, dict):
        return {}
    return {str(g): line for g, line in groups.items() if isinstance(line, dict)}


def _data_week(card: ModelCard) -> str:
    _, _, version = card.data_versions.get("curated", "").rpartition(":")
    return version[:10] if re.match(r"^\d{4}-\d{2}-\d{2}", version) else ""


def _model_ref(card: ModelCard) -> dict[str, Any]:
    return {
        "model": f"{card.name}:{card.version}",
        "stage": card.stage,
        "training_run": card.run_id,
        "data_version": card.data_versions.get("curated"),
        "code_version": card.code.version if card.code else None,
    }


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
