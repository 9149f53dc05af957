"""The deployment artefacts: Bicep (parsed by pycep, scanned by checkov), azure.yaml, the
parameter files, the app settings against local.settings.sample.json, and the workbook and
alert queries against the names shared/telemetry.py emits.

checkov and pycep live in their own venv (.venv-tools, made by `make setup`): the tests run
them as programs. Without them the tests skip, except in CI (CI=true), where they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest
import yaml

from tests.deploy import test_names as bicep
from tests.drivers import ROOT_DIR, indexed_functions

ROOT = ROOT_DIR
INFRA = ROOT / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
MAIN = INFRA / "main.bicep"
FUNCTION_APP = INFRA / "modules" / "function-app.bicep"
BLUEPRINTS = {"ingest_weather", "ingest_shipments", "ingest_demographics", "trigger_aml", "poll_aml_durable"}

# Built-in role definitions the templates may grant (Azure's fixed ids); nothing broader
ROLES = bicep.ROLES


def find_tool(name: str) -> Path:
    """A program from the tools venv (.venv-tools/bin), else from PATH; skip without it, but
    fail in CI, where `make test` has made the tools venv."""
    candidate = ROOT / ".venv-tools" / "bin" / name
    if candidate.exists():
        return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    if os.environ.get("CI"):
        pytest.fail(f"{name} not found in .venv-tools/bin or on PATH: `make setup` makes it")
    pytest.skip(f"{name} is not installed: `make setup` puts it in .venv-tools")


_PYCEP_DUMP = """
import json, sys
from pathlib import Path
from pycep import BicepParser
parser = BicepParser()
out = {}
for name in sys.argv[1:]:
    try:
        tree = parser.parse(file_path=Path(name))
        out[name] = {"resources": {k: v.get("type") for k, v in tree.get("resources", {}).items()},
                     "declared": sorted(k for k, v in tree.get("resources", {}).items() if not v.get("existing")),
                     "modules": sorted(tree.get("modules", {}))}
    except Exception as e:
        out[name] = {"error": str(e)[:2000]}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def pycep_parsed() -> dict[str, dict]:
    """Every .bicep file as pycep (the parser checkov uses) reads it: resources and modules."""
    python = ROOT / ".venv-tools" / "bin" / "python"
    if not python.exists():
        if os.environ.get("CI"):
            pytest.fail("pycep needs the tools venv (.venv-tools): `make setup`")
        pytest.skip("pycep needs the tools venv (.venv-tools): `make setup`")
    proc = subprocess.run(
        [str(python), "-c", _PYCEP_DUMP, *map(str, BICEP_FILES)], capture_output=True, text=True, check=True
    )
    return {Path(k).relative_to(ROOT).as_posix(): v for k, v in json.loads(proc.stdout).items()}


