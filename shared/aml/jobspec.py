"""A pipeline job YAML of this repo as the ``azureml`` backend submits it: one dict, loaded once
by ``azure-ai-ml``'s ``load_job``.

- The request's parameters and inputs go in; a declared input that the request leaves unset is
  dropped, with the step inputs bound to it (their components declare them optional, and
  azure-ai-ml cannot send a pipeline input that has no value).
- This repo's components are named at the versions their content gives (:func:`assets.pin`),
  never ``@latest``.
- A parallel step runs at the scale the catalog gives it for the workspace
  (``[pipelines.<name>.parallel.<step>]``: ``resources.instance_count`` and
  ``max_concurrency_per_instance``).
- Every step's outputs land in the lake, at
  ``azureml://datastores/lake_runs/paths/<run_id>/outputs/<step>/<output>`` (lake path
  ``runs/<run_id>/outputs/<step>/<output>``), where the local backend puts them, so that a run's
  models and scores are read from the same lake paths in both homes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from shared.aml import assets
from shared.aml.catalog import Pipeline
from shared.aml.lakeuri import aml_path, lake_uri
from shared.aml.request import RunRequest

#: a registered component's outputs (name -> type), given its name and version or label
RegisteredOutputs = Callable[[str, "str | None", "str | None"], dict[str, str]]


def build(
    job_file: Path,
    request: RunRequest,
    pipeline: Pipeline,
    run_id: str,
    registered: RegisteredOutputs,
    workspace: str | None = None,
) -> dict[str, Any]:
    """The job's spec for ``load_job``; ``registered`` answers a foreign component's outputs;
    ``workspace`` picks the parallel steps' scale (the catalog's defaults when None)."""
    with open(job_file, encoding="utf-8") as f:
        spec = yaml.safe_load(f) or {}
    declared = dict(spec.get("inputs") or {})
    declared.update(request.parameters)
    for name, path in request.inputs.items():
        declared[name] = {"type": pipeline.inputs[name].type, "path": aml_path(path)}
    unset = {n for n, v in declared.items() if isinstance(v, dict) and not v.get("path") and "default" not in v}
    spec["inputs"] = {n: v for n, v in declared.items() if n not in unset}
    bindings = {"${{parent.inputs." + n + "}}" for n in unset}
    jobs = spec.get("jobs") or {}
    for node in jobs.values():
        if not isinstance(node, dict):
            continue
        node["inputs"] = {k: v for k, v in (node.get("inputs") or {}).items() if v not in bindings}
        if isinstance(node.get("component"), str):
            node["component"] = assets.pin(node["component"])
    for step, scale in pipeline.parallel.items():
        node = jobs.get(step)
        if isinstance(node, dict) and node.get("type") == "parallel":
            chosen = scale.for_workspace(workspace)
            node["resources"] = {**(node.get("resources") or {}), "instance_count": chosen.instance_count}
            node["max_concurrency_per_instance"] = chosen.max_concurrency_per_instance
    for step, outputs in _outputs_in_lake(spec, job_file, run_id, registered).items():
        jobs[step]["outputs"] = outputs
    return spec


def _outputs_in_lake(
    spec: dict[str, Any], job_file: Path, run_id: str, registered: RegisteredOutputs
) -> dict[str, dict[str, Any]]:
    """Each step's outputs, placed under the run in the lake. A step's outputs are its
    component's; an output bound to a pipeline output is left to that binding."""
    seen: dict[str, dict[str, str]] = {}
    placed_by_step: dict[str, dict[str, Any]] = {}
    for step, node in (spec.get("jobs") or {}).items():
        if not isinstance(node, dict):
            continue
        declared = node.get("outputs") or {}
        outputs = {**_component_outputs(node.get("component"), job_file, seen, registered)}
        outputs.update({k: v["type"] for k, v in declared.items() if isinstance(v, dict) and v.get("type")})
        placed = {
            name: {
                **(declared[name] if isinstance(declared.get(name), dict) else {}),
                "type": kind,
                "path": lake_uri(f"runs/{run_id}/outputs/{step}/{name}"),
            }
            for name, kind in outputs.items()
            if not isinstance(declared.get(name), str)  # ${{parent.outputs.x}}: the pipeline's output
        }
        if placed:
            placed_by_step[step] = {**declared, **placed}
    return placed_by_step


def _component_outputs(
    ref: Any, job_file: Path, seen: dict[str, dict[str, str]], registered: RegisteredOutputs
) -> dict[str, str]:
    """A step's component's outputs (name -> type): this repo's from its YAML, another
    registered one's from AML (once per component), an inline one's from the job."""
    key = json.dumps(ref, sort_keys=True, default=str)
    if key in seen:
        return seen[key]
    outputs: dict[str, Any]
    if isinstance(ref, dict):
        outputs = ref.get("outputs") or {}
    elif isinstance(ref, str) and ref.startswith("azureml:"):
        name, _, version = ref.removeprefix("azureml:").partition(":")
        name, _, label = name.partition("@")
        mine = assets.components().get(name)
        if mine is not None:
            outputs = _yaml_outputs(mine.file)
        else:
            seen[key] = registered(name, version or None, label or None)
            return seen[key]
    elif isinstance(ref, str):
        outputs = _yaml_outputs((job_file.parent / ref.removeprefix("file:")).resolve())
    else:
        outputs = {}
    seen[key] = {k: (v.get("type") if isinstance(v, dict) else None) or "uri_folder" for k, v in outputs.items()}
    return seen[key]


def _yaml_outputs(file: Path) -> dict[str, Any]:
    with open(file, encoding="utf-8") as f:
        return (yaml.safe_load(f) or {}).get("outputs") or {}
