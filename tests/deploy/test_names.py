"""One source for the names: what the code names is what infra/ declares.

The code names lake containers (shared/aml/lakeuri.py), datastores over them (lake_<container>),
queues (shared/settings.py, the queue trigger), app settings (shared/settings.py, the bindings'
%expressions% and connections, local.settings.sample.json), a compute (pipelines/catalog.toml,
the pipelines' default_compute) and, through what each app and job does, the roles it needs.
Components and the environment are registered by ``python -m shared aml-assets``, not here.

infra/ is read as Azure would deploy it: pycep (the parser checkov uses) parses every template
and the small evaluator below expands main.bicep as main.<env>.bicepparam states it (parameters,
variables, loops, conditions, modules and their outputs) into the resources it declares. Values
only Azure knows (an identity's principal id, an endpoint) stay symbolic, so "the weather app's
identity holds Storage Blob Data Owner on raw" is a fact computed from the templates, not a grep.

Each check is a function that returns the problems it finds; the tests at the end run each on a
modified copy (a renamed container, a missing queue, a dropped role...) to show that it fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tomllib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.drivers import ROOT_DIR

ROOT = ROOT_DIR
INFRA = ROOT / "infra"

# --- reading the templates -----------------------------------------------------------------------

# pycep's tree as JSON; an identifier (pycep's BicepElement) becomes {"$ref": name}, so that a
# reference and a string literal of the same text stay apart
_DUMP = """
import json, sys
from pathlib import Path
from pycep import BicepParser
from pycep.transformer import BicepElement