@pytest.fixture(scope="module")
def checkov_report() -> dict:
    """One checkov scan of infra/ (offline: --skip-download), its JSON report."""
    checkov = find_tool("checkov")
    proc = subprocess.run(
        [str(checkov), "--skip-download", "-d", str(INFRA), "--framework", "bicep", "-o", "json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "LOG_LEVEL": "WARNING"},
    )
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert isinstance(report, dict) and report.get("check_type") == "bicep", proc.stdout[:1000]
    return report


@pytest.fixture(scope="module")
def templates() -> dict[str, dict]:
    """Every template, parsed by pycep (tests/deploy/test_names.py evaluates them)."""
    return bicep.parse_templates(INFRA)


@pytest.fixture(scope="module")
def main_template(templates) -> bicep.Template:
    """main.bicep as main.dev.bicepparam deploys it, its apps wired."""
    return bicep.Template(templates, INFRA, "main.bicep", bicep.deployment_params("dev"), "main.bicep")


def deploy(templates: dict[str, dict], env_type: str = "dev", **params: object) -> bicep.Deployment:
    return bicep.evaluate(templates, INFRA, bicep.deployment_params(env_type, **params))


def _checked_files(report: dict) -> set[str]:
    results = report["results"]
    checks = results["passed_checks"] + results["failed_checks"] + results["skipped_checks"]
    return {("infra" + c["file_path"]).replace("//", "/") for c in checks}


# --- Bicep: parsed, scanned, suppressions explained ------------------------------------------


def test_there_is_a_template_for_each_part_of_the_deployment():
    names = {p.relative_to(INFRA).as_posix() for p in BICEP_FILES}
    assert {"main.bicep", "modules/function-app.bicep", "modules/lake.bicep", "modules/datafactory.bicep"} <= names


def test_pycep_parses_every_bicep_file_and_each_declares_resources(pycep_parsed):
    errors = {f: v["error"] for f, v in pycep_parsed.items() if "error" in v}
    assert not errors, errors
    assert set(pycep_parsed) == {p.relative_to(ROOT).as_posix() for p in BICEP_FILES}
    empty = [f for f, v in pycep_parsed.items() if not v["resources"]]
    assert not empty, f"files without a resource: {empty}"


def test_every_module_a_template_uses_exists(pycep_parsed):
    for path in BICEP_FILES:
        for target in re.findall(r"^module \w+ '([^']+)'", path.read_text(), flags=re.M):
            assert (path.parent / target).exists(), f"{path.name} uses missing module {target}"


def test_checkov_parses_every_file_and_no_check_fails(checkov_report, pycep_parsed):
    summary = checkov_report["summary"]
    assert summary["parsing_errors"] == 0, checkov_report["results"].get("parsing_errors")
    failed = [
        f"{c['check_id']} {c['file_path']} {c['resource']}: {c['check_name']}"
        for c in checkov_report["results"]["failed_checks"]
    ]
    assert not failed, "\n".join(failed)
    assert summary["passed"] > 20
    assert summary["resource_count"] >= sum(len(v["resources"]) for v in pycep_parsed.values())
    # every file holding a resource checkov has checks for was scanned
    checked_types = ("Microsoft.Storage/storageAccounts", "Microsoft.Web/sites", "Microsoft.KeyVault/vaults")
    expected = {f for f, v in pycep_parsed.items() if any(v["resources"][r] in checked_types for r in v["declared"])}
    assert expected <= _checked_files(checkov_report), expected - _checked_files(checkov_report)


def test_each_checkov_suppression_sits_on_its_resource_with_a_reason_and_is_used(checkov_report):
    skipped = {
        (("infra" + c["file_path"]).replace("//", "/"), c["check_id"])
        for c in checkov_report["results"]["skipped_checks"]
    }
    seen = set()
    for path in BICEP_FILES:
        lines = path.read_text().splitlines()
        rel = path.relative_to(ROOT).as_posix()
        for i, line in enumerate(lines):
            if "checkov:skip" not in line:
                continue
            m = re.fullmatch(r"\s*// checkov:skip=(CKV2?_AZURE_\d+): (.{15,})", line)
            assert m, f"{rel}:{i + 1}: a suppression needs an id and a reason: {line.strip()}"
            j = i - 1
            while "checkov:skip" in lines[j]:
                j -= 1
            assert re.match(r"resource \w+ '", lines[j]), f"{rel}:{i + 1}: not at the top of a resource"
            assert (rel, m.group(1)) in skipped, f"{rel}:{i + 1}: {m.group(1)} suppresses nothing"
            seen.add((rel, m.group(1)))
    assert seen == skipped


def test_role_assignments_grant_only_known_data_roles():
    used = set()
    for path in BICEP_FILES:
        used |= set(re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", path.read_text()))
    assert used <= set(ROLES), used - set(ROLES)
    granted = {ROLES[u] for u in used}
    assert {"Storage Blob Data Owner", "AzureML Data Scientist", "Key Vault Secrets User"} <= granted
    assert "Key Vault Administrator" in granted


def test_no_secret_in_any_template_or_parameter_file():
    files = [*INFRA.rglob("*"), *(ROOT / "adf").rglob("*"), *(ROOT / ".github").rglob("*"), ROOT / "azure.yaml"]
    secret = re.compile(
        r"AccountKey=|SharedAccessSignature=|[?&]sig=|DefaultEndpointsProtocol=|InstrumentationKey=[0-9a-f]"
        r"|code=[A-Za-z0-9_-]{20}|\"password\"|clientSecret|client-secret|secrets\.",
        re.I,
    )
    for path in files:
        if path.is_file():
            hits = secret.findall(path.read_text(encoding="utf-8"))
            assert not hits, f"{path.relative_to(ROOT)}: {hits}"


# --- the apps: one per source, one bridge; settings against local.settings.sample.json --------


def _object_block(text: str, start: str) -> str:
    """The bracketed block (array or object) that opens after ``start``."""
    i = text.index(start) + len(start)
    opening = min(j for j in (text.find("[", i), text.find("{", i)) if j >= 0)
    depth = 0
    for j in range(opening, len(text)):
        depth += text[j] in "[{"
        depth -= text[j] in "]}"
        if depth == 0:
            return text[opening : j + 1]
    raise AssertionError(f"unbalanced block after {start}")


@cache
def apps() -> list[dict[str, str]]:
    """The apps main.bicep deploys: service, FORECASTOPS_FUNCTIONS and, for ingest apps, the
    source and the blob-trigger function its Event Grid subscription calls (the ingest apps are
    a loop over the registry, shared/sources.json: evaluated, as the deploy does)."""
    main = bicep.Template(
        bicep.parse_templates(INFRA), INFRA, "main.bicep", bicep.deployment_params("dev"), "main.bicep"
    )
    found = [{k: str(v) for k, v in app.items()} | {"kind": "ingest"} for app in main.lookup("ingestApps", {})]
    bridge = dict(re.findall(r"(\w+): '([^']*)'", _object_block(MAIN.read_text(), "var bridgeApp")))
    return [*found, bridge | {"kind": "bridge"}]


def app_settings() -> dict[str, dict[str, str]]:
    """Per azd service, the app settings the Bicep gives it (name -> Bicep expression)."""
    text = FUNCTION_APP.read_text()
    block = text[text.index("// BEGIN app settings") : text.index("// END app settings")]
    base = dict(re.findall(r"^  (\w+): (.+)$", block, flags=re.M))
    assert "var appSettings = union(baseSettings, amlSettings)" in block
    main = MAIN.read_text()
    aml = dict(re.findall(r"^      (\w+): (.+)$", _object_block(main, "\n    amlSettings:"), flags=re.M))
    return {a["service"]: base | (aml if a["kind"] == "bridge" else {}) for a in apps()}


# local.settings.sample.json keys the Azure apps do not set, and why
NOT_IN_AZURE = {
    "FUNCTIONS_WORKER_RUNTIME": "Flex Consumption takes the runtime from functionAppConfig.runtime and rejects this setting",
    "FORECASTOPS_LAKE_ROOT": "the local lake's folder; in Azure FORECASTOPS_LAKE_BACKEND=blob",
    "FORECASTOPS_LOCAL_RUNS_ROOT": "the local AML backend's work folder; in Azure the bridge uses azureml",
    "FORECASTOPS_EXTRA_MAPPINGS": "a folder of a user's own mappings on this machine; in Azure they ship in the package",
}
NOT_IN_INGEST_APPS = {
    "FORECASTOPS_AML_BACKEND": "the ingest blueprints never build an AML backend",
    "AML_SUBSCRIPTION_ID": "the same",
    "AML_RESOURCE_GROUP": "the same",
    "AML_WORKSPACE": "the same",
    "FORECASTOPS_WATCH_EVENTS": "the watch runs in the bridge only",
    "FORECASTOPS_WATCH_SAFETY_POLL_S": "the same",
    "FORECASTOPS_STALENESS_SCHEDULE": "the daily model check runs in the bridge only",
    "FORECASTOPS_BATCH_SCHEDULE": "the weekly batch runs in the bridge only",
    "FORECASTOPS_BATCH_INCOMPLETE": "the same",
    "FORECASTOPS_RETRAIN": "the same",
    "FORECASTOPS_STALE_RETRAIN": "the same",
}
# settings only Azure needs, and why
AZURE_ONLY = {
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "the host sends telemetry with the app's identity",
    "AZURE_CLIENT_ID": "DefaultAzureCredential (the lake client, MLClient) picks the user-assigned identity by it",
    "FORECASTOPS_FUNCTIONS": "the blueprint selection (one code base, several apps); it may or may not be in the sample",
}


def test_the_apps_register_every_blueprint_exactly_once():
    selections = [a["functions"].split(",") for a in apps()]
    flat = [b for s in selections for b in s]
    assert sorted(flat) == sorted(BLUEPRINTS)
    assert [a["service"] for a in apps()] == ["ingest-weather", "ingest-shipments", "ingest-demographics", "bridge"]


def test_the_blueprint_names_are_the_modules_the_app_registers():
    # a blueprint's functions live in its folder's modules (poll_aml_durable.weekly_batch...)
    modules = {f.get_user_function().__module__.split(".")[0] for f in indexed_functions().values()}
    assert modules >= BLUEPRINTS


def test_app_settings_are_the_keys_of_local_settings_sample():
    sample = set(json.loads((ROOT / "local.settings.sample.json").read_text())["Values"])
    for service, settings in app_settings().items():
        keys = set(settings)
        identity_based = {k for k in keys if "__" in k}
        assert {k.split("__")[0] for k in identity_based} <= sample, identity_based
        expected = sample - set(NOT_IN_AZURE) - {k.split("__")[0] for k in identity_based}
        if not service.startswith("bridge"):
            expected -= set(NOT_IN_INGEST_APPS)
        got = keys - identity_based - set(AZURE_ONLY)
        assert got == expected - set(AZURE_ONLY), f"{service}: extra {got - expected}, missing {expected - got}"
        assert not (keys & set(NOT_IN_AZURE)), service


def test_the_apps_reach_storage_with_their_identity_not_a_connection_string():
    for service, settings in app_settings().items():
        assert "AzureWebJobsStorage" not in settings and "LAKE_STORAGE" not in settings
        assert settings["AzureWebJobsStorage__credential"] == "'managedidentity'"
        assert settings["LAKE_STORAGE__credential"] == "'managedidentity'"
        assert settings["LAKE_STORAGE__clientId"] == settings["AzureWebJobsStorage__clientId"]
        assert settings["AZURE_CLIENT_ID"] == "identity.properties.clientId"
        assert {"LAKE_STORAGE__blobServiceUri", "LAKE_STORAGE__queueServiceUri"} <= set(settings)
        assert settings["FORECASTOPS_BLOB_TRIGGER_SOURCE"] == "'EventGrid'", service
        assert settings["FORECASTOPS_FUNCTIONS"] == "functions"


def test_each_ingest_app_gets_the_blob_created_events_of_its_own_source():
    blob_functions = {}
    for f in indexed_functions().values():
        for b in f.get_bindings():
            if b.type == "blobTrigger":
                blob_functions[f.get_function_name()] = (f.get_user_function().__module__, b.path)
    ingest = [a for a in apps() if a["kind"] == "ingest"]
    assert {a["source"] for a in ingest} == {"weather", "shipments", "demographics"}
    for a in ingest:
        module, path = blob_functions[a["blobFunction"]]
        assert module == a["functions"]
        assert path == f"raw/{a['source']}/{{name}}"
    events = (INFRA / "modules" / "lake-events.bicep").read_text()
    assert (
        "endpointUrl: 'https://${sub.hostName}/runtime/webhooks/blobs"
        "?functionName=Host.Functions.${sub.functionName}&code=${listKeys(" in events
    )
    assert ".systemKeys.blobs_extension}'" in events
    assert "subjectBeginsWith: '/blobServices/default/containers/raw/blobs/${sub.source}/'" in events
    assert "includedEventTypes: ['Microsoft.Storage.BlobCreated']" in events


def test_the_event_grid_webhooks_use_each_apps_default_host_name(main_template):
    """Flex Consumption host names are not always <app>.azurewebsites.net: the webhook's host is
    the app's defaultHostName, as the platform reports it."""
    (events,) = main_template.modules("lakeEvents")
    subscriptions = events.given["subscriptions"]
    sites = {a.name: a for a in bicep.Deployment(list(main_template.declared())).apps()}
    assert [s["source"] for s in subscriptions] == ["weather", "shipments", "demographics"]
    for sub in subscriptions:
        host = sub["hostName"]
        assert isinstance(host, bicep.Runtime) and host.path == "properties.defaultHostName"
        assert host.of == bicep.Ref("Microsoft.Web/sites", sub["appName"]) and sub["appName"] in sites


def test_aml_job_events_are_off_unless_asked_for():
    main = MAIN.read_text()
    assert re.search(r"^param amlEventsEnabled bool = false$", main, flags=re.M)
    aml = (INFRA / "modules" / "aml.bicep").read_text()
    assert "= if (eventsEnabled) {" in aml
    assert "'${bridgeAppId}/functions/aml_job_event'" in aml
    for event in (
        "Microsoft.MachineLearningServices.RunStatusChanged",
        "Microsoft.MachineLearningServices.RunCompleted",
    ):
        assert event in aml


def test_the_lake_has_a_hierarchical_namespace_and_the_seven_containers():
    lake = (INFRA / "modules" / "lake.bicep").read_text()
    assert "isHnsEnabled: true" in lake
    assert "param containers array" in lake
    expected = "var lakeContainers = ['raw', 'curated', 'quarantine', 'runs', 'models', 'batches', 'oracle']"
    assert expected in MAIN.read_text()


# --- azure.yaml and the parameter files ---------------------------------------------------------

# fields of azd's azure.yaml schema (v1.0)
AZD_TOP = {"name", "resourceGroup", "metadata", "infra", "services", "resources", "pipeline", "hooks"}
AZD_TOP |= {"requiredVersions", "state", "platform", "workflows", "cloud"}
AZD_INFRA = {"provider", "path", "module", "layers"}
AZD_SERVICE = {"apiVersion", "resourceGroup", "resourceName", "project", "image", "host", "language", "module"}
AZD_SERVICE |= {"dist", "remoteBuild", "docker", "k8s", "config", "uses", "env", "hooks"}
AZD_HOOK = {"shell", "run", "continueOnError", "interactive", "windows", "posix", "secrets"}
AZD_HOOK_EVENTS = {f"{when}{what}" for when in ("pre", "post") for what in ("provision", "deploy", "up", "down")}
AZD_HOOK_EVENTS |= {"prerestore", "postrestore", "prepackage", "postpackage"}


def test_azure_yaml_holds_only_documented_fields():
    doc = yaml.safe_load((ROOT / "azure.yaml").read_text())
    assert set(doc) <= AZD_TOP, set(doc) - AZD_TOP
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["name"])
    assert set(doc["infra"]) <= AZD_INFRA and doc["infra"]["path"] == "infra" and doc["infra"]["module"] == "main"
    for name, service in doc["services"].items():
        assert set(service) <= AZD_SERVICE, (name, set(service) - AZD_SERVICE)
        assert service["host"] == "function" and service["language"] == "python" and service["project"] == "."
    for event, hook in doc["hooks"].items():
        assert event in AZD_HOOK_EVENTS, event
        assert set(hook) <= AZD_HOOK
        for platform in ("windows", "posix"):
            if platform in hook:
                assert set(hook[platform]) <= AZD_HOOK
                script = hook[platform]["run"].split()[0]
                assert os.access(ROOT / script, os.X_OK), script


def test_azure_yaml_services_are_the_apps_and_the_infra_outputs_name_them():
    doc = yaml.safe_load((ROOT / "azure.yaml").read_text())
    assert list(doc["services"]) == [a["service"] for a in apps()]
    main = MAIN.read_text()
    outputs = set(re.findall(r"^output (\w+) ", main, flags=re.M))
    for service in doc["services"]:
        stem = "SERVICE_" + service.upper().replace("-", "_")
        assert {f"{stem}_NAME", f"{stem}_URL"} <= outputs, service
    # azd finds each app by its tag
    assert "tags: union(tags, { 'azd-service-name': service })" in FUNCTION_APP.read_text()
    # the hooks read these outputs from the azd environment
    assert {"DATA_FACTORY_NAME", "AZURE_RESOURCE_GROUP", "APPS_DEPLOYED", "KEY_VAULT_NAME"} <= outputs
    assert {"AML_SUBSCRIPTION_ID", "AML_RESOURCE_GROUP", "AML_WORKSPACE", "KEY_VAULT_GENERATION"} <= outputs


def test_the_aml_outputs_name_the_workspace_the_bridge_uses(main_template):
    """aml-assets.sh reads AML_SUBSCRIPTION_ID, AML_RESOURCE_GROUP and AML_WORKSPACE from the
    provision's outputs: the same workspace the bridge's settings name."""
    (bridge,) = [a for a in bicep.Deployment(list(main_template.declared())).apps() if a.service == "bridge"]
    for name in ("AML_SUBSCRIPTION_ID", "AML_RESOURCE_GROUP", "AML_WORKSPACE"):
        assert main_template.output(name) == bridge.settings[name], name
    script = (INFRA / "scripts" / "aml-assets.sh").read_text()
    assert "for name in AML_SUBSCRIPTION_ID AML_RESOURCE_GROUP AML_WORKSPACE; do" in script
    assert 'exec "$python" -m shared aml-assets "$@"' in script


def _main_params() -> dict[str, bool]:
    """main.bicep's parameters -> whether they have a default."""
    params = {}
    for m in re.finditer(r"^param (\w+) \w+( = .+)?$", MAIN.read_text(), flags=re.M):
        params[m.group(1)] = m.group(2) is not None
    return params


def test_azd_parameters_name_main_bicep_parameters_and_cover_the_required_ones():
    params = _main_params()
    given = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert set(given) <= set(params), set(given) - set(params)
    assert {p for p, has_default in params.items() if not has_default} <= set(given)
    assert given["environmentType"]["value"] == "${AZURE_ENV_TYPE=dev}"
    assert given["appsDeployed"]["value"] == "${APPS_DEPLOYED=false}"
    # the wiring provision of postdeploy.sh, and the Key Vault generation of preprovision
    assert given["wiringApps"]["value"] == "${FORECASTOPS_WIRE_APPS=false}"
    assert "FORECASTOPS_WIRE_APPS=true azd provision --no-prompt" in (INFRA / "scripts" / "postdeploy.sh").read_text()
    assert given["keyVaultGeneration"]["value"] == "${KEY_VAULT_GENERATION=0}"
    # empty: the environment profile's compute size
    assert given["amlComputeVmSize"]["value"] == "${AML_COMPUTE_VM_SIZE=}"
    assert given["amlComputeMaxNodes"]["value"] == "${AML_COMPUTE_MAX_NODES=0}"


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_dev_and_prod_parameter_files_set_main_bicep_parameters(env):
    text = (INFRA / f"main.{env}.bicepparam").read_text()
    assert "using './main.bicep'" in text
    given = dict(re.findall(r"^param (\w+) = (.+)$", text, flags=re.M))
    params = _main_params()
    assert set(given) <= set(params), set(given) - set(params)
    assert {p for p, has_default in params.items() if not has_default} <= set(given)
    assert given["environmentType"] == f"'{env}'"
    profiles = _object_block(MAIN.read_text(), "var profiles")
    assert f"  {env}: {{" in profiles


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_the_compute_cluster_is_sized_per_environment_and_scales_to_zero(templates, env):
    """main.<env>.bicepparam states the size; azd (main.parameters.json: empty, 0) gets the
    environment profile's, which is the same."""
    stated = bicep.bicepparam_values(INFRA / f"main.{env}.bicepparam")
    by_profile = deploy(templates, env, amlComputeVmSize="", amlComputeMaxNodes=0)
    by_file = deploy(templates, env)
    for dep in (by_profile, by_file):
        (cluster,) = dep.of_type("Microsoft.MachineLearningServices/workspaces/computes")
        inner = cluster.properties["properties"]
        assert cluster.ref.short == "cpu-cluster" and cluster.body["identity"] == {"type": "SystemAssigned"}
        assert inner["vmSize"] == stated["amlComputeVmSize"]
        assert inner["scaleSettings"]["minNodeCount"] == 0
        assert inner["scaleSettings"]["maxNodeCount"] == stated["amlComputeMaxNodes"]
    if env == "prod":  # prod scales out further than dev
        dev = bicep.bicepparam_values(INFRA / "main.dev.bicepparam")
        assert stated["amlComputeMaxNodes"] > dev["amlComputeMaxNodes"]


def _event_subscriptions_and_keys(dep: bicep.Deployment) -> tuple[int, int]:
    subscriptions = dep.of_type("Microsoft.EventGrid/systemTopics/eventSubscriptions")
    keys = [s for s in dep.of_type("Microsoft.KeyVault/vaults/secrets") if s.ref.short.endswith("-function-key")]
    return len(subscriptions), len(keys)


def test_only_a_wired_deployment_declares_the_webhooks_and_the_keys_and_reports_it(templates):
    """The Event Grid subscriptions read each ingest host's blobs_extension key and the secrets
    its function key: a provision before the apps run leaves them out and reports
    APPS_DEPLOYED=false; the wiring provision (FORECASTOPS_WIRE_APPS=true) and every later one
    (APPS_DEPLOYED=true, which azd saves from a successful provision) declare them."""
    cases = {
        (False, False): ((0, 0), False),
        (False, True): ((3, 4), True),
        (True, False): ((3, 4), True),
    }
    for (deployed, wiring), (expected, reported) in cases.items():
        params = bicep.deployment_params("dev", appsDeployed=deployed, wiringApps=wiring)
        main = bicep.Template(templates, INFRA, "main.bicep", params, "main.bicep")
        assert _event_subscriptions_and_keys(bicep.Deployment(list(main.declared()))) == expected
        assert main.output("APPS_DEPLOYED") is reported


def test_the_key_vault_name_changes_with_its_generation_and_fits_key_vault(templates):
    names = []
    for generation in (0, 1, 12):
        (vault,) = deploy(templates, keyVaultGeneration=generation).of_type("Microsoft.KeyVault/vaults")
        assert re.fullmatch(r"kv-[a-z0-9]{13}-\d+", vault.ref.name) and len(vault.ref.name) <= 24
        assert vault.ref.name.endswith(f"-{generation}")
        assert vault.properties["enablePurgeProtection"] is True
        names.append(vault.ref.name)
    assert len(set(names)) == 3


def test_the_workspace_gets_key_vault_administrator_only_on_a_vault_of_this_deployment(templates):
    administrator = [a for a in deploy(templates).assignments() if a.role == "Key Vault Administrator"]
    (grant,) = administrator
    assert grant.principal.of.type == "Microsoft.MachineLearningServices/workspaces"
    assert grant.scope.type == "Microsoft.KeyVault/vaults"
    # an existing workspace keeps its own vault: nothing is granted on this one
    existing = deploy(templates, amlWorkspaceName="mlw-shared", amlWorkspaceResourceGroup="rg-ml")
    assert not [a for a in existing.assignments() if a.role == "Key Vault Administrator"]


def test_log_alert_rules_read_at_most_two_days(templates):
    def duration(text: str) -> float:
        m = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?)?", text)
        assert m and text not in ("P", "PT"), text
        days, hours, minutes = (int(g or 0) for g in m.groups())
        return days * 24 + hours + minutes / 60

    rules = deploy(templates).of_type("Microsoft.Insights/scheduledQueryRules")
    assert len(rules) == 5
    for rule in rules:
        props = rule.properties
        window = duration(props["windowSize"])
        queried = duration(props.get("overrideQueryTimeRange", props["windowSize"]))
        assert window <= 48 and queried <= 48, rule.ref.name
        assert queried >= window and duration(props["evaluationFrequency"]) <= window, rule.ref.name
    (stale,) = [r for r in rules if r.ref.name.endswith("stale-model")]
    assert stale.properties["overrideQueryTimeRange"] == "P2D"
    assert "age_days = value + (now() - timestamp) / 1d" in stale.properties["criteria"]["allOf"][0]["query"]


