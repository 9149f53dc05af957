"""The pipeline catalog: which Azure ML pipelines this app may start, and with what.

``pipelines/catalog.toml`` lists them. Each entry names its AML definition (a pipeline job
YAML in the repo whose steps use registered components, a registered pipeline component, or
a batch endpoint with a pipeline deployment), its parameter and input schema, default
experiment, compute and tags, and how the ``local`` backend runs it. Any other pipeline name
is unknown (404).

:func:`validate_request` turns an HTTP body (ours, or the body of ADF's built-in "Machine
Learning Execute Pipeline" activity) into a :class:`RunRequest`, or lists every problem.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared import ROOT

CATALOG_FILE = ROOT / "pipelines" / "catalog.toml"

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"


class Parameter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["string", "integer", "number", "boolean"]
    required: bool = False
    default: str | int | float | bool | None = None
    allowed: list[str | int | float] | None = None
    description: str = ""


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["uri_folder", "uri_file", "mltable"] = "uri_folder"
    required: bool = False
    default: str | None = None
    description: str = ""


class Definition(BaseModel):
    """The AML asset behind a catalog entry (exactly one of the three kinds)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["pipeline_job", "component", "batch_endpoint"]
    #: pipeline_job: the YAML, relative to the repo root
    job: str | None = None
    #: component: ``azureml:<name>:<version>`` of a registered pipeline component
    component: str | None = None
    #: batch_endpoint: endpoint and (optional) deployment
    endpoint: str | None = None
    deployment: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> Definition:
        need = {"pipeline_job": "job", "component": "component", "batch_endpoint": "endpoint"}[self.kind]
        if getattr(self, need) is None:
            raise ValueError(f"kind = {self.kind!r} needs {need!r}")
        if self.component is not None and not re.match(r"^azureml:[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+$", self.component):
            raise ValueError("component must read azureml:<name>:<version>")
        return self


