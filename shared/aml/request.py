"""A request to start one run of a catalog pipeline: the HTTP body, ours or the body of ADF's
built-in "Machine Learning Execute Pipeline" activity, checked and turned into a
:class:`RunRequest`, or every problem with it listed as ``{field, message}``.

Checking goes in two stages, so that every problem is listed at once: the body's shape
(:class:`OurBody` or :class:`AdfBody`, pydantic models), then its parameters and inputs
against the pipeline's declared ones.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from shared.aml.catalog import NAME_PATTERN, Parameter, Pipeline
from shared.aml.datarefs import is_reference
from shared.aml.lakeuri import container_of, lake_path, lake_uri, normal_scheme
from shared.http import Problem, problem

_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
#: the tag that records what a run was asked to do (the same key with another request: 409)
TAG_REQUEST = "forecastops.request"


class RunRequest(BaseModel):
    """A validated request to start one run of a catalog pipeline."""

    pipeline: str
    parameters: dict[str, Any]
    inputs: dict[str, str]
    experiment: str
    idempotency_key: str | None
    tags: dict[str, str]
    continue_on_step_failure: bool = False

    def fingerprint(self) -> str:
        """What the request asks for (pipeline, parameters, inputs, experiment, tags), whatever
        the body's field order or spacing."""
        content = self.model_dump(mode="json", exclude={"idempotency_key"})
        content["tags"] = {k: v for k, v in self.tags.items() if k != TAG_REQUEST}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()

    def stamped(self) -> RunRequest:
        """This request with its fingerprint among its tags, for the backend to keep."""
        return self.model_copy(update={"tags": {**self.tags, TAG_REQUEST: self.fingerprint()}})

    def job_name(self) -> str:
        """The AML job name: derived from the idempotency key when there is one, so that the
        same key always names the same job (and a second submit finds the first)."""
        if self.idempotency_key is None:
            return f"{self.pipeline}-{uuid.uuid4().hex[:20]}"
        return job_name_for(self.pipeline, self.idempotency_key)