def test_hook_scripts_are_valid_shell():
    for script in (INFRA / "scripts").glob("*.sh"):
        subprocess.run(["sh", "-n", str(script)], check=True)


# --- the hooks, run with az, azd, curl, sleep and Python standing in ------------------------------

_FAKE = """#!{python}
import json, os, sys
from pathlib import Path

prog, args = Path(sys.argv[0]).name, sys.argv[1:]
scenario = json.loads(Path(os.environ["FAKE_SCENARIO"]).read_text())
watched = ("FORECASTOPS_WIRE_APPS", "APPS_DEPLOYED", "AML_SUBSCRIPTION_ID", "AML_RESOURCE_GROUP", "AML_WORKSPACE")
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps({{"prog": prog, "args": args, "env": {{k: os.environ.get(k) for k in watched}}}}) + "\\n")

def option(name):
    return args[args.index(name) + 1]

if prog == "az" and args[:3] == ["functionapp", "keys", "list"]:
    app = option("--name")
    state = Path(os.environ["FAKE_LOG"] + "." + app)
    calls = int(state.read_text()) if state.exists() else 0
    state.write_text(str(calls + 1))
    ready = scenario["keys"].get(app, 0)
    print("true" if ready is not None and calls >= ready else "false")
elif prog == "az" and args[:2] == ["keyvault", "list"]:
    if scenario.get("no_group"):
        sys.exit(3)
    print("\\n".join(scenario.get("live", [])))
elif prog == "az" and args[:2] == ["keyvault", "list-deleted"]:
    if scenario.get("deleted_fails"):
        sys.exit(1)
    print("\\n".join("\\t".join(v) for v in scenario.get("deleted", [])))
elif prog == "az" and args[:2] == ["group", "exists"]:
    print(json.dumps(scenario.get("group_exists", True)))
elif prog == "azd" and args[:1] == ["provision"]:
    sys.exit(scenario.get("provision_rc", 0))
elif prog == "python":
    sys.exit(scenario.get("python_rc", 0))
"""


