"""The plan: an AML pipeline job YAML and its component YAMLs resolved for this machine, the
way AML resolves them (``${{parent.inputs.x}}``, ``${{parent.jobs.<step>.outputs.<o>}}``,
``${{inputs.x}}``, ``$[[optional]]``), into one command line per step."""

from __future__ import annotations

import json
import re
import shlex
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared import ROOT
from shared.aml.catalog import Pipeline
from shared.aml.datarefs import (
    DataVersionNotFound,
    is_reference,
    listing_of,
    parse_reference,
    read_version,
)
from shared.aml.lakeuri import lake_path
from shared.aml.request import RunRequest
from shared.lake import Lake, LocalLake, NotFoundError
from shared.weeks import layout


@dataclass
class Step:
    """One step of a local run: its command line, working folder, outputs and environment."""

    name: str
    argv: list[str]
    cwd: Path
    outputs: dict[str, Path]
    env: dict[str, str] = field(default_factory=dict)


#: an object of the pinned store, as a listing names it (anything else is not copied)
_OBJECT = re.compile(rf"{layout.PINNED_OBJECTS}/[0-9a-f]{{2}}/[0-9a-f]{{64}}\.csv")
_BINDING = re.compile(r"\$\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")
_OPTIONAL = re.compile(r"\$\[\[(.*?)\]\]", re.S)


def _yaml(path: Path) -> dict[str, Any]:
    import yaml

    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def resolve_input(value: str, lake: Lake) -> str:
    """A data asset version (``azureml:<name>:<version>``) as the lake folder its record names
    (a pinned version: its folder in the pinned store, ``azureml://datastores/lake_batches/paths/
    pinned/versions/<name>/<version>``, which holds its listing; a record from before the pinned store:
    the live ``azureml://datastores/lake_curated/paths/``); any other value unchanged. An asset
    the lake's catalog does not hold raises :class:`DataVersionNotFound`."""
    if not is_reference(value):
        return value
    name, version = parse_reference(value)
    found = read_version(lake, name, version)
    if found is None:
        raise DataVersionNotFound(f"no version {version} of data {name}")
    return found.path


def _lake_folder(value: str, lake: Lake, name: str) -> str:
    """A uri input (a lake datastore's URI, ``azureml://datastores/lake_<container>/paths/<p>`` or
    the legacy ``azureml://datastores/lake/paths/<container>/<p>``, a lake path, or a data asset
    version the lake's catalog holds) as the lake folder it names. Another datastore's URI raises
    ``ValueError``: this machine has only the lake."""
    value = resolve_input(value, lake)
    if value.startswith("azureml://"):
        found = lake_path(value)
        if found is None:
            raise ValueError(
                f"input {name}: {value} is not in a datastore of the lake; the local backend reads the lake only"
            )
        return found
    return value.strip("/")


