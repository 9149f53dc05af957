"""The pipeline catalog: which Azure ML pipelines this app may start, and with what.

``pipelines/catalog.toml`` lists them. Each entry names its AML definition (a pipeline job
YAML in the repo whose steps use registered components, a registered pipeline component, or
a batch endpoint with a pipeline deployment), its parameter and input schema, default
experiment, compute and tags, and how the ``local`` backend runs it. Any other pipeline name
is unknown (404).

What a request to start one of them must hold is checked in :mod:`shared.aml.request`.
"""

from __future__ import annotations

import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared import ROOT, health

CATALOG_FILE = ROOT / "pipelines" / "catalog.toml"

#: a pipeline or experiment name, as AML takes it
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"


class Parameter(BaseModel):
    """One parameter a pipeline takes: its type, default, allowed values and policy value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["string", "integer", "number", "boolean"]
    required: bool = False
    default: str | int | float | bool | None = None
    allowed: list[str | int | float] | None = None
    #: the least and the greatest value a number or integer may take (both inclusive); every
    #: such parameter declares both, but one the health policy sets
    minimum: float | None = None
    maximum: float | None = None
    description: str = ""
    #: the health policy's value this parameter carries to the steps (``gates.max_mape``: the
    #: pipeline's gate); its value is always that one, filled in when the catalog loads
    policy: Literal["gates.max_mape", "gates.max_age_days", "baseline.margin"] | None = None

    @model_validator(mode="after")
    def _bounded(self) -> Parameter:
        numeric = self.type in ("integer", "number")
        if numeric and self.policy is None and (self.minimum is None or self.maximum is None):
            raise ValueError("a number or integer parameter declares its minimum and maximum")
        if not numeric and (self.minimum is not None or self.maximum is not None):
            raise ValueError(f"a {self.type} parameter has no minimum or maximum")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"minimum {self.minimum} is above maximum {self.maximum}")
        return self


class Input(BaseModel):
    """One data input a pipeline takes: its AML type, whether required, and its default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["uri_folder", "uri_file", "mltable"] = "uri_folder"
    required: bool = False
    default: str | None = None
    description: str = ""


class Definition(BaseModel):
    """The AML asset behind a catalog entry (exactly one of the two kinds). Batch endpoints
    are not offered: their job kind does not carry tags, literal parameters or a job name
    the way the run API needs them (idempotency, status), so a catalog naming one is refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["pipeline_job", "component"]
    #: pipeline_job: the YAML, relative to the repo root
    job: str | None = None
    #: component: ``azureml:<name>:<version>`` of a registered pipeline component
    component: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> Definition:
        need = {"pipeline_job": "job", "component": "component"}[self.kind]
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
    #: the processes a parallel step runs in here (None: the machine's cores)
    workers: int | None = Field(None, ge=1, le=256)


class Gates(BaseModel):
    """A pipeline's health gates: what a completed run's metrics must show to pass. The limits
    are the health policy's (:mod:`shared.health`); the catalog may make a pipeline's stricter,
    a caller only stricter again."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: the highest MAPE a model may have (metrics named ``mape`` or ``<model>.mape``)
    max_mape: float | None = Field(default_factory=lambda: health.policy().gates.max_mape, gt=0)
    #: the oldest a model may be, in days (``trained_at`` in epoch seconds)
    max_age_days: float | None = Field(default_factory=lambda: health.policy().gates.max_age_days, gt=0)
    #: metrics every model must report (by their last name); a missing or non-finite one fails
    required: tuple[str, ...] = ()
    #: metric prefixes that are not models (an ``overall`` row), held only to what they report
    aggregates: tuple[str, ...] = ("overall",)


class Scale(BaseModel):
    """A parallel step's scale on AML: nodes, and processes per node."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instance_count: int = Field(1, ge=1, le=1000)
    max_concurrency_per_instance: int = Field(1, ge=1, le=256)


class ParallelStep(Scale):
    """A parallel step's scale, and its scale in named workspaces (one per environment: the
    workspace the azureml backend submits to picks its entry, else the defaults)."""

    workspaces: dict[str, Scale] = Field(default_factory=dict)

    def for_workspace(self, workspace: str | None) -> Scale:
        """The scale in ``workspace`` (its own entry, else the defaults)."""
        found = self.workspaces.get(workspace or "")
        return found or Scale(
            instance_count=self.instance_count, max_concurrency_per_instance=self.max_concurrency_per_instance
        )


class Pipeline(BaseModel):
    """One pipeline of the catalog: its job definition, parameters, inputs, local plan and gates."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    description: str
    definition: Definition
    experiment: str = Field(pattern=NAME_PATTERN)
    compute: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    parameters: dict[str, Parameter] = Field(default_factory=dict)
    inputs: dict[str, Input] = Field(default_factory=dict)
    local: LocalSpec | None = None
    #: the scale of each parallel step (by its name in the pipeline job)
    parallel: dict[str, ParallelStep] = Field(default_factory=dict)
    gates: Gates = Field(default_factory=Gates)


class CatalogError(ValueError):
    """The catalog file is not valid; the message names every problem."""


@cache
def load_catalog(path: Path = CATALOG_FILE) -> dict[str, Pipeline]:
    """The catalog's pipelines by name; CatalogError naming every problem."""
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
    for name, p in list(found.items()):
        found[name], more = _with_policy(p, health.policy())
        problems += more
    if problems:
        raise CatalogError(f"{path}: " + "; ".join(problems))
    return found


def _with_policy(p: Pipeline, policy: health.HealthPolicy) -> tuple[Pipeline, list[str]]:
    """``p`` with its policy parameters' values filled in, and its gates checked against the
    health policy: a catalog entry may make them stricter, never looser."""
    problems = []
    for gate in ("max_mape", "max_age_days"):
        mine, limit = getattr(p.gates, gate), getattr(policy.gates, gate)
        if mine is None or mine > limit:
            problems.append(
                f"{p.name}.gates.{gate}: {mine} is looser than the health policy's {limit} ({health.POLICY_FILE.name})"
            )
    values = {
        "gates.max_mape": p.gates.max_mape,
        "gates.max_age_days": p.gates.max_age_days,
        "baseline.margin": policy.baseline.margin,
    }
    parameters = {
        k: v.model_copy(update={"default": values[v.policy], "required": False}) if v.policy else v
        for k, v in p.parameters.items()
    }
    return p.model_copy(update={"parameters": parameters}), problems