def job_name_for(pipeline: str, key: str) -> str:
    """The job a pipeline's run with this idempotency key is, whoever asks (a pure function)."""
    digest = hashlib.sha256(f"{pipeline}\n{key}".encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", key).strip("-")[:40]
    return f"{pipeline}-{slug}-{digest}" if slug else f"{pipeline}-{digest}"


def _experiment(value: str) -> str:
    if value and not re.fullmatch(NAME_PATTERN, value):
        raise ValueError("letters, digits, '_' and '-', at most 63, starting with a letter or digit")
    return value


def _key(value: str) -> str:
    if not _KEY.fullmatch(value):
        raise ValueError("1 to 200 of letters, digits, '_', '-', '.', ':' (ADF's pipeline().RunId fits)")
    return value


Experiment = Annotated[str, AfterValidator(_experiment)]
IdempotencyKey = Annotated[str, AfterValidator(_key)]
Tags = dict[str, str]


class OurBody(BaseModel):
    """``{"parameters", "inputs", "experiment", "idempotency_key", "tags"}``, all optional."""

    # strict: ``"true"`` or ``1`` is no boolean, ``"10"`` no integer (ADF's parameters, sent as
    # text, are read by :func:`coerce`, not here)
    model_config = ConfigDict(extra="forbid", strict=True)

    parameters: dict[str, Any] | None = None
    inputs: dict[str, Any] | None = None
    experiment: Experiment | None = None
    idempotency_key: IdempotencyKey | None = None
    tags: Tags | None = None


class DataPath(BaseModel):
    """One of ADF's ``dataPathAssignments``: a datastore and a path in it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    DataStoreName: str = Field(pattern=r"^[A-Za-z0-9_]{1,255}$")
    RelativePath: str


class AdfBody(BaseModel):
    """The body of ADF's "Machine Learning Execute Pipeline" activity, as that activity's
    settings read (parameters as text), pasted unchanged into an Azure Function activity.

    Mapped: ``mlPipelineParameters`` (the parameters), ``dataPathAssignments`` (the inputs),
    ``experimentName``, ``continueOnStepFailure``. Kept as tags, for the record, not acted on:
    ``mlPipelineId``, ``mlPipelineEndpointId``, ``version`` (the route's catalog entry names
    the pipeline; an AML v1 pipeline id means nothing to a v2 job) and ``mlParentRunId``
    (v2 jobs have no parent run to attach to)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    mlPipelineParameters: dict[str, Any] | None = None
    dataPathAssignments: dict[str, Any] | None = None
    experimentName: Experiment | None = None
    idempotency_key: IdempotencyKey | None = None
    tags: Tags | None = None
    continueOnStepFailure: bool = False
    mlPipelineId: str | None = Field(None, max_length=256)
    mlPipelineEndpointId: str | None = Field(None, max_length=256)
    version: str | None = Field(None, max_length=64)
    mlParentRunId: str | None = Field(None, max_length=256)

    def recorded(self) -> dict[str, str]:
        """The fields kept as tags only (``adf.<field>``)."""
        kept = ("mlPipelineId", "mlPipelineEndpointId", "version", "mlParentRunId")
        return {f"adf.{name}": str(getattr(self, name)) for name in kept if getattr(self, name) is not None}


Body = OurBody | AdfBody
ADF_FIELDS = frozenset(set(AdfBody.model_fields) - {"idempotency_key", "tags"})


def validate_request(pipeline: Pipeline, body: Any) -> tuple[RunRequest | None, list[Problem]]:
    """A :class:`RunRequest` from an HTTP body, or every problem with it (field, message)."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        return None, [problem("(body)", "expected a JSON object")]
    adf = bool(ADF_FIELDS & set(body))
    model: type[Body] = AdfBody if adf else OurBody
    parsed, problems = _shape(model, body)
    params_field, inputs_field = ("mlPipelineParameters", "dataPathAssignments") if adf else ("parameters", "inputs")
    raw_params = body.get(params_field)
    parameters, found = check_parameters(
        pipeline, raw_params if isinstance(raw_params, dict) else {}, params_field, adf
    )
    problems += found
    raw_inputs = body.get(inputs_field)
    inputs, found = _inputs(pipeline, raw_inputs if isinstance(raw_inputs, dict) else {}, inputs_field, adf)
    problems += found
    if problems or parsed is None:
        return None, _ordered(problems, list(model.model_fields))
    recorded: dict[str, str] = {}
    if isinstance(parsed, AdfBody):
        experiment, cosf, recorded = parsed.experimentName, parsed.continueOnStepFailure, parsed.recorded()
    else:
        experiment, cosf = parsed.experiment, False
    return (
        RunRequest(
            pipeline=pipeline.name,
            parameters=parameters,
            inputs=inputs,
            experiment=experiment or pipeline.experiment,
            idempotency_key=parsed.idempotency_key,
            tags={**pipeline.tags, **recorded, **(parsed.tags or {})},
            continue_on_step_failure=cosf,
        ),
        [],
    )


def _shape(
    model: type[OurBody] | type[AdfBody], body: dict[str, Any]
) -> tuple[OurBody | AdfBody | None, list[Problem]]:
    try:
        return model.model_validate(body), []
    except ValidationError as e:
        problems: list[Problem] = []
        for err in e.errors():
            field = str(err["loc"][0]) if err["loc"] else "(body)"
            if err["type"] == "extra_forbidden":
                message = f"unknown field; expected {', '.join(sorted(model.model_fields))}"
            elif field in ("parameters", "inputs", "mlPipelineParameters", "dataPathAssignments", "tags"):
                message = "expected an object of string: string" if field == "tags" else "expected an object"
            else:
                message = err["msg"].removeprefix("Value error, ")
            if not any(p["field"] == field for p in problems):
                problems.append(problem(field, message))
        return None, problems


def _ordered(problems: list[Problem], fields: list[str]) -> list[Problem]:
    """Unknown fields first, then in the body's field order (each field's own items after it)."""
    rank = {f: i for i, f in enumerate(fields)}
    return sorted(problems, key=lambda p: rank.get(p["field"].split(".")[0], -1))


def check_parameters(
    pipeline: Pipeline, given: dict[str, Any], field: str, from_text: bool
) -> tuple[dict[str, Any], list[Problem]]:
    """The pipeline's parameters from ``given`` with defaults filled in, or the problems."""
    problems = [
        problem(
            f"{field}.{name}", f"unknown parameter; {pipeline.name} takes {', '.join(pipeline.parameters) or 'none'}"
        )
        for name in sorted(set(given) - set(pipeline.parameters))
    ]
    parameters: dict[str, Any] = {}
    for name, spec in pipeline.parameters.items():
        if name in given:
            value, error = coerce(spec, given[name], from_text)
            if not error and spec.policy is not None and value != spec.default:
                # the gates' own values, carried to the steps: a run cannot move them
                error = f"set by the health policy ({spec.policy} = {spec.default}), not by a request"
            if error:
                problems.append(problem(f"{field}.{name}", error))
            else:
                parameters[name] = value
        elif spec.required:
            problems.append(problem(f"{field}.{name}", "required"))
        elif spec.default is not None:
            parameters[name] = spec.default
    return parameters, problems