def _listed_objects(lake: Lake, folders: Iterable[str]) -> set[str]:
    """The objects (``batches/pinned/objects/...``) the listings of the pinned version folders among
    ``folders`` name: all a run on a remote lake needs of the pinned store. A listing that does
    not read lists nothing here (the prepare step says what is wrong with it)."""
    found: set[str] = set()
    for folder in folders:
        if not folder.startswith(f"{layout.PINNED}/{layout.PINNED_VERSIONS}/"):
            continue
        try:
            listing = json.loads(lake.read_bytes(listing_of(folder)))
            objects = [str(entry["object"]) for entry in listing["files"].values()]
            found |= {f"{layout.PINNED}/{o}" for o in objects if _OBJECT.fullmatch(o)}
        except (NotFoundError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return found


def _local_folder(rel: str, lake: Lake, work: Path, name: str, objects: set[str]) -> str:
    """A lake folder as a folder here: itself on a local lake, else a copy (of the pinned store,
    only the ``objects`` the run's pinned versions list, not every version's)."""
    if isinstance(lake, LocalLake):
        return str(lake.root / rel)
    target = work / "inputs" / name
    store = rel == layout.PINNED or rel.startswith(f"{layout.PINNED}/{layout.PINNED_OBJECTS}")
    paths = sorted(p for p in objects if p.startswith(f"{rel}/")) if store else lake.list(rel)
    for path in paths:
        dest = target / path[len(rel) :].lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            dest.write_bytes(lake.read_bytes(path))
        except NotFoundError:
            continue  # an object gone from the store: the prepare step names it
    return str(target)


def plan(pipeline: Pipeline, request: RunRequest, lake: Lake, work: Path) -> list[Step]:
    """The steps of ``pipeline`` in order, with every binding resolved."""
    if pipeline.local is None:
        raise ValueError(f"pipeline {pipeline.name} has no local definition")
    job_file = ROOT / pipeline.local.job
    job = _yaml(job_file)
    values = _pipeline_values(job, request, lake, work)
    steps: list[Step] = []
    produced: dict[str, dict[str, Path]] = {}
    for step_name, step in (job.get("jobs") or {}).items():
        ref = step["component"]
        if isinstance(ref, str) and ref.startswith("azureml:"):
            comp_file = ROOT / pipeline.local.components[ref.split(":")[1]]
        else:
            comp_file = (job_file.parent / str(ref).removeprefix("file:")).resolve()
        steps.append(_step(step_name, step, comp_file, job, values, produced, work, pipeline.local.workers))
        produced[step_name] = steps[-1].outputs
    return steps


def _pipeline_values(job: dict[str, Any], request: RunRequest, lake: Lake, work: Path) -> dict[str, str]:
    """The pipeline's inputs: defaults, then the request's parameters and inputs (data inputs
    as folders on this machine)."""
    values: dict[str, str] = {}
    for name, spec in (job.get("inputs") or {}).items():
        default = spec.get("default", spec.get("path")) if isinstance(spec, dict) else spec
        if default is not None:
            values[name] = str(default)
    values.update({k: json.dumps(v) if isinstance(v, bool) else str(v) for k, v in request.parameters.items()})
    values.update(request.inputs)
    folders = {
        name: _lake_folder(values[name], lake, name)
        for name, spec in (job.get("inputs") or {}).items()
        if isinstance(spec, dict) and spec.get("type") in _DATA_TYPES and name in values
    }
    objects = set() if isinstance(lake, LocalLake) else _listed_objects(lake, folders.values())
    for name, rel in folders.items():
        values[name] = _local_folder(rel, lake, work, name, objects)
    return values


def _step(
    name: str,
    step: dict[str, Any],
    comp_file: Path,
    job: dict[str, Any],
    values: dict[str, str],
    produced: dict[str, dict[str, Path]],
    work: Path,
    workers: int | None = None,
) -> Step:
    comp = _yaml(comp_file)
    outputs = {o: work / "outputs" / name / o for o in (comp.get("outputs") or {})}
    inputs: dict[str, str] = {}
    for input_name, spec in (comp.get("inputs") or {}).items():
        if isinstance(spec, dict) and spec.get("default") is not None:
            inputs[input_name] = str(spec["default"])
    for input_name, bound in (step.get("inputs") or {}).items():
        if _unset_optional(str(bound), job, values):
            continue  # as AML does: an optional pipeline input with no value binds nothing
        inputs[input_name] = _bind(str(bound), values, produced)
    context = {
        **{f"inputs.{k}": v for k, v in inputs.items()},
        **{f"outputs.{k}": str(v) for k, v in outputs.items()},
    }
    if comp.get("type") == "parallel":
        return _parallel_step(name, step, comp, comp_file, context, outputs, workers)
    argv = shlex.split(_render(comp["command"], context, comp_file))
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    return Step(name, argv, (comp_file.parent / comp.get("code", ".")).resolve(), outputs)


def _parallel_step(
    name: str,
    step: dict[str, Any],
    comp: dict[str, Any],
    comp_file: Path,
    context: dict[str, str],
    outputs: dict[str, Path],
    workers: int | None,
) -> Step:
    """A ``type: parallel`` component (task ``run_function``) as :mod:`shared.aml.local.parallel`
    runs it: the same entry script over the same mini-batches, in a process pool of ``workers``
    (None: the machine's cores). The pipeline job's node may override the component's settings."""
    spec = {**comp, **{k: v for k, v in step.items() if k not in ("type", "component", "inputs", "outputs")}}
    task = spec.get("task") or {}
    if task.get("type", "run_function") != "run_function":
        raise ValueError(f"{comp_file}: the local backend runs parallel tasks of type run_function only")
    retry = spec.get("retry_settings") or {}
    argv = [
        sys.executable,
        "-m",
        "shared.aml.local.parallel",
        "--entry-script",
        str(task["entry_script"]),
        "--input-data",
        shlex.split(_render(str(spec["input_data"]), context, comp_file))[0],
        "--mini-batch-size",
        str(spec.get("mini_batch_size", 1)),
        "--error-threshold",
        str(spec.get("mini_batch_error_threshold", -1)),
        "--max-retries",
        str(retry.get("max_retries", 3)),
        "--timeout",
        str(retry.get("timeout", 60)),
    ]
    if task.get("append_row_to"):
        argv += ["--append-row-to", shlex.split(_render(str(task["append_row_to"]), context, comp_file))[0]]
    if workers is not None:
        argv += ["--workers", str(workers)]
    argv += ["--", *shlex.split(_render(str(task.get("program_arguments") or ""), context, comp_file))]
    return Step(name, argv, (comp_file.parent / task.get("code", ".")).resolve(), outputs)


def _render(command: str, context: dict[str, str], where: Path) -> str:
    """A component's command with its ``$[[optional]]`` parts and ``${{...}}`` bindings."""
    command = _OPTIONAL.sub(lambda m: m.group(1) if _bound_all(m.group(1), context) else "", command)
    return _BINDING.sub(lambda m: _lookup(m.group(1), context, where), command)


def _bound_all(text: str, context: dict[str, str]) -> bool:
    return all(m.group(1) in context for m in _BINDING.finditer(text))


def _lookup(name: str, context: dict[str, str], where: Path) -> str:
    if name not in context:
        raise ValueError(f"{where}: ${{{{{name}}}}} is not bound")
    return shlex.quote(context[name])


_DATA_TYPES = ("uri_folder", "uri_file", "mltable")


def _unset_optional(bound: str, job: dict[str, Any], values: dict[str, str]) -> bool:
    """``${{parent.inputs.x}}`` for a pipeline input ``x`` that may go without a value and was
    given none: a data input declared with its type only (no path: a pipeline job's inputs
    cannot say ``optional``, azure-ai-ml refuses it) or one marked ``optional``."""
    m = re.fullmatch(r"\$\{\{\s*parent\.inputs\.([A-Za-z0-9_]+)\s*\}\}", bound.strip())
    if m is None:
        return False
    spec = (job.get("inputs") or {}).get(m.group(1))
    if not isinstance(spec, dict) or m.group(1) in values:
        return False
    return bool(spec.get("optional")) or (spec.get("type") in _DATA_TYPES and not spec.get("path"))


def _bind(value: str, values: dict[str, str], produced: dict[str, dict[str, Path]]) -> str:
    def sub(m: re.Match[str]) -> str:
        parts = m.group(1).split(".")
        if parts[:2] == ["parent", "inputs"] and len(parts) == 3:
            if parts[2] not in values:
                raise ValueError(f"pipeline input {parts[2]!r} has no value")
            return values[parts[2]]
        if parts[:2] == ["parent", "jobs"] and len(parts) == 5 and parts[3] == "outputs":
            return str(produced[parts[2]][parts[4]])
        raise ValueError(f"unsupported binding ${{{{{m.group(1)}}}}}")

    return _BINDING.sub(sub, value)