class LocalSpec(BaseModel):
    """How the local backend runs the pipeline: a pipeline YAML and local component files."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job: str
    #: registered component name -> its component YAML in the repo
    components: dict[str, str] = Field(default_factory=dict)


class Pipeline(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME)
    description: str
    definition: Definition
    experiment: str = Field(pattern=_NAME)
    compute: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    parameters: dict[str, Parameter] = Field(default_factory=dict)
    inputs: dict[str, Input] = Field(default_factory=dict)
    local: LocalSpec | None = None


class CatalogError(ValueError):
    """The catalog file is not valid; the message names every problem."""


@cache
def load_catalog(path: Path = CATALOG_FILE) -> dict[str, Pipeline]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise CatalogError(f"{path}: {e}") from e
    found: dict[str, Pipeline] = {}
    problems = []
    for name, entry in (data.get("pipelines") or {}).items():
        try:
            found[name] = Pipeline(name=name, **entry)
        except ValidationError as e:
            problems += [f"{name}.{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in e.errors()]
    for p in found.values():
        for rel in [
            p.definition.job,
            *(p.local.components.values() if p.local else []),
            p.local.job if p.local else None,
        ]:
            if rel is not None and not (path.parent.parent / rel).is_file():
                problems.append(f"{p.name}: {rel} does not exist")
    if problems:
        raise CatalogError(f"{path}: " + "; ".join(problems))
    return found


class RunRequest(BaseModel):
    """A validated request to start one run of a catalog pipeline."""

    pipeline: str
    parameters: dict[str, Any]
    inputs: dict[str, str]
    experiment: str
    idempotency_key: str | None
    tags: dict[str, str]
    continue_on_step_failure: bool = False

    def job_name(self) -> str:
        """The AML job name: derived from the idempotency key when there is one, so that the
        same key always names the same job (and a second submit finds the first)."""
        if self.idempotency_key is None:
            import uuid

            return f"{self.pipeline}-{uuid.uuid4().hex[:20]}"
        digest = hashlib.sha256(f"{self.pipeline}\n{self.idempotency_key}".encode()).hexdigest()[:16]
        slug = re.sub(r"[^A-Za-z0-9_-]+", "-", self.idempotency_key).strip("-")[:40]
        return f"{self.pipeline}-{slug}-{digest}" if slug else f"{self.pipeline}-{digest}"


Problem = dict[str, str]
_ADF_KEYS = {"experimentName", "mlPipelineParameters", "dataPathAssignments", "continueOnStepFailure"}
_OUR_KEYS = {"parameters", "inputs", "experiment", "idempotency_key", "tags"}
_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")


def _coerce(name: str, spec: Parameter, value: Any, from_text: bool) -> tuple[Any, str | None]:
    """The value in the parameter's type; ADF's activity sends every parameter as text."""
    t = spec.type
    if from_text and isinstance(value, str):
        try:
            if t == "integer":
                value = int(value)
            elif t == "number":
                value = float(value)
            elif t == "boolean":
                if value.lower() not in ("true", "false"):
                    raise ValueError
                value = value.lower() == "true"
        except ValueError:
            return None, f"expected {t}, got {value!r}"
    ok = {
        "string": isinstance(value, str),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
    }[t]
    if not ok:
        return None, f"expected {t}, got {type(value).__name__} {value!r}"
    if spec.allowed is not None and value not in spec.allowed:
        return None, f"{value!r} is not one of {', '.join(map(str, spec.allowed))}"
    return value, None


def _input_path_ok(value: str) -> bool:
    """An AML data URI, or a relative lake path that stays inside the lake."""
    m = re.match(r"^azureml://datastores/[A-Za-z0-9_]+/paths/(.*)$", value)
    rel = m.group(1) if m else value
    if re.match(r"^[a-z]+://", rel) or rel.startswith("/") or "\\" in rel:
        return False
    return bool(rel.strip("/")) and all(p not in ("..", ".") for p in rel.strip("/").split("/"))


def validate_request(pipeline: Pipeline, body: Any) -> tuple[RunRequest | None, list[Problem]]:
    """A :class:`RunRequest` from an HTTP body, or every problem with it (field, message)."""
    problems: list[Problem] = []

    def bad(field: str, message: str) -> None:
        problems.append({"field": field, "message": message})

    if body is None:
        body = {}
    if not isinstance(body, dict):
        bad("(body)", "expected a JSON object")
        return None, problems
    adf = bool(_ADF_KEYS & set(body))
    allowed = (_ADF_KEYS | {"idempotency_key", "tags"}) if adf else _OUR_KEYS
    for key in sorted(set(body) - allowed):
        bad(key, f"unknown field; expected {', '.join(sorted(allowed))}")
    raw_params = body.get("mlPipelineParameters" if adf else "parameters") or {}
    params_field = "mlPipelineParameters" if adf else "parameters"
    if not isinstance(raw_params, dict):
        bad(params_field, "expected an object of name: value")
        raw_params = {}
    parameters: dict[str, Any] = {}
    for name in sorted(set(raw_params) - set(pipeline.parameters)):
        bad(
            f"{params_field}.{name}",
            f"unknown parameter; {pipeline.name} takes {', '.join(pipeline.parameters) or 'none'}",
        )
    for name, spec in pipeline.parameters.items():
        if name in raw_params:
            value, error = _coerce(name, spec, raw_params[name], from_text=adf)
            if error:
                bad(f"{params_field}.{name}", error)
            else:
                parameters[name] = value
        elif spec.required:
            bad(f"{params_field}.{name}", "required")
        elif spec.default is not None:
            parameters[name] = spec.default
    inputs: dict[str, str] = {}
    if adf:
        paths = body.get("dataPathAssignments") or {}
        if not isinstance(paths, dict):
            bad("dataPathAssignments", "expected an object of name: {DataStoreName, RelativePath}")
            paths = {}
        for name, ref in paths.items():
            if name not in pipeline.inputs:
                bad(
                    f"dataPathAssignments.{name}",
                    f"unknown input; {pipeline.name} takes {', '.join(pipeline.inputs) or 'none'}",
                )
            elif not (isinstance(ref, dict) and ref.get("DataStoreName") and "RelativePath" in ref):
                bad(f"dataPathAssignments.{name}", "expected {DataStoreName, RelativePath}")
            else:
                inputs[name] = (
                    f"azureml://datastores/{ref['DataStoreName']}/paths/{str(ref['RelativePath']).lstrip('/')}"
                )
    else:
        raw_inputs = body.get("inputs") or {}
        if not isinstance(raw_inputs, dict):
            bad("inputs", "expected an object of name: path")
            raw_inputs = {}
        for name, value in raw_inputs.items():
            if name not in pipeline.inputs:
                bad(f"inputs.{name}", f"unknown input; {pipeline.name} takes {', '.join(pipeline.inputs) or 'none'}")
            elif not isinstance(value, str) or not _input_path_ok(value):
                bad(f"inputs.{name}", "expected azureml://datastores/<store>/paths/<path> or a lake path (no '..')")
            else:
                inputs[name] = value
    for name, spec in pipeline.inputs.items():
        if name not in inputs:
            if spec.default is not None:
                inputs[name] = spec.default
            elif spec.required:
                bad(f"inputs.{name}", "required")
    experiment = body.get("experimentName" if adf else "experiment") or pipeline.experiment
    if not isinstance(experiment, str) or not re.match(_NAME, experiment):
        bad(
            "experimentName" if adf else "experiment",
            "letters, digits, '_' and '-', at most 63, starting with a letter or digit",
        )
    key = body.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not _KEY.match(key)):
        bad("idempotency_key", "1 to 200 of letters, digits, '_', '-', '.', ':' (ADF's pipeline().RunId fits)")
    tags = body.get("tags") or {}
    if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        bad("tags", "expected an object of string: string")
        tags = {}
    cosf = body.get("continueOnStepFailure", False)
    if not isinstance(cosf, bool):
        bad("continueOnStepFailure", "expected true or false")
    if problems:
        return None, problems
    return (
        RunRequest(
            pipeline=pipeline.name,
            parameters=parameters,
            inputs=inputs,
            experiment=experiment,
            idempotency_key=key,
            tags={**pipeline.tags, **tags},
            continue_on_step_failure=bool(cosf),
        ),
        [],
    )
