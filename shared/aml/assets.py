"""What the pipelines name in Azure ML, at the version the app submits, and the command that
registers it (``python -m shared aml-assets``).

Every component the catalog's pipelines use (``[pipelines.<name>.local] components``) and the
environment they run in get a version derived from their content: the component's YAML, every
file of its code folder and the environment's version; the environment's conda file and base
image. A changed line gives a new version; the same content, the same one. The ``azureml``
backend submits exactly these versions (:func:`pin`), never ``@latest``, and each run's tags
record them, so a run says which code it ran and a deploy that forgot to register fails
with the component's name, not with other code.

Computes are declared in ``infra/`` (with the identity that reads the lake); this module only
checks that the ones the catalog names exist.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml

from shared import ROOT
from shared.aml.catalog import load_catalog

ENVIRONMENT = "forecastops-forecast-env"
CONDA_FILE = ROOT / "pipelines" / "forecast" / "environment" / "conda.yml"
#: AML's Ubuntu 22.04 CPU base image, the curated images' base
BASE_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"
#: files of a code folder that are not code (AML's own upload leaves them out too)
_NOT_CODE = re.compile(r"(^|/)(__pycache__|\.pytest_cache|\.ipynb_checkpoints)(/|$)|\.py[co]$")
_REF = re.compile(r"^azureml:(?P<name>[A-Za-z0-9_.-]+)(?::(?P<version>[A-Za-z0-9_.-]+)|@(?P<label>[A-Za-z0-9_.-]+))$")


@dataclass(frozen=True)
class EnvironmentAsset:
    """One AML environment of this repo: its name, content version, conda file and base image."""

    name: str
    version: str
    conda_file: Path
    image: str

    @property
    def ref(self) -> str:
        return f"azureml:{self.name}:{self.version}"


@dataclass(frozen=True)
class ComponentAsset:
    """One AML component of this repo: its name, content version and YAML file."""

    name: str
    version: str
    file: Path

    @property
    def ref(self) -> str:
        return f"azureml:{self.name}:{self.version}"


def _digest(parts: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()[:16]


def _code_files(folder: Path) -> list[Path]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return sorted(p for p in files if not _NOT_CODE.search(p.relative_to(folder).as_posix()))


@cache
def environment(conda_file: Path = CONDA_FILE, image: str = BASE_IMAGE) -> EnvironmentAsset:
    """The pipelines' environment at the version its conda file and base image give."""
    version = _digest([conda_file.read_bytes(), image.encode()])
    return EnvironmentAsset(ENVIRONMENT, version, conda_file, image)


def component_version(file: Path, env: EnvironmentAsset) -> str:
    """A component's version: its YAML, its code folder's files (path and bytes), and the
    environment's version."""
    spec = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    parts = [file.read_bytes(), env.version.encode()]
    code = spec.get("code")
    if isinstance(code, str) and "://" not in code and not code.startswith("azureml:"):
        folder = (file.parent / code).resolve()
        for p in _code_files(folder):
            parts += [p.relative_to(folder).as_posix().encode(), p.read_bytes()]
    return _digest(parts)


@cache
def components() -> dict[str, ComponentAsset]:
    """Every component the catalog's pipelines use, by its registered name."""
    env = environment()
    found: dict[str, ComponentAsset] = {}
    for pipeline in load_catalog().values():
        for name, rel in (pipeline.local.components if pipeline.local else {}).items():
            if name not in found:
                file = ROOT / rel
                found[name] = ComponentAsset(name, component_version(file, env), file)
    return found


def pin(ref: str) -> str:
    """``azureml:<name>:<any>`` or ``azureml:<name>@<label>`` of one of this repo's components
    as the version the repo's content gives; any other reference unchanged."""
    m = _REF.match(ref)
    if m is None or m["name"] not in components():
        return ref
    return components()[m["name"]].ref


def computes() -> set[str]:
    """The computes the catalog's pipelines run on."""
    return {p.compute for p in load_catalog().values() if p.compute}


State = Literal["created", "exists", "missing", "failed"]


@dataclass(frozen=True)
class Outcome:
    """What registering one asset did: created, already there, missing or failed."""

    kind: Literal["environment", "component", "compute"]
    name: str
    version: str | None
    state: State
    detail: str = ""

    def line(self) -> str:
        what = f"{self.kind} {self.name}" + (f":{self.version}" if self.version else "")
        return f"{self.state:<8} {what}" + (f"  ({self.detail})" if self.detail else "")


def ensure(client: Any, *, check: bool = False, say: Callable[[Outcome], None] = lambda o: None) -> list[Outcome]:
    """Registers, through azure-ai-ml's ``client`` (an ``MLClient``), the environment and every
    component at their content's version, unless that version is there already (a second run
    creates nothing); checks that each compute the catalog names exists. ``check``: creates
    nothing, says what is missing. Each outcome is passed to ``say`` as it is known."""
    from azure.ai.ml import load_component
    from azure.ai.ml.entities import CommandComponent, Environment, ParallelComponent
    from azure.core.exceptions import ResourceNotFoundError

    outcomes: list[Outcome] = []

    def note(o: Outcome) -> None:
        outcomes.append(o)
        say(o)

    def there(getter: Callable[..., Any], *args: Any) -> bool:
        try:
            getter(*args)
            return True
        except ResourceNotFoundError:
            return False

    env = environment()
    if there(client.environments.get, env.name, env.version):
        note(Outcome("environment", env.name, env.version, "exists"))
    elif check:
        note(Outcome("environment", env.name, env.version, "missing"))
    else:
        client.environments.create_or_update(
            Environment(
                name=env.name,
                version=env.version,
                conda_file=str(env.conda_file),
                image=env.image,
                description="ForecastOps pipelines' environment (pipelines/forecast/environment/conda.yml)",
                tags={"product": "forecastops"},
            )
        )
        note(Outcome("environment", env.name, env.version, "created"))
    for c in components().values():
        if there(client.components.get, c.name, c.version):
            note(Outcome("component", c.name, c.version, "exists"))
            continue
        if check:
            note(Outcome("component", c.name, c.version, "missing"))
            continue
        component = load_component(source=c.file)
        component.version = c.version
        if isinstance(component, CommandComponent | ParallelComponent):
            component.environment = env.ref
        component.tags = {
            **(component.tags or {}),
            "product": "forecastops",
            "source": c.file.relative_to(ROOT).as_posix(),
        }
        client.components.create_or_update(component)
        note(Outcome("component", c.name, c.version, "created"))
    for name in sorted(computes()):
        found = there(client.compute.get, name)
        note(Outcome("compute", name, None, "exists" if found else "missing", "" if found else "declared in infra/"))
    return outcomes