def convert(value):
    if isinstance(value, BicepElement):
        return {"$ref": str(value)}
    if isinstance(value, dict):
        return {str(k): convert(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [convert(v) for v in value]
    return value

parser = BicepParser()
root = Path(sys.argv[1])
print(json.dumps({p.relative_to(root).as_posix(): convert(parser.parse(file_path=p))
                  for p in sorted(root.rglob("*.bicep"))}, default=str))
"""


def parse_templates(infra: Path) -> dict[str, dict]:
    """Every .bicep file under ``infra`` (path relative to it -> pycep's tree)."""
    python = ROOT / ".venv-tools" / "bin" / "python"
    if not python.exists():
        if os.environ.get("CI"):
            pytest.fail("pycep needs the tools venv (.venv-tools): `make setup`")
        pytest.skip("pycep needs the tools venv (.venv-tools): `make setup`")
    proc = subprocess.run([str(python), "-c", _DUMP, str(infra)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def bicepparam_values(path: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """A .bicepparam file's values, ``readEnvironmentVariable`` answered from ``env`` (else its
    default), as a deployment from that file would pass them."""
    env = env or {}
    read = r"readEnvironmentVariable\('(\w+)', '([^']*)'\)"
    values: dict[str, Any] = {}
    for name, expr in re.findall(r"^param (\w+) = (.+)$", path.read_text(), flags=re.M):
        expr = expr.strip()
        if m := re.fullmatch(read, expr):
            values[name] = env.get(m.group(1), m.group(2))
        elif m := re.fullmatch(r"(bool|int)\(" + read + r"\)", expr):
            text = env.get(m.group(2), m.group(3))
            values[name] = text == "true" if m.group(1) == "bool" else int(text)
        elif m := re.fullmatch(r"'([^']*)'", expr):
            values[name] = m.group(1)
        elif expr in ("true", "false"):
            values[name] = expr == "true"
        else:
            raise AssertionError(f"{path.name}: cannot read `param {name} = {expr}`")
    return values


# --- values ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """A resource as a value: its type and full name (a child's includes its parents')."""

    type: str
    name: str

    @property
    def short(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    def __str__(self) -> str:
        return f"{self.type.rsplit('/', 1)[-1]} {self.name}"


@dataclass(frozen=True)
class Runtime:
    """A value Azure makes when it deploys a resource: a property of it (a principal id, an
    endpoint, a connection string)."""

    of: Ref
    path: str

    def __str__(self) -> str:
        return f"{self.of}.{self.path}"


@dataclass(frozen=True)
class Opaque:
    """A value this evaluator does not compute (a function it does not model, listKeys)."""

    text: str


def concrete(value: Any) -> bool:
    return not isinstance(value, Runtime | Opaque)


def _fake(kind: str, *parts: Any) -> str:
    return hashlib.sha256(repr((kind, parts)).encode()).hexdigest()


@dataclass(frozen=True)
class Declared:
    """A resource the deployment declares (or references, ``existing``), evaluated."""

    ref: Ref
    body: dict[str, Any]
    existing: bool
    where: str  # the template (module chain) that declares it

    @property
    def properties(self) -> dict[str, Any]:
        value = self.body.get("properties")
        return value if isinstance(value, dict) else {}


# --- the evaluator ----------------------------------------------------------------------------------


class Template:
    """One template (main.bicep or a module) with its parameters' values: evaluates its
    expressions, its outputs, and the resources it and its modules declare."""

    def __init__(self, trees: dict[str, dict], infra: Path, path: str, params: dict[str, Any], where: str) -> None:
        self.trees, self.infra, self.path, self.where = trees, infra, path, where
        self.tree = trees[path]
        unknown = set(params) - set(self.tree.get("parameters", {}))
        assert not unknown, f"{path}: no parameter(s) {sorted(unknown)}"
        self.given = params
        self._cache: dict[str, Any] = {}

    # names ---------------------------------------------------------------------------------------

    def lookup(self, name: str, local: dict[str, Any]) -> Any:
        if name in local:
            return local[name]
        if name in self._cache:
            return self._cache[name]
        tree = self.tree
        if name in tree.get("parameters", {}):
            spec = tree["parameters"][name]
            if name in self.given:
                value = self.given[name]
            elif "default" in spec:
                value = self.eval(spec["default"], {})
            else:
                value = Opaque(f"parameter {name}")
        elif name in tree.get("variables", {}):
            value = self.eval(tree["variables"][name]["value"], {})
        elif name in tree.get("resources", {}):
            value = self._resource_value(name)
        elif name in tree.get("modules", {}):
            value = self._module_value(name)
        else:
            raise KeyError(f"{self.path}: unknown name {name}")
        self._cache[name] = value
        return value

    def _iterations(self, wrapper: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any], Any]]:
        """(body, loop variables, condition) for each item of a resource or module (a loop,
        a condition, or neither)."""
        if "loop_type" in wrapper:
            detail = wrapper["loop_type"]["detail"]
            array = detail["array_name"]
            items = self.eval(array if isinstance(array, dict) else {"$ref": array}, {})
            assert isinstance(items, list), f"{self.path}: cannot loop over {array}"
            for i, item in enumerate(items):
                local = {detail["item_name"]: item}
                if detail.get("index_name"):
                    local[detail["index_name"]] = i
                yield wrapper["config"], local, wrapper.get("condition")
        elif "condition" in wrapper and "config" in wrapper and isinstance(wrapper["config"], dict):
            yield wrapper["config"], {}, wrapper["condition"]
        else:
            yield wrapper, {}, None

    def _resource_ref(self, spec: dict[str, Any], body: dict[str, Any], local: dict[str, Any]) -> Ref:
        name = self.eval(body["name"], local)
        kind = spec["type"]
        if "parent" in body:
            parent = self.eval(body["parent"], local)
            assert isinstance(parent, Ref), f"{self.path}: parent {body['parent']}"
            name = f"{parent.name}/{name}"
        return Ref(kind, name if isinstance(name, str) else str(name))

    def _resource_value(self, symbol: str) -> Any:
        spec = self.tree["resources"][symbol]
        refs = [self._resource_ref(spec, body, local) for body, local, _ in self._iterations(spec["config"])]
        return refs if "loop_type" in spec["config"] else refs[0]

    def _module_value(self, symbol: str) -> Any:
        modules = list(self.modules(symbol, check_condition=False))
        return modules if "loop_type" in self.tree["modules"][symbol]["config"] else modules[0]

    def modules(self, symbol: str, check_condition: bool = True) -> Iterator[Template]:
        spec = self.tree["modules"][symbol]
        target = (Path(self.path).parent / spec["detail"]["path"]).as_posix()
        target = os.path.normpath(target)
        for body, local, condition in self._iterations(spec["config"]):
            if check_condition and condition is not None and self.eval(condition, local) is False:
                continue
            params = {k: self.eval(v, local) for k, v in (body.get("params") or {}).items()}
            name = self.eval(body["name"], local)
            yield Template(self.trees, self.infra, target, params, f"{self.where} > {name}")

    def output(self, name: str) -> Any:
        return self.eval(self.tree["outputs"][name]["value"], {})

    # expressions ----------------------------------------------------------------------------------

    def eval(self, expr: Any, local: dict[str, Any]) -> Any:
        if isinstance(expr, str):
            return self._interpolate(expr, local)
        if isinstance(expr, list):
            return [self.eval(e, local) for e in expr]
        if not isinstance(expr, dict):
            return expr  # int, bool, None
        if "$ref" in expr:
            return self.lookup(expr["$ref"], local)
        if "loop_type" in expr:  # a for-expression inside an array
            return [self.eval(body, {**local, **loc}) for body, loc, _ in self._iterations(expr)]
        if isinstance(expr.get("operator"), dict):
            return self._operator(expr["operator"], local)
        if isinstance(expr.get("function"), dict):
            return self._function(expr["function"], local)
        return {k.strip("'"): self.eval(v, local) for k, v in expr.items()}

    def _interpolate(self, text: str, local: dict[str, Any]) -> Any:
        parts = re.split(r"\$\{([^}]*)\}", text)
        if len(parts) == 1:
            return text
        values = [parts[0]]
        for i in range(1, len(parts), 2):
            values.append(self._path_expr(parts[i].strip(), local))
            values.append(parts[i + 1])
        if all(isinstance(v, str | int) and not isinstance(v, bool) for v in values):
            return "".join(str(v) for v in values)
        return Opaque(text)

    def _path_expr(self, text: str, local: dict[str, Any]) -> Any:
        m = re.fullmatch(r"(\w+)((?:\.\w+|\[\w+\])*)", text)
        if not m:
            return Opaque(text)
        value = self.lookup(m.group(1), local)
        for step in re.findall(r"\.(\w+)|\[(\w+)\]", m.group(2)):
            value = self._member(value, step[0]) if step[0] else self._index(value, self.lookup(step[1], local))
        return value

    def _member(self, value: Any, name: str) -> Any:
        if isinstance(value, dict):
            return value.get(name, Opaque(f"no {name}"))
        if isinstance(value, Ref):
            if name == "name":
                return value.short
            if name == "id":
                return value
            if name == "type":
                return value.type
            return Runtime(value, name)
        if isinstance(value, Runtime):
            return Runtime(value.of, f"{value.path}.{name}")
        if isinstance(value, Template):
            if name == "outputs":
                return _Outputs(value)
            return Opaque(f"module.{name}")
        if isinstance(value, _Outputs):
            return value.template.output(name)
        return Opaque(f"{value}.{name}")

    @staticmethod
    def _index(value: Any, index: Any) -> Any:
        if isinstance(value, list | dict) and concrete(index):
            try:
                return value[index]
            except (IndexError, KeyError, TypeError):
                return Opaque(f"[{index}]")
        return Opaque(f"[{index}]")

    def _access(self, operands: dict[str, Any], local: dict[str, Any]) -> Any:
        """``a.b.c``: pycep nests it as accessor(a, accessor(b, c))."""
        value = self.eval(operands["operand_1"], local)
        rest = operands["operand_2"]
        while isinstance(rest, dict) and "operator" in rest:
            inner = rest["operator"]
            if inner["type"] != "property_accessor":  # a.b[i]: not in these templates
                return Opaque("accessor")
            head = inner["operands"]["operand_1"]
            value = self._member(value, head["$ref"] if isinstance(head, dict) else head)
            rest = inner["operands"]["operand_2"]
        return self._member(value, rest["$ref"] if isinstance(rest, dict) else rest)

    _LOGIC: dict[str, Callable[[list[Any]], Any]] = {
        "equals": lambda v: v[0] == v[1],
        "not_equals": lambda v: v[0] != v[1],
        "and": all,
        "or": any,
        "not": lambda v: not v[0],
    }

    def _operator(self, op: dict[str, Any], local: dict[str, Any]) -> Any:
        kind, operands = op["type"], op["operands"]
        if kind == "property_accessor":
            return self._access(operands, local)
        if kind == "index_accessor":
            return self._index(self.eval(operands["operand_1"], local), self.eval(operands["operand_2"], local))
        if kind == "conditional":
            condition = self.eval(operands["condition"], local)
            if isinstance(condition, bool):
                return self.eval(operands["true_value" if condition else "false_value"], local)
            return Opaque("conditional")
        values = [self.eval(v, local) for v in operands.values()]
        if kind not in self._LOGIC or not all(concrete(v) for v in values):
            return Opaque(kind)
        return self._LOGIC[kind](values)

    def _load(self, kind: str, args: list[Any]) -> Any:
        text = (self.infra / Path(self.path).parent / args[0]).read_text()
        return text if kind == "load_text_content" else json.loads(text)

    _FUNCTIONS: dict[str, Callable[[list[Any]], Any]] = {
        "to_lower": lambda a: a[0].lower(),
        "unique_string": lambda a: "".join(c for c in _fake("unique_string", *a) if c.isalnum())[:13],
        "guid": lambda a: str(uuid.UUID(_fake("guid", *map(str, a))[:32])),
        "resource_id": lambda a: Ref(a[0], "/".join(x for x in a[1:] if isinstance(x, str))),
        "subscription_resource_id": lambda a: Ref(a[0], "/".join(x for x in a[1:] if isinstance(x, str))),
        "union": lambda a: {k: v for x in a for k, v in x.items()} if all(isinstance(x, dict) for x in a) else None,
        "concat": lambda a: [v for x in a for v in x] if all(isinstance(x, list) for x in a) else None,
        "empty": lambda a: len(a[0]) == 0,
        "json": lambda a: json.loads(a[0]) if isinstance(a[0], str) else None,
        "replace": lambda a: a[0].replace(a[1], a[2]) if all(isinstance(x, str) for x in a) else None,
        # ARM's string(): a string as it is, a number as JSON writes it (60, 0.45)
        "string": lambda a: (
            a[0] if isinstance(a[0], str) else json.dumps(a[0]) if isinstance(a[0], int | float) else None
        ),
    }

    def _function(self, fn: dict[str, Any], local: dict[str, Any]) -> Any:
        kind = fn["type"]
        args = [a for a in (self.eval(v, local) for v in (fn.get("parameters") or {}).values()) if a is not None]
        prop = fn.get("property_name")
        if kind == "subscription":
            return {"id": "/subscriptions/SUBSCRIPTION", "subscriptionId": "SUBSCRIPTION"}.get(prop, Opaque(kind))
        if kind == "environment":
            return {"suffixes": {"storage": "core.windows.net"}}.get(prop, Opaque(kind))
        if not all(concrete(a) for a in args):
            return Opaque(kind)
        if kind in ("load_text_content", "load_json_content"):
            return self._load(kind, args)
        value = self._FUNCTIONS[kind](args) if kind in self._FUNCTIONS else None
        return Opaque(kind) if value is None else value

    # what it declares ---------------------------------------------------------------------------

    def declared(self) -> Iterator[Declared]:
        """Every resource this template and its modules declare (conditions that are false
        leave theirs out)."""
        for symbol, spec in self.tree.get("resources", {}).items():
            for body, local, condition in self._iterations(spec["config"]):
                if condition is not None and self.eval(condition, local) is False:
                    continue
                evaluated = {k: self.eval(v, local) for k, v in body.items() if k not in ("parent", "dependsOn")}
                evaluated["name"] = self._resource_ref(spec, body, local).name
                ref = self._resource_ref(spec, body, local)
                yield Declared(ref, evaluated, bool(spec.get("existing")), f"{self.where} ({symbol})")
        for symbol in self.tree.get("modules", {}):
            for module in self.modules(symbol):
                yield from module.declared()


@dataclass(frozen=True)
class _Outputs:
    template: Template


# --- the deployment ---------------------------------------------------------------------------------

#: built-in roles (Azure's fixed ids) and what each includes
ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "Storage Blob Data Reader",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "f6c7c914-8db3-469d-8ca1-694a8f32e121": "AzureML Data Scientist",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "00482a5a-887f-4fb3-b363-3b7fe8e74483": "Key Vault Administrator",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}
INCLUDES = {
    "Storage Blob Data Owner": {"Storage Blob Data Contributor", "Storage Blob Data Reader"},
    "Storage Blob Data Contributor": {"Storage Blob Data Reader"},
    "Key Vault Administrator": {"Key Vault Secrets User"},
}


@dataclass(frozen=True)
class Assignment:
    principal: Any
    role: str
    scope: Any
    where: str


@dataclass(frozen=True)
class App:
    """A function app of the deployment: its azd service, blueprints, settings, identity."""

    service: str
    name: str
    blueprints: frozenset[str]
    settings: dict[str, Any]
    principal: Any
    where: str


@dataclass
class Deployment:
    resources: list[Declared]

    def of_type(self, kind: str, existing: bool = False) -> list[Declared]:
        return [r for r in self.resources if r.ref.type == kind and (existing or not r.existing)]

    def assignments(self) -> list[Assignment]:
        found = []
        for r in self.of_type("Microsoft.Authorization/roleAssignments"):
            role = r.properties.get("roleDefinitionId")
            name = ROLES.get(role.name, role.name) if isinstance(role, Ref) else str(role)
            scope = r.body.get("scope", Opaque("resource group"))
            found.append(Assignment(r.properties.get("principalId"), name, scope, r.where))
        return found

    def apps(self) -> list[App]:
        settings_of = {r.ref.name.rsplit("/", 1)[0]: r.properties for r in self.of_type("Microsoft.Web/sites/config")}
        found = []
        for site in self.of_type("Microsoft.Web/sites"):
            service = (site.body.get("tags") or {}).get("azd-service-name")
            settings = settings_of.get(site.ref.name, {})
            functions = settings.get("FORECASTOPS_FUNCTIONS")
            blueprints = (
                frozenset(n.strip() for n in functions.split(",")) if isinstance(functions, str) else frozenset()
            )
            client = settings.get("AZURE_CLIENT_ID")
            principal = Runtime(client.of, "properties.principalId") if isinstance(client, Runtime) else None
            found.append(App(str(service), site.ref.name, blueprints, settings, principal, site.where))
        return found

    def account_of(self, value: Any) -> Ref | None:
        """The storage account an endpoint (``<account>.properties.primaryEndpoints.*``) or an
        account name names."""
        if isinstance(value, Runtime) and value.of.type == "Microsoft.Storage/storageAccounts":
            return value.of
        if isinstance(value, str):
            return Ref("Microsoft.Storage/storageAccounts", value)
        return None

    def children(self, parent: Ref, kind: str) -> list[str]:
        prefix = parent.name + "/"
        return sorted(r.ref.short for r in self.of_type(kind) if r.ref.name.startswith(prefix))


def evaluate(trees: dict[str, dict], infra: Path, params: dict[str, Any]) -> Deployment:
    main = Template(trees, infra, "main.bicep", params, "main.bicep")
    return Deployment(list(main.declared()))


def deployment_params(env_type: str = "dev", **overrides: Any) -> dict[str, Any]:
    """main.bicep's parameters as main.<env>.bicepparam gives them, for a deployment whose
    apps are wired (everything the templates can declare is declared)."""
    return bicepparam_values(INFRA / f"main.{env_type}.bicepparam") | {"appsDeployed": True} | overrides


# --- what the code names --------------------------------------------------------------------------

INGEST = frozenset({"ingest_weather", "ingest_shipments", "ingest_demographics"})
BRIDGE = frozenset({"trigger_aml", "poll_aml_durable"})
EVERY = INGEST | BRIDGE

#: Settings fields whose default does not serve Azure: the blueprints whose app must set them
MUST_SET: dict[str, tuple[frozenset[str], str]] = {
    "lake_backend": (EVERY, "the default `local` is a folder on the worker"),
    "lake_storage_service_uri": (EVERY, "no default: the lake's blob endpoint (identity-based LAKE_STORAGE)"),
    "lake_storage_queue_uri": (EVERY, "no default: the lake's queue endpoint (batch queue, poison queues)"),
    "applicationinsights_connection_string": (EVERY, "no default: without it the app sends no metric"),
    "functions": (EVERY, "empty registers every blueprint in every app"),
    "blob_trigger_source": (INGEST, "the default scans containers; Flex Consumption and ADLS Gen2 need EventGrid"),
    "aml_backend": (BRIDGE, "the default runs pipelines on the worker itself"),
    "aml_subscription_id": (BRIDGE, "no default: the workspace's subscription"),
    "aml_resource_group": (BRIDGE, "no default: the workspace's resource group"),
    "aml_workspace": (BRIDGE, "no default: the workspace"),
}
#: Settings fields whose default serves Azure as well, and why
SAFE_DEFAULTS = {
    "lake_root": "the local lake's folder; unused once lake_backend is blob",
    "lake_storage": "a connection string; in Azure the identity-based LAKE_STORAGE__* replace it",
    "lake_chunk_bytes": "4 MiB blocks suit Blob Storage and the workers' memory",
    "log_level": "INFO",
    "local_runs_root": "the local backend's folder; the bridge runs the azureml backend",
    "watch_events": "false: the watch polls until AML's job events are wired (AML_EVENTS_ENABLED)",
    "staleness_schedule": "daily at 06:00 UTC (the timer binding still needs the app setting: checked apart)",
    "batch_queue": "forecastops-batches, the queue infra declares (checked apart)",
    "ingest_queue": "ingest-requests, the prefix of the request queues infra declares (checked apart)",
    "ingest_sync_max_bytes": "32 MiB: a file one HTTP request ingests well within 230 s",
    "reject_ratio_max": "half a file rejected is a file in the wrong layout, not bad rows",
    "reject_file_min_rows": "a small file's few bad rows are rejected one by one",
    "future_days_max": "8 days: a week's data arrives after the week, never long before it",
    "batch_schedule": "Mondays 09:00 UTC (the timer binding still needs the app setting: checked apart)",
    "batch_incomplete": "wait: no batch on incomplete data unless asked",
    "retrain": "changed: retrain only what changed",
    "stale_retrain": "next_batch",
    "model_versions_kept": "10 versions a group (a quarter of weekly retrains), plus every production one",
    "watch_safety_poll_s": "900 s",
    "extra_mappings_dir": "none: in Azure the mappings ship in the package",
}
#: what each blueprint does in the lake (the architecture's least privilege): containers it
#: writes, and whether it sends to or takes from the lake's queues
LAKE_USE: dict[str, tuple[tuple[str, ...], bool]] = {
    "ingest_weather": (("curated", "quarantine", "batches"), True),
    "ingest_shipments": (("curated", "quarantine", "batches"), True),
    "ingest_demographics": (("curated", "quarantine", "batches"), True),
    "trigger_aml": ((), False),
    "poll_aml_durable": (("curated", "runs", "models", "batches"), True),
}


@dataclass(frozen=True)
class Binding:
    function: str
    blueprint: str
    type: str
    values: dict[str, Any]


@dataclass(frozen=True)
class Code:
    """The names the code uses, from the code itself."""

    containers: tuple[str, ...]
    datastores: dict[str, str]  # datastore -> container
    queues: dict[str, str]  # app setting naming a queue (a Settings field *_queue) -> its default
    queue_suffixes: dict[str, tuple[str, ...]]  # what the queue triggers add to it (the queue itself: "")
    computes: dict[str, str]  # compute -> where the code names it
    job_containers: frozenset[str]  # containers a job reads (its datastores' URIs)
    output_container: str  # where every step writes its outputs
    settings_fields: dict[str, tuple[str, ...]]  # field -> app-setting names (aliases)
    bindings: tuple[Binding, ...]
    sample: frozenset[str]  # local.settings.sample.json's names
    adf_secrets: frozenset[str]  # Key Vault secrets ADF reads
    adf_sink_containers: frozenset[str]  # lake containers ADF writes


@cache
def code_names() -> Code:
    from pydantic import AliasChoices

    from shared.aml.jobspec import lake_uri as job_lake_uri
    from shared.aml.lakeuri import LAKE_CONTAINERS, container_of, datastore_names
    from shared.settings import Settings
    from tests.drivers import indexed_functions

    computes = {}
    catalog = tomllib.loads((ROOT / "pipelines" / "catalog.toml").read_text())
    for name, spec in catalog["pipelines"].items():
        if spec.get("compute"):
            computes[spec["compute"]] = f"pipelines/catalog.toml [pipelines.{name}]"
    for path in sorted((ROOT / "pipelines").glob("*/pipeline.yml")):
        compute = (yaml.safe_load(path.read_text()).get("settings") or {}).get("default_compute")
        if compute:
            computes[compute.removeprefix("azureml:")] = path.relative_to(ROOT).as_posix()
    texts = [p.read_text() for p in (ROOT / "pipelines").rglob("*") if p.suffix in (".yml", ".toml", ".md")]
    stores = {m for t in texts for m in re.findall(r"azureml://datastores/(\w+)/paths/", t)}
    fields = {}
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        fields[name] = tuple(alias.choices) if isinstance(alias, AliasChoices) else (name,)
    bindings = []
    for fname, fn in indexed_functions().items():
        # a blueprint's functions live in its folder's modules (poll_aml_durable.weekly_batch...)
        module = fn.get_user_function().__module__.split(".")[0]
        for b in fn.get_bindings():
            bindings.append(Binding(fname, module, b.type, b.get_dict_repr()))
    queues = {fields[f][0]: info.default for f, info in Settings.model_fields.items() if f.endswith("_queue")}
    # a setting that names a family of queues (the ingest apps': <prefix>-<source>) is read by
    # queue triggers as "%SETTING%-<source>"; one that names a queue, as "%SETTING%" or not at all
    suffixes: dict[str, set[str]] = {}
    for b in bindings:
        m = re.fullmatch(r"%(\w+)%(.*)", str(b.values.get("queueName", ""))) if b.type == "queueTrigger" else None
        if m and m.group(1) in queues:
            suffixes.setdefault(m.group(1), set()).add(m.group(2))
    secrets: set[str] = set()
    sinks: set[str] = set()
    for path in (ROOT / "adf").rglob("*.json"):
        text = path.read_text()
        secrets |= set(re.findall(r"'secrets/([\w-]+)\?api-version", text))
        doc = json.loads(text)
        location = doc.get("properties", {}).get("typeProperties", {}).get("location", {})
        if location.get("type") == "AzureBlobFSLocation" and isinstance(location.get("fileSystem"), str):
            sinks.add(location["fileSystem"])
    output = job_lake_uri("runs/r/outputs/s/o")
    return Code(
        containers=tuple(LAKE_CONTAINERS),
        datastores={d: container_of(d) or "" for d in datastore_names()},
        queues=queues,
        queue_suffixes={s: tuple(sorted(suffixes.get(s, {""}))) for s in queues},
        computes=computes,
        job_containers=frozenset(container_of(s) or s for s in stores),
        output_container=container_of(output.split("/")[3]) or output,
        settings_fields=fields,
        bindings=tuple(bindings),
        sample=frozenset(json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]),
        adf_secrets=frozenset(secrets),
        adf_sink_containers=frozenset(sinks),
    )


# --- the checks: each returns its problems -----------------------------------------------------------


def lake_account(dep: Deployment) -> Ref | None:
    """The storage account every app reaches as its lake (LAKE_STORAGE__blobServiceUri)."""
    accounts = {dep.account_of(a.settings.get("LAKE_STORAGE__blobServiceUri")) for a in dep.apps()}
    return accounts.pop() if len(accounts) == 1 else None


def workspace(dep: Deployment) -> Ref | None:
    names = {a.settings.get("AML_WORKSPACE") for a in dep.apps() if "AML_WORKSPACE" in a.settings}
    if len(names) != 1:
        return None
    return Ref("Microsoft.MachineLearningServices/workspaces", str(names.pop()))


def check_containers(dep: Deployment, code: Code) -> list[str]:
    lake = lake_account(dep)
    if lake is None:
        return ["the apps do not reach one lake account (LAKE_STORAGE__blobServiceUri)"]
    declared = set(dep.children(Ref(lake.type, f"{lake.name}/default"), f"{lake.type}/blobServices/containers"))
    problems = [
        f"container {c} (shared/aml/lakeuri.py) is not declared in the lake"
        for c in code.containers
        if c not in declared
    ]
    problems += [
        f"container {c} is declared in the lake but the code names no such container"
        for c in sorted(declared - set(code.containers))
    ]
    for b in code.bindings:
        if b.type == "blobTrigger" and b.values["path"].split("/")[0] not in declared:
            problems.append(f"{b.function} follows {b.values['path']}: its container is not declared")
    return problems


def check_datastores(dep: Deployment, code: Code) -> list[str]:
    ws, lake = workspace(dep), lake_account(dep)
    if ws is None or lake is None:
        return ["no single workspace (AML_WORKSPACE) and lake to hold the datastores"]
    stores = {r.ref.short: r for r in dep.of_type(f"{ws.type}/datastores") if r.ref.name.startswith(ws.name + "/")}
    problems = []
    for name, container in code.datastores.items():
        store = stores.get(name)
        if store is None:
            problems.append(f"datastore {name} (shared/aml/lakeuri.py) is not declared in workspace {ws.name}")
            continue
        props = store.properties
        if props.get("filesystem") != container or props.get("accountName") != lake.short:
            problems.append(f"datastore {name} does not address container {container} of the lake")
        if (props.get("credentials") or {}).get("credentialsType") != "None":
            problems.append(f"datastore {name} keeps a credential: the jobs read with their identity")
    problems += [
        f"datastore {s} is declared but the code names no such datastore"
        for s in sorted(set(stores) - set(code.datastores))
    ]
    return problems


def _setting_names(value: str) -> list[str]:
    """The app settings a binding expression reads (``%NAME%``, alone or within text)."""
    return re.findall(r"%(\w+)%", value)


def _resolve(value: str, settings: dict[str, Any]) -> Any:
    """A binding expression with the app's settings put in, as the host resolves it; None when
    the app lacks one of them, the setting's value itself when it is not a known string."""
    names = _setting_names(value)
    if any(n not in settings for n in names):
        return None
    if any(not isinstance(settings[n], str) for n in names):
        return next(settings[n] for n in names if not isinstance(settings[n], str))
    return re.sub(r"%(\w+)%", lambda m: settings[m.group(1)], value)


def check_queues(dep: Deployment, code: Code) -> list[str]:
    lake = lake_account(dep)
    if lake is None:
        return ["no lake account"]
    declared = set(dep.children(Ref(lake.type, f"{lake.name}/default"), f"{lake.type}/queueServices/queues"))
    problems = []
    for setting, default in code.queues.items():
        for suffix in code.queue_suffixes.get(setting, ("",)):
            if default + suffix not in declared:
                problems.append(f"queue {default + suffix} (the default of {setting}) is not declared in the lake")
    for app in dep.apps():
        problems += _app_queue_problems(app, code, declared)
    return problems


def _app_queue_problems(app: App, code: Code, declared: set[str]) -> list[str]:
    problems = []
    # every app reads the settings: the ingest apps announce on the batch queue, the bridge reads it
    for setting in code.queues:
        value = app.settings.get(setting)
        if value is None:
            problems.append(f"{app.service}: no {setting}, which names a queue")
        elif concrete(value) and any(value + s not in declared for s in code.queue_suffixes.get(setting, ("",))):
            problems.append(f"{app.service}: {setting}={value} names a queue the lake does not declare")
    for b in code.bindings:
        if b.type != "queueTrigger" or b.blueprint not in app.blueprints:
            continue
        queue = b.values["queueName"]
        resolved = _resolve(queue, app.settings)
        if resolved is None:
            problems.append(f"{app.service}: {b.function} reads {queue}, which the app does not set")
        elif concrete(resolved) and resolved not in declared:
            problems.append(f"{app.service}: {b.function} reads queue {resolved}, which the lake does not declare")
    return problems


def _app_has(settings: dict[str, Any], names: tuple[str, ...]) -> bool:
    return any(n in settings or any(k.startswith(n + "__") for k in settings) for n in names)


def _classification_problems(code: Code) -> list[str]:
    """Every Settings field is either one Azure must set or one whose default serves it, and
    local.settings.sample.json lists it."""
    classified = set(MUST_SET) | set(SAFE_DEFAULTS)
    problems = [
        f"Settings.{f} is new: say in MUST_SET or SAFE_DEFAULTS whether Azure must set it"
        for f in sorted(set(code.settings_fields) - classified)
    ]
    problems += [
        f"MUST_SET/SAFE_DEFAULTS name Settings.{f}, which no longer exists"
        for f in sorted(classified - set(code.settings_fields))
    ]
    for field_name, names in code.settings_fields.items():
        if not any(n in code.sample or n.split("__")[0] in code.sample for n in names):
            problems.append(f"local.settings.sample.json does not list {names[0]} (Settings.{field_name})")
    return problems


def _value_problems(app: App, code: Code) -> list[str]:
    """The settings the app needs are there, and every value the Bicep states is one it accepts."""
    from pydantic import ValidationError

    from shared.settings import Settings

    problems = []
    for field_name, (blueprints, why) in MUST_SET.items():
        names = code.settings_fields.get(field_name, ())
        if app.blueprints & blueprints and names and not _app_has(app.settings, names):
            problems.append(f"{app.service}: {names[0]} is not set ({why})")
    known = {n for names in code.settings_fields.values() for n in names}
    for name, value in app.settings.items():
        if name in known and isinstance(value, str):
            try:
                Settings(**{name: value})
            except ValidationError as e:
                problems.append(
                    f"{app.service}: {name}={value!r} is not a value the app accepts: {e.errors()[0]['msg']}"
                )
    return problems


#: the parts of an identity-based connection each trigger reads
_CONNECTION_PARTS = {"blobTrigger": ("blobServiceUri", "queueServiceUri"), "queueTrigger": ("queueServiceUri",)}


def _binding_problems(app: App, code: Code) -> list[str]:
    """What the bindings of the app's blueprints read from its settings: %expressions% and
    connections."""
    problems = []
    for b in code.bindings:
        if b.blueprint not in app.blueprints:
            continue
        for key, value in b.values.items():
            for setting in _setting_names(value) if isinstance(value, str) else []:
                if setting not in app.settings:
                    problems.append(
                        f"{app.service}: {b.function}'s {key} reads %{setting}%, which the app does not set"
                    )
        connection = b.values.get("connection")
        if not connection or connection in app.settings:
            continue
        for part in _CONNECTION_PARTS.get(b.type, ()):
            if f"{connection}__{part}" not in app.settings:
                problems.append(f"{app.service}: {b.function}'s connection {connection} has no {connection}__{part}")
        if f"{connection}__credential" in app.settings and f"{connection}__clientId" not in app.settings:
            problems.append(f"{app.service}: {connection} uses an identity but names none ({connection}__clientId)")
    return problems


def check_app_settings(dep: Deployment, code: Code) -> list[str]:
    problems = _classification_problems(code)
    apps = dep.apps()
    if not apps:
        return [*problems, "the deployment declares no function app"]
    for app in apps:
        problems += _value_problems(app, code) + _binding_problems(app, code)
    return problems


def check_computes(dep: Deployment, code: Code) -> list[str]:
    ws = workspace(dep)
    if ws is None:
        return ["no single workspace (AML_WORKSPACE)"]
    computes = {r.ref.short: r for r in dep.of_type(f"{ws.type}/computes") if r.ref.name.startswith(ws.name + "/")}
    problems = []
    for name, where in code.computes.items():
        compute = computes.get(name)
        if compute is None:
            problems.append(f"compute {name} ({where}) is not declared in workspace {ws.name}")
            continue
        props = compute.properties
        inner = props.get("properties") or {}
        if props.get("computeType") != "AmlCompute" or (inner.get("scaleSettings") or {}).get("minNodeCount") != 0:
            problems.append(f"compute {name} is not an AmlCompute cluster that scales to zero")
        if (compute.body.get("identity") or {}).get("type") != "SystemAssigned":
            problems.append(f"compute {name} has no system-assigned identity for the jobs to read the lake with")
    return problems


@dataclass(frozen=True)
class Need:
    principal: Any
    role: str
    scope: Ref
    why: str


def _grants(assignment: Assignment, need: Need) -> bool:
    if assignment.principal != need.principal:
        return False
    if assignment.role != need.role and need.role not in INCLUDES.get(assignment.role, set()):
        return False
    scope = assignment.scope
    if not isinstance(scope, Ref):
        return False
    # a role on a resource holds on its children (an account's containers, a vault's secrets)
    return scope == need.scope or (
        need.scope.type.startswith(scope.type + "/") and need.scope.name.startswith(scope.name + "/")
    )


@dataclass(frozen=True)
class _Lake:
    account: Ref

    def container(self, name: str) -> Ref:
        return Ref(f"{self.account.type}/blobServices/containers", f"{self.account.name}/default/{name}")


def _host_needs(dep: Deployment, app: App) -> list[Need]:
    """The Functions host's own storage (identity-based AzureWebJobsStorage) and telemetry."""
    who, needs = app.principal, []
    host = dep.account_of(app.settings.get("AzureWebJobsStorage__accountName"))
    if host is not None:
        needs.append(
            Need(who, "Storage Blob Data Owner", host, f"{app.service}: its host storage (AzureWebJobsStorage)")
        )
        needs.append(Need(who, "Storage Queue Data Contributor", host, f"{app.service}: its host storage"))
        if "poll_aml_durable" in app.blueprints:
            needs.append(Need(who, "Storage Table Data Contributor", host, f"{app.service}: the durable task hub"))
    insights = app.settings.get("APPLICATIONINSIGHTS_CONNECTION_STRING")
    if "APPLICATIONINSIGHTS_AUTHENTICATION_STRING" in app.settings and isinstance(insights, Runtime):
        needs.append(
            Need(who, "Monitoring Metrics Publisher", insights.of, f"{app.service}: telemetry with its identity")
        )
    return needs


def _app_lake_needs(app: App, code: Code, lake: _Lake) -> list[Need]:
    """The lake: the triggers of the app's blueprints, and what each blueprint writes."""
    who, needs = app.principal, []
    for b in code.bindings:
        if b.blueprint not in app.blueprints or b.values.get("connection") != "LAKE_STORAGE":
            continue
        if b.type == "blobTrigger":
            container = lake.container(b.values["path"].split("/")[0])
            needs.append(Need(who, "Storage Blob Data Owner", container, f"{app.service}: {b.function} (blob trigger)"))
            needs.append(
                Need(who, "Storage Queue Data Contributor", lake.account, f"{app.service}: {b.function}'s poison queue")
            )
        elif b.type == "queueTrigger":
            needs.append(
                Need(
                    who, "Storage Queue Data Contributor", lake.account, f"{app.service}: {b.function} (queue trigger)"
                )
            )
    for blueprint in sorted(app.blueprints):
        writes, queues = LAKE_USE.get(blueprint, ((), False))
        for c in writes:
            needs.append(
                Need(who, "Storage Blob Data Contributor", lake.container(c), f"{app.service}: {blueprint} writes {c}/")
            )
        if queues:
            needs.append(
                Need(
                    who,
                    "Storage Queue Data Contributor",
                    lake.account,
                    f"{app.service}: {blueprint} uses the batch queue",
                )
            )
    return needs


def _aml_needs(dep: Deployment, code: Code, lake: _Lake, ws: Ref) -> list[Need]:
    """The jobs (the compute's identity) and the workspace (its vault)."""
    needs = []
    for r in dep.of_type(f"{ws.type}/computes"):
        if r.ref.short not in code.computes:
            continue
        who, name = Runtime(r.ref, "identity.principalId"), r.ref.short
        for c in sorted(code.job_containers - {code.output_container}):
            needs.append(
                Need(who, "Storage Blob Data Reader", lake.container(c), f"compute {name}: jobs read lake_{c}")
            )
        outputs = lake.container(code.output_container)
        needs.append(Need(who, "Storage Blob Data Contributor", outputs, f"compute {name}: the steps' outputs"))
    for r in dep.of_type(ws.type):  # a workspace the deployment creates, bound to its vault
        vault = r.properties.get("keyVault")
        if isinstance(vault, Ref):
            who = Runtime(r.ref, "identity.principalId")
            needs.append(Need(who, "Key Vault Administrator", vault, f"workspace {r.ref.name} on its RBAC-only vault"))
    return needs


def _factory_needs(dep: Deployment, code: Code, lake: _Lake) -> list[Need]:
    """Data Factory: the function keys it reads, the lake containers it copies into."""
    needs = []
    for factory in dep.of_type("Microsoft.DataFactory/factories"):
        who = Runtime(factory.ref, "identity.principalId")
        for vault in dep.of_type("Microsoft.KeyVault/vaults"):
            for secret in sorted(code.adf_secrets):
                ref = Ref("Microsoft.KeyVault/vaults/secrets", f"{vault.ref.name}/{secret}")
                needs.append(Need(who, "Key Vault Secrets User", ref, f"Data Factory reads {secret}"))
        for c in sorted(code.adf_sink_containers):
            needs.append(
                Need(who, "Storage Blob Data Contributor", lake.container(c), f"Data Factory copies into {c}/")
            )
    return needs


def role_needs(dep: Deployment, code: Code) -> list[Need]:
    """Every role the apps, the jobs and Data Factory need, from what the code does."""
    account, ws = lake_account(dep), workspace(dep)
    assert account is not None and ws is not None, "no lake account or workspace to check roles on"
    lake = _Lake(account)
    needs = []
    for app in dep.apps():
        needs += _host_needs(dep, app) + _app_lake_needs(app, code, lake)
        if app.settings.get("FORECASTOPS_AML_BACKEND") == "azureml":
            needs.append(
                Need(app.principal, "AzureML Data Scientist", ws, f"{app.service}: submits and watches the pipelines")
            )
    return needs + _aml_needs(dep, code, lake, ws) + _factory_needs(dep, code, lake)


def check_roles(dep: Deployment, code: Code) -> list[str]:
    if lake_account(dep) is None or workspace(dep) is None:
        return ["no lake account or workspace to check roles on"]
    assignments = dep.assignments()
    problems = []
    for need in role_needs(dep, code):
        if need.principal is None:
            problems.append(f"{need.why}: no identity to hold {need.role}")
        elif not any(_grants(a, need) for a in assignments):
            problems.append(f"{need.why}: no {need.role} on {need.scope}")
    return problems


CHECKS: dict[str, Callable[[Deployment, Code], list[str]]] = {
    "containers": check_containers,
    "datastores": check_datastores,
    "queues": check_queues,
    "app settings": check_app_settings,
    "computes": check_computes,
    "roles": check_roles,
}


# --- the tests: infra/ as it is ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trees() -> dict[str, dict]:
    return parse_templates(INFRA)


@pytest.fixture(scope="module", params=["dev", "prod"])
def deployment(request: pytest.FixtureRequest, trees: dict[str, dict]) -> Deployment:
    return evaluate(trees, INFRA, deployment_params(request.param))


def test_the_evaluator_finds_the_apps_the_lake_and_the_workspace(deployment):
    apps = {a.service: a for a in deployment.apps()}
    assert set(apps) == {"ingest-weather", "ingest-shipments", "ingest-demographics", "bridge"}
    assert apps["bridge"].blueprints == BRIDGE and apps["ingest-weather"].blueprints == {"ingest_weather"}
    assert all(isinstance(a.principal, Runtime) for a in apps.values())
    assert len({a.principal for a in apps.values()}) == 4  # an identity each
    lake = lake_account(deployment)
    assert lake is not None and lake.short.startswith("stlake")
    assert workspace(deployment) is not None


@pytest.mark.parametrize("check", CHECKS)
def test_what_the_code_names_is_declared_in_infra(deployment, check):
    assert CHECKS[check](deployment, code_names()) == []


def test_the_code_names_every_kind_of_name_the_checks_cover():
    """The checks compare something: the code's lists are not empty."""
    code = code_names()
    assert "raw" in code.containers and set(code.datastores) == {f"lake_{c}" for c in code.containers}
    assert code.queues == {
        "FORECASTOPS_BATCH_QUEUE": "forecastops-batches",
        "FORECASTOPS_INGEST_QUEUE": "ingest-requests",
    }
    assert code.queue_suffixes == {
        "FORECASTOPS_BATCH_QUEUE": ("",),
        "FORECASTOPS_INGEST_QUEUE": ("-demographics", "-shipments", "-weather"),
    }
    assert set(code.computes) == {"cpu-cluster"}
    assert "curated" in code.job_containers and code.output_container == "runs"
    assert {b.type for b in code.bindings} >= {"blobTrigger", "queueTrigger", "timerTrigger"}
    assert "bridge-function-key" in code.adf_secrets and code.adf_sink_containers == {"raw"}


def test_every_settings_field_is_either_set_in_azure_or_safe_by_default():
    code = code_names()
    assert set(MUST_SET) | set(SAFE_DEFAULTS) == set(code.settings_fields)
    assert not set(MUST_SET) & set(SAFE_DEFAULTS)


# --- each check can fail: the same checks on a modified copy --------------------------------------------


@pytest.fixture(scope="module")
def copy_infra(tmp_path_factory: pytest.TempPathFactory) -> Callable[[dict[str, list[tuple[str, str]]]], Deployment]:
    """A copy of infra/ (and adf/, which datafactory.bicep loads, and the health policy, which the
    workbook and the alerts load, and the registry of sources, which main.bicep loads) with some
    edits, evaluated."""

    def make(edits: dict[str, list[tuple[str, str]]]) -> Deployment:
        base = tmp_path_factory.mktemp("infra")
        shutil.copytree(INFRA, base / "infra")
        shutil.copytree(ROOT / "adf", base / "adf")
        (base / "pipelines").mkdir()
        shutil.copy(ROOT / "pipelines" / "health_policy.json", base / "pipelines")
        (base / "shared").mkdir()
        shutil.copy(ROOT / "shared" / "sources.json", base / "shared")  # main.bicep loads the registry
        for rel, pairs in edits.items():
            path = base / "infra" / rel
            text = path.read_text()
            for old, new in pairs:
                assert text.count(old) == 1, f"{rel}: {old!r}"
                text = text.replace(old, new)
            path.write_text(text)
        return evaluate(parse_templates(base / "infra"), base / "infra", deployment_params("dev"))

    return make


def _reported(problems: list[str], *words: str) -> bool:
    return any(all(w in p for w in words) for p in problems)


def test_a_container_renamed_in_infra_or_in_the_code_is_reported(copy_infra, deployment):
    renamed = copy_infra({"main.bicep": [("'quarantine', 'runs'", "'quarantined', 'runs'")]})
    problems = check_containers(renamed, code_names())
    assert _reported(problems, "container quarantine ", "not declared")
    assert _reported(problems, "container quarantined ", "names no such container")
    code = replace(code_names(), containers=(*code_names().containers, "archive"))
    assert _reported(check_containers(deployment, code), "container archive ", "not declared")


def test_a_datastore_the_code_names_but_infra_lacks_is_reported(copy_infra, deployment):
    renamed = copy_infra({"modules/aml.bicep": [("name: 'lake_${container}'", "name: 'lake-${container}'")]})
    problems = check_datastores(renamed, code_names())
    assert _reported(problems, "datastore lake_curated", "not declared")
    code = replace(code_names(), datastores={**code_names().datastores, "lake_archive": "archive"})
    assert _reported(check_datastores(deployment, code), "datastore lake_archive", "not declared")


def test_a_missing_queue_or_a_queue_setting_naming_another_queue_is_reported(copy_infra, deployment):
    gone = copy_infra({"main.bicep": [("    queues: concat([batchQueue], ingestQueues)\n", "    queues: []\n")]})
    problems = check_queues(gone, code_names())
    assert _reported(problems, "queue forecastops-batches", "not declared")
    assert _reported(problems, "weekly_batch_queue reads queue forecastops-batches")
    assert _reported(problems, "queue ingest-requests-weather (the default of FORECASTOPS_INGEST_QUEUE)")
    assert _reported(problems, "ingest-weather: ingest_weather_queue reads queue ingest-requests-weather")
    one = copy_infra(
        {"main.bicep": [("    queues: concat([batchQueue], ingestQueues)\n", "    queues: [batchQueue]\n")]}
    )
    assert _reported(check_queues(one, code_names()), "FORECASTOPS_INGEST_QUEUE=ingest-requests names a queue")
    other = copy_infra(
        {"modules/function-app.bicep": [("FORECASTOPS_BATCH_QUEUE: batchQueue", "FORECASTOPS_BATCH_QUEUE: 'batches'")]}
    )
    assert _reported(check_queues(other, code_names()), "FORECASTOPS_BATCH_QUEUE=batches names a queue")
    code = replace(code_names(), queues={**code_names().queues, "FORECASTOPS_RETRAIN_QUEUE": "forecastops-weeks"})
    assert _reported(check_queues(deployment, code), "queue forecastops-weeks")


def test_an_app_setting_the_app_needs_but_infra_lacks_is_reported(copy_infra):
    gone = copy_infra(
        {
            "main.bicep": [
                ("      AML_WORKSPACE: amlName\n", ""),
                ("      FORECASTOPS_STALENESS_SCHEDULE: '0 0 6 * * *'\n", ""),
                ("      FORECASTOPS_BATCH_INCOMPLETE: 'wait'", "      FORECASTOPS_BATCH_INCOMPLETE: 'later'"),
            ],
            "modules/function-app.bicep": [("  FORECASTOPS_BLOB_TRIGGER_SOURCE: 'EventGrid'\n", "")],
        }
    )
    problems = check_app_settings(gone, code_names())
    assert _reported(problems, "bridge: AML_WORKSPACE is not set")
    assert _reported(problems, "bridge: models_staleness_check", "%FORECASTOPS_STALENESS_SCHEDULE%")
    assert _reported(problems, "bridge: FORECASTOPS_BATCH_INCOMPLETE='later' is not a value the app accepts")
    assert _reported(problems, "ingest-weather: FORECASTOPS_BLOB_TRIGGER_SOURCE is not set")
    # the bridge has no blob trigger: it need not say where blob events come from
    assert not _reported(problems, "bridge: FORECASTOPS_BLOB_TRIGGER_SOURCE")


def test_a_new_settings_field_must_be_classified_and_listed_in_the_sample(deployment):
    code = code_names()
    fields = {**code.settings_fields, "model_registry": ("FORECASTOPS_MODEL_REGISTRY",)}
    problems = check_app_settings(deployment, replace(code, settings_fields=fields))
    assert _reported(problems, "Settings.model_registry is new")
    assert _reported(problems, "local.settings.sample.json does not list FORECASTOPS_MODEL_REGISTRY")


def test_a_compute_renamed_or_without_identity_is_reported(copy_infra, deployment):
    renamed = copy_infra({"main.bicep": [("name: 'cpu-cluster'", "name: 'gpu-cluster'")]})
    problems = check_computes(renamed, code_names())
    assert _reported(problems, "compute cpu-cluster (pipelines/", "not declared")
    no_identity = copy_infra(
        {
            "modules/aml.bicep": [
                (
                    "  identity: {\n    type: 'SystemAssigned'\n  }\n  properties: {\n    computeType",
                    "  properties: {\n    computeType",
                )
            ]
        }
    )
    assert _reported(check_computes(no_identity, code_names()), "compute cpu-cluster has no system-assigned identity")
    code = replace(code_names(), computes={**code_names().computes, "gpu-cluster": "pipelines/x/pipeline.yml"})
    assert _reported(check_computes(deployment, code), "compute gpu-cluster (pipelines/x/pipeline.yml)")


def test_a_role_the_code_needs_but_infra_does_not_grant_is_reported(copy_infra, deployment):
    weaker = copy_infra(
        {
            "main.bicep": [
                (
                    "      ownerContainers: ['raw']\n      readContainers: []",
                    "      ownerContainers: []\n      readContainers: ['raw']",
                ),
                (
                    "    writeContainers: ['curated', 'runs', 'models', 'batches']",
                    "    writeContainers: ['curated', 'runs', 'batches']",
                ),
            ],
            "modules/lake-account-access.bicep": [
                (
                    "var blobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'",
                    "var blobDataContributor = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'",
                )
            ],
            "modules/vault-access.bicep": [("    principalId: principalId\n", "    principalId: 'someone-else'\n")],
        }
    )
    problems = check_roles(weaker, code_names())
    assert _reported(
        problems,
        "ingest-weather: ingest_weather_blob (blob trigger): no Storage Blob Data Owner on containers",
        "/default/raw",
    )
    assert _reported(problems, "bridge: poll_aml_durable writes models/: no Storage Blob Data Contributor")
    assert _reported(
        problems, "compute cpu-cluster: the steps' outputs: no Storage Blob Data Contributor", "/default/runs"
    )
    assert _reported(problems, "on its RBAC-only vault: no Key Vault Administrator")
    # a blueprint that writes a container nobody granted is reported from the code side too
    uses = {**LAKE_USE, "trigger_aml": (("oracle",), False)}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(f"{__name__}.LAKE_USE", uses)
        assert _reported(check_roles(deployment, code_names()), "bridge: trigger_aml writes oracle/")


def test_a_role_on_a_parent_scope_holds_on_its_children_and_a_weaker_role_does_not():
    account = Ref("Microsoft.Storage/storageAccounts", "lake")
    raw = Ref("Microsoft.Storage/storageAccounts/blobServices/containers", "lake/default/raw")
    other = Ref("Microsoft.Storage/storageAccounts/blobServices/containers", "other/default/raw")
    who = Runtime(Ref("x", "id"), "properties.principalId")
    need = Need(who, "Storage Blob Data Reader", raw, "")
    assert _grants(Assignment(who, "Storage Blob Data Contributor", account, ""), need)
    assert _grants(Assignment(who, "Storage Blob Data Reader", raw, ""), need)
    assert not _grants(Assignment(who, "Storage Blob Data Reader", other, ""), need)
    assert not _grants(Assignment(Runtime(Ref("y", "id"), "p"), "Storage Blob Data Owner", raw, ""), need)
    owner = Need(who, "Storage Blob Data Owner", raw, "")
    assert not _grants(Assignment(who, "Storage Blob Data Contributor", account, ""), owner)