def coerce(spec: Parameter, value: Any, from_text: bool) -> tuple[Any, str | None]:
    """The value in the parameter's type; ADF's activity sends every parameter as text."""
    t = spec.type
    if from_text and isinstance(value, str):
        try:
            value = _from_text(t, value)
        except ValueError:
            return None, f"expected {t}, got {_shown(value)}"
    ok = {
        "string": isinstance(value, str),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
    }[t]
    if not ok:
        return None, f"expected {t}, got {type(value).__name__} {_shown(value)}"
    if t in ("integer", "number"):
        if not math.isfinite(value):
            return None, f"expected a finite {t}, got {value!r}"
        if (spec.minimum is not None and value < spec.minimum) or (spec.maximum is not None and value > spec.maximum):
            return None, f"{_shown(value)} is outside {_bound(spec.minimum)}..{_bound(spec.maximum)}"
    if spec.allowed is not None and value not in spec.allowed:
        return None, f"{value!r} is not one of {', '.join(map(str, spec.allowed))}"
    return value, None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _bound(b: float | None) -> str:
    return "" if b is None else str(int(b)) if b == int(b) else str(b)


# ASCII digits only: ``int()`` and ``float()`` also take other scripts' digits and ``1_0``
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]{1,30}")
_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")


def _from_text(t: str, value: str) -> Any:
    if t == "integer":
        if not _INTEGER_TEXT.fullmatch(value):
            raise ValueError(value)
        return int(value)
    if t == "number":
        if not _NUMBER_TEXT.fullmatch(value):
            raise ValueError(value)  # "inf", "NaN", "1_0" and the like: not a number ADF means
        return float(value)
    if t == "boolean":
        if value.lower() not in ("true", "false"):
            raise ValueError(value)
        return value.lower() == "true"
    return value


def input_path_ok(value: str) -> bool:
    """An AML data URI, a registered data asset version (``azureml:<name>:<version>``), or a
    relative lake path that stays inside the lake. A lake datastore's URI (``lake_<container>``,
    or the legacy ``lake``: :mod:`shared.aml.lakeuri`) may name a whole container
    (``azureml://datastores/lake_curated/paths/``); another datastore's needs a path in it. A
    scheme is read in any case (``FILE://`` is ``file://``), and no scheme but ``azureml`` is taken."""
    value = normal_scheme(value)
    if value.startswith("azureml:") and not value.startswith("azureml://"):
        return is_reference(value)
    m = re.match(r"^azureml://datastores/([A-Za-z0-9_]+)/paths/(.*)$", value)
    if m and container_of(m.group(1)) is not None:
        try:
            return lake_path(value) is not None
        except ValueError:
            return False
    rel = m.group(2) if m else value
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", rel) or rel.startswith("/") or "\\" in rel:
        return False
    return bool(rel.strip("/")) and all(p not in ("..", ".") for p in rel.strip("/").split("/"))


def _inputs(pipeline: Pipeline, given: dict[str, Any], field: str, adf: bool) -> tuple[dict[str, str], list[Problem]]:
    """The pipeline's inputs as paths, defaults filled in: ours name a path or a registered
    data asset version (``azureml:<name>:<version>``), ADF's a datastore and a relative path."""
    problems: list[Problem] = []
    inputs: dict[str, str] = {}
    takes = ", ".join(pipeline.inputs) or "none"
    for name, value in given.items():
        path = _adf_path(value) if adf else normal_scheme(value) if isinstance(value, str) else value
        if name not in pipeline.inputs:
            problems.append(problem(f"{field}.{name}", f"unknown input; {pipeline.name} takes {takes}"))
        elif adf and (path is None or not input_path_ok(path)):
            problems.append(
                problem(
                    f"{field}.{name}", "expected {DataStoreName, RelativePath}, a path inside the datastore (no '..')"
                )
            )
        elif not adf and (not isinstance(path, str) or not input_path_ok(path)):
            problems.append(problem(f"{field}.{name}", _PATH_EXPECTED))
        else:
            inputs[name] = str(path)
    for name, spec in pipeline.inputs.items():
        if name not in inputs and not any(p["field"] == f"{field}.{name}" for p in problems):
            if spec.default is not None:
                inputs[name] = spec.default
            elif spec.required:
                problems.append(problem(f"{field}.{name}", "required"))
    return inputs, problems


_PATH_EXPECTED = (
    "expected azureml://datastores/<store>/paths/<path>, a data asset azureml:<name>:<version> or a lake path (no '..')"
)


def _adf_path(value: Any) -> str | None:
    try:
        ref = DataPath.model_validate(value)
    except ValidationError:
        return None
    container = container_of(ref.DataStoreName)
    if container is not None:  # a lake container's datastore: the lake path's URI
        try:
            return lake_uri(f"{container}/{ref.RelativePath}")
        except ValueError:
            return None
    return f"azureml://datastores/{ref.DataStoreName}/paths/{ref.RelativePath.lstrip('/')}"