@pytest.fixture
def hook_env(tmp_path: Path):
    """Runs a hook script with az, azd, curl, sleep and the Python standing in: each records its
    call (arguments and the variables the hooks pass) and answers as the scenario says."""
    import sys

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = _FAKE.format(python=sys.executable)
    for prog in ("az", "azd", "curl", "sleep", "python"):
        (bin_dir / prog).write_text(fake)
        (bin_dir / prog).chmod(0o755)
    log = tmp_path / "calls.jsonl"
    scenario_file = tmp_path / "scenario.json"

    def run(script: str, scenario: dict, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
        scenario_file.write_text(json.dumps(scenario))
        log.write_text("")
        base = {k: v for k, v in os.environ.items() if k in ("HOME", "LANG")}
        environ = {
            **base,
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "FAKE_SCENARIO": str(scenario_file),
            "FAKE_LOG": str(log),
            "FORECASTOPS_PYTHON": str(bin_dir / "python"),
            **env,
        }
        proc = subprocess.run(
            ["sh", str(INFRA / "scripts" / script), *args], capture_output=True, text=True, env=environ, cwd=ROOT
        )
        calls = [json.loads(line) for line in log.read_text().splitlines()]
        return proc, calls

    return run


_AZD_ENV = {
    "AZURE_RESOURCE_GROUP": "rg-forecastops-dev",
    "SERVICE_INGEST_WEATHER_NAME": "func-wx",
    "SERVICE_INGEST_WEATHER_URL": "https://func-wx.example",
    "SERVICE_INGEST_SHIPMENTS_NAME": "func-sh",
    "SERVICE_INGEST_SHIPMENTS_URL": "https://func-sh.example",
    "SERVICE_INGEST_DEMOGRAPHICS_NAME": "func-dm",
    "SERVICE_INGEST_DEMOGRAPHICS_URL": "https://func-dm.example",
    "SERVICE_BRIDGE_NAME": "func-br",
    "SERVICE_BRIDGE_URL": "https://func-br.example",
    "AML_SUBSCRIPTION_ID": "sub-1",
    "AML_RESOURCE_GROUP": "rg-forecastops-dev",
    "AML_WORKSPACE": "mlw-1",
}


def _calls(calls: list[dict], prog: str, *prefix: str) -> list[dict]:
    return [c for c in calls if c["prog"] == prog and c["args"][: len(prefix)] == list(prefix)]


def test_postdeploy_waits_for_the_host_keys_then_wires_and_records_it_after_the_provision(hook_env):
    proc, calls = hook_env("postdeploy.sh", {"keys": {"func-wx": 3, "func-br": 1}}, **_AZD_ENV)
    assert proc.returncode == 0, proc.stderr
    # backoff while the weather host has no keys: 10 s, then twice as long
    assert [c["args"] for c in _calls(calls, "sleep")] == [["10"], ["20"], ["40"], ["10"]]
    queries = {
        c["args"][c["args"].index("--name") + 1]: c["args"][c["args"].index("--query") + 1] for c in _calls(calls, "az")
    }
    assert (
        queries["func-wx"] == "type(functionKeys.default) == 'string' && type(systemKeys.blobs_extension) == 'string'"
    )
    assert queries["func-br"] == "type(functionKeys.default) == 'string'"
    order = [(c["prog"], c["args"][:2]) for c in calls if c["prog"] in ("azd", "python")]
    assert order == [
        ("azd", ["provision", "--no-prompt"]),
        ("azd", ["env", "set"]),
        ("python", ["-m", "shared"]),
    ]
    (provision,) = _calls(calls, "azd", "provision")
    assert provision["env"]["FORECASTOPS_WIRE_APPS"] == "true"
    assert _calls(calls, "azd", "env", "set")[0]["args"] == ["env", "set", "APPS_DEPLOYED", "true"]
    (assets,) = _calls(calls, "python")
    assert assets["args"] == ["-m", "shared", "aml-assets"]
    assert assets["env"] | {"FORECASTOPS_WIRE_APPS": None, "APPS_DEPLOYED": None} == {
        "FORECASTOPS_WIRE_APPS": None,
        "APPS_DEPLOYED": None,
        "AML_SUBSCRIPTION_ID": "sub-1",
        "AML_RESOURCE_GROUP": "rg-forecastops-dev",
        "AML_WORKSPACE": "mlw-1",
    }


def test_postdeploy_gives_up_after_its_attempts_and_leaves_apps_deployed_unset(hook_env):
    env = {**_AZD_ENV, "KEYS_WAIT_ATTEMPTS": "6"}
    proc, calls = hook_env("postdeploy.sh", {"keys": {"func-sh": None}}, **env)
    assert proc.returncode != 0
    assert "func-sh: no host keys after 6 attempts" in proc.stderr
    assert [c["args"] for c in _calls(calls, "sleep")] == [["10"], ["20"], ["40"], ["60"], ["60"]]
    assert not _calls(calls, "azd") and not _calls(calls, "python")


def test_a_failed_wiring_provision_is_not_recorded_so_the_next_deploy_retries_it(hook_env):
    proc, calls = hook_env("postdeploy.sh", {"keys": {}, "provision_rc": 1}, **_AZD_ENV)
    assert proc.returncode != 0
    assert len(_calls(calls, "azd", "provision")) == 1
    assert not _calls(calls, "azd", "env", "set") and not _calls(calls, "python")


def test_postdeploy_on_wired_apps_only_registers_the_aml_assets(hook_env):
    proc, calls = hook_env("postdeploy.sh", {"keys": {}}, **_AZD_ENV, APPS_DEPLOYED="true")
    assert proc.returncode == 0, proc.stderr
    assert [c["prog"] for c in calls] == ["python"]


def test_aml_assets_needs_the_workspace_from_the_provision_and_passes_check_on(hook_env):
    env = {k: v for k, v in _AZD_ENV.items() if k != "AML_WORKSPACE"}
    proc, calls = hook_env("aml-assets.sh", {}, **env)
    assert proc.returncode != 0 and "AML_WORKSPACE is not in the azd environment" in proc.stderr
    assert not calls
    proc, calls = hook_env("aml-assets.sh", {}, "--check", **_AZD_ENV)
    assert proc.returncode == 0
    assert [c["args"] for c in calls] == [["-m", "shared", "aml-assets", "--check"]]
    proc, _ = hook_env("aml-assets.sh", {"python_rc": 1}, **_AZD_ENV)
    assert proc.returncode == 1


@pytest.mark.parametrize(
    ("scenario", "generation"),
    [
        ({"live": ["kv-abc-2"]}, "2"),
        ({"no_group": True}, "0"),
        (
            {
                "no_group": True,
                "deleted": [
                    [
                        "kv-abc-0",
                        "/subscriptions/s/resourceGroups/rg-forecastops-dev/providers/Microsoft.KeyVault/vaults/kv-abc-0",
                    ],
                    [
                        "kv-abc-1",
                        "/subscriptions/s/resourcegroups/RG-FORECASTOPS-DEV/providers/Microsoft.KeyVault/vaults/kv-abc-1",
                    ],
                    [
                        "kv-xyz-7",
                        "/subscriptions/s/resourceGroups/rg-forecastops-prod/providers/Microsoft.KeyVault/vaults/kv-xyz-7",
                    ],
                ],
            },
            "2",
        ),
        ({"live": [], "deleted": [["kv-abc-0", "/subscriptions/s/resourceGroups/rg-forecastops-dev/x"]]}, "1"),
    ],
    ids=["live-vault-keeps-its-name", "first-provision", "after-azd-down", "vault-deleted-by-hand"],
)
def test_the_key_vault_generation_skips_names_a_deleted_vault_holds(hook_env, scenario, generation):
    proc, calls = hook_env("keyvault-generation.sh", scenario, AZURE_ENV_NAME="dev", KEY_VAULT_GENERATION="0")
    assert proc.returncode == 0, proc.stderr
    (setting,) = _calls(calls, "azd", "env", "set")
    assert setting["args"] == ["env", "set", "KEY_VAULT_GENERATION", generation]


def test_the_key_vault_generation_stays_when_deleted_vaults_cannot_be_listed(hook_env):
    proc, calls = hook_env(
        "keyvault-generation.sh",
        {"no_group": True, "deleted_fails": True},
        AZURE_ENV_NAME="dev",
        KEY_VAULT_GENERATION="3",
    )
    assert proc.returncode == 0 and "keeping generation 3" in proc.stderr
    assert not _calls(calls, "azd")


@pytest.mark.parametrize(("group_exists", "unwired"), [(False, True), (True, False)])
def test_an_environment_whose_resource_group_is_gone_is_wired_again(hook_env, group_exists, unwired):
    """After `azd down`, APPS_DEPLOYED=true would make the next provision read the keys of apps
    that have no code yet: preprovision sets it back to false when the resource group is gone."""
    scenario = {"group_exists": group_exists, "no_group": not group_exists}
    proc, calls = hook_env("preprovision.sh", scenario, AZURE_ENV_NAME="dev", APPS_DEPLOYED="true")
    assert proc.returncode == 0, proc.stderr
    settings = [c["args"][2:] for c in _calls(calls, "azd", "env", "set")]
    assert (["APPS_DEPLOYED", "false"] in settings) is unwired
    assert ["KEY_VAULT_GENERATION", "0"] in settings  # then the vault's name


def test_preprovision_picks_the_vault_name_then_stops_the_adf_trigger():
    script = (INFRA / "scripts" / "preprovision.sh").read_text()
    assert script.index('"$here/keyvault-generation.sh"') < script.index('"$here/adf-trigger.sh" stop')
    hooks = yaml.safe_load((ROOT / "azure.yaml").read_text())["hooks"]
    assert hooks["preprovision"]["posix"]["run"] == "./infra/scripts/preprovision.sh"
    assert hooks["postdeploy"]["posix"]["run"] == "./infra/scripts/postdeploy.sh"
    assert '"$here/aml-assets.sh"' in (INFRA / "scripts" / "postdeploy.sh").read_text()


# --- dashboards and alerts against the telemetry module -----------------------------------------


def telemetry_names() -> tuple[dict[str, set[str]], set[str]]:
    """What shared/telemetry.py emits: custom metric name -> dimensions, and log fields.

    The dimensions come from ``METRIC_DIMENSIONS`` (metric -> tag keys) once the module has
    one; until then from the one ``view.View(...)`` every metric is registered with."""
    from shared import telemetry

    source = Path(telemetry.__file__).read_text()
    prefix = re.search(r'MeasureFloat\(f"(\w+)/\{name\}"', source).group(1)
    per_metric = getattr(telemetry, "METRIC_DIMENSIONS", None)
    if per_metric is None:
        dims = re.search(r'view\.View\([^\n]*?\[(\s*"[^\]]*)\]', source).group(1)
        per_metric = {name: re.findall(r'"(\w+)"', dims) for name in telemetry.METRICS}
    metrics = {f"{prefix}/{name}": set(per_metric[name]) for name in telemetry.METRICS}
    # the log context's fields (ContextFilter), from log_context(...) calls in the product
    fields = set(re.findall(r'ctx\.get\("(\w+)"', source))
    for path in (ROOT / "shared").rglob("*.py"):
        for call in re.findall(r"log_context\(([^)]*)\)", path.read_text()):
            fields |= set(re.findall(r"(\w+)=", call))
    return metrics, fields


def pending_metrics() -> dict[str, set[str]]:
    doc = json.loads((INFRA / "workbook" / "metrics.json").read_text())
    return {f"forecastops/{m['name']}": set(m["dimensions"]) for m in doc["metrics"]}


def workbook_queries() -> list[tuple[str, str]]:
    doc = json.loads((INFRA / "workbook" / "forecastops.workbook.json").read_text())
    found = []

    def walk(items):
        for item in items:
            content = item.get("content", {})
            if item["type"] == 3:
                found.append((item["name"], content["query"]))
            walk(content.get("items", []))

    walk(doc["items"])
    return found


def alert_queries() -> list[tuple[str, str]]:
    return [(p.name, p.read_text()) for p in sorted((INFRA / "alerts").glob("*.kql"))]


def _names_in(query: str) -> tuple[set[str], set[str]]:
    metrics = set(re.findall(r'"(forecastops/\w+)"', query))
    fields = set(re.findall(r"customDimensions\.(\w+)", query))
    fields |= set(re.findall(r'customDimensions\["(\w+)"\]', query))
    return metrics, fields


def deployed_workbook(templates: dict[str, dict]) -> dict:
    """The workbook as the deploy writes it: its file with the health policy's values put in."""
    (workbook,) = deploy(templates).of_type("Microsoft.Insights/workbooks")
    return json.loads(workbook.properties["serializedData"])


def test_the_workbook_is_deployed_from_its_file_and_has_both_dashboards(templates):
    monitoring = (INFRA / "modules" / "monitoring.bicep").read_text()
    assert "loadTextContent('../workbook/forecastops.workbook.json')" in monitoring
    doc = deployed_workbook(templates)
    assert doc["version"] == "Notebook/1.0"
    groups = {i["name"]: i for i in doc["items"] if i["type"] == 12}
    assert set(groups) == {"training", "monitoring"}
    training = " ".join(q for _, q in workbook_queries())
    for metric in ("model_mape", "model_rmse_0", "model_rmse_all", "model_baseline_mape", "model_age_days"):
        assert f'"forecastops/{metric}"' in training
    formatters = json.dumps(groups["training"])
    assert '"columnMatch": "age_days"' in formatters and '"thresholdValue": "60"' in formatters


def test_the_workbook_and_the_stale_model_alert_take_the_health_policy_at_deploy(templates):
    from shared.health import POLICY_FILE, policy

    gates = policy().gates
    assert (
        "loadJsonContent('../../pipelines/health_policy.json')" in (INFRA / "modules" / "monitoring.bicep").read_text()
    )
    assert (INFRA / "modules" / ".." / ".." / "pipelines" / "health_policy.json").resolve() == POLICY_FILE
    # the files hold placeholders only, each one the deploy fills
    raw = (INFRA / "workbook" / "forecastops.workbook.json").read_text()
    raw += (INFRA / "alerts" / "stale-model.kql").read_text()
    assert set(re.findall(r"\{\{([\w.]+)\}\}", raw)) == {
        "health_policy.gates.max_mape",
        "health_policy.gates.max_age_days",
    }
    doc = json.dumps(deployed_workbook(templates))
    assert "{{" not in doc
    mape, days = json.dumps(gates.max_mape), f"{gates.max_age_days:.0f}"
    assert f"MAPE <= {mape}, trained within {days} days" in doc
    assert f'"thresholdValue": "{mape}"' in doc and f'"thresholdValue": "{days}"' in doc
    assert f"| where age_days > {days}" in doc and f"Models older than {days} days" in doc
    (stale,) = [r for r in deploy(templates).of_type("Microsoft.Insights/scheduledQueryRules") if "stale" in r.ref.name]
    assert f"| where age_days > {days}\n" in stale.properties["criteria"]["allOf"][0]["query"]
    assert stale.properties["displayName"] == f"ForecastOps: a production model is older than {days} days"


def test_every_metric_and_field_the_dashboards_and_alerts_read_is_emitted_or_listed_as_needed():
    emitted, log_fields = telemetry_names()
    assert "forecastops/rows_read" in emitted and {"dataset", "format"} <= emitted["forecastops/rows_read"]
    assert {"invocation_id", "subject"} <= log_fields
    pending = pending_metrics()
    known = emitted | pending
    queries = workbook_queries() + alert_queries()
    assert len(queries) >= 10
    for name, query in queries:
        metrics, fields = _names_in(query)
        assert metrics <= set(known), f"{name}: not emitted and not in metrics.json: {metrics - set(known)}"
        allowed = set().union(*(known[m] for m in metrics)) if metrics else set()
        if re.search(r"^\s*traces\b", query, flags=re.M):
            allowed |= log_fields
        assert fields <= allowed, f"{name}: fields {fields - allowed} belong to none of {metrics}"


def test_metrics_json_lists_only_what_is_not_emitted_yet_or_matches_it():
    emitted, _ = telemetry_names()
    for name, dims in pending_metrics().items():
        if name in emitted:  # the product has added it: its dimensions must be the ones asked for
            assert emitted[name] == dims, name
    read = set().union(*(_names_in(q)[0] for _, q in workbook_queries() + alert_queries()))
    assert set(pending_metrics()) <= read, "metrics.json lists a metric no dashboard or alert reads"


def test_the_five_alert_rules_load_their_queries(templates):
    alerts = (INFRA / "modules" / "alerts.bicep").read_text()
    loaded = re.findall(r"loadTextContent\('\.\./alerts/([\w-]+\.kql)'\)", alerts)
    assert sorted(loaded) == sorted(p.name for p in (INFRA / "alerts").glob("*.kql"))
    assert {
        "quarantine-ratio.kql",
        "watch-failed.kql",
        "stale-model.kql",
        "batch-not-succeeded.kql",
        "fallback-share.kql",
    } == set(loaded)
    assert alerts.count("'Microsoft.Insights/scheduledQueryRules@") == 5
    # the stale-model query as the deploy writes it (the health policy's age gate put in)
    (rule,) = [r for r in deploy(templates).of_type("Microsoft.Insights/scheduledQueryRules") if "stale" in r.ref.name]
    stale = rule.properties["criteria"]["allOf"][0]["query"]
    assert 'stage == "production"' in stale and "age_days > 60" in stale


# --- the lake's containers and the workspace's datastores over them ------------------------------


def _bicep_strings(text: str, var: str) -> list[str]:
    return re.findall(r"'([^']*)'", _object_block(text, f"var {var} ="))


def test_the_workspace_has_a_datastore_for_every_lake_container_and_the_code_names_no_other():
    from shared.aml.lakeuri import LAKE_CONTAINERS, datastore_names, lake_path, lake_uri

    main = MAIN.read_text()
    containers = _bicep_strings(main, "lakeContainers")
    # lake.bicep creates exactly the containers main.bicep lists
    lake = (INFRA / "modules" / "lake.bicep").read_text()
    assert "for container in containers: {" in lake and "param containers array" in lake
    assert "containers: lakeContainers" in _object_block(main, "module lake 'modules/lake.bicep' =")
    # aml.bicep declares one identity-based ADLS Gen2 datastore lake_<container> over each
    aml_module = _object_block(main, "module aml 'modules/aml.bicep' =")
    assert "lakeContainers: lakeContainers" in aml_module and "lakeName: lake.outputs.name" in aml_module
    aml = (INFRA / "modules" / "aml.bicep").read_text()
    datastore = _object_block(aml, "'Microsoft.MachineLearningServices/workspaces/datastores@2024-04-01' =")
    assert "for container in lakeContainers: {" in datastore
    assert "name: 'lake_${container}'" in datastore
    assert "datastoreType: 'AzureDataLakeGen2'" in datastore and "filesystem: container" in datastore
    assert "accountName: lakeName" in datastore
    assert "credentialsType: 'None'" in datastore
    declared = {f"lake_{c}" for c in containers}
    # every datastore the Python code can name exists, and every container has one
    assert set(LAKE_CONTAINERS) == set(containers)
    assert set(datastore_names()) == declared
    for c in containers:
        assert lake_uri(f"{c}/x").split("/")[3] in declared and lake_path(lake_uri(f"{c}/x")) == f"{c}/x"
    # the workspace's identity reads the containers AML reads and writes the runs' outputs
    access = _object_block(main, "module amlLakeAccess 'modules/lake-access.bicep' =")
    assert "principalId: aml.outputs.workspacePrincipalId" in access
    assert "writeContainers: ['runs']" in access
    assert set(re.findall(r"'(\w+)'", _object_block(access, "readContainers:"))) <= set(containers)
    assert "output workspacePrincipalId string = workspace.identity.principalId" in aml


def test_every_lake_uri_in_the_pipelines_names_a_declared_datastore():
    from shared.aml.lakeuri import datastore_names

    names = set(datastore_names())
    texts = [p.read_text() for p in (ROOT / "pipelines").rglob("*") if p.suffix in (".yml", ".toml")]
    used = {m for t in texts for m in re.findall(r"azureml://datastores/(\w+)/paths/", t)}
    assert used and used <= names, used - names


def test_the_fallback_share_alert_takes_its_threshold_from_a_deploy_parameter(templates):
    """The share of a week's groups served by fallback: a deploy parameter (not an app setting,
    the app never reads it), FORECASTOPS_FALLBACK_ALERT_SHARE, 0.25 unless set."""
    given = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert given["fallbackAlertShare"]["value"] == "${FORECASTOPS_FALLBACK_ALERT_SHARE=0.25}"
    for env in ("dev", "prod"):
        stated = bicep.bicepparam_values(INFRA / f"main.{env}.bicepparam")
        assert stated["fallbackAlertShare"] == "0.25"
    for share, expected in ((None, 0.25), ("0.4", 0.4)):
        dep = deploy(templates) if share is None else deploy(templates, fallbackAlertShare=share)
        (rule,) = [r for r in dep.of_type("Microsoft.Insights/scheduledQueryRules") if "fallback" in r.ref.name]
        (criterion,) = rule.properties["criteria"]["allOf"]
        assert criterion["threshold"] == expected and criterion["operator"] == "GreaterThan"
        assert criterion["metricMeasureColumn"] == "share"
        assert '"forecastops/batch_fallback_share"' in criterion["query"]
        assert f"more than {share or '0.25'} of a week" in rule.properties["displayName"]
