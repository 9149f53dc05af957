"""The local developer experience: VS Code attaches to the Python worker that `func host start`
runs after the install task, and test.http calls only routes the app indexes."""

from __future__ import annotations

import json
import re

from tests.deploy.test_adf import route_for
from tests.drivers import ROOT_DIR, indexed_functions

ROOT = ROOT_DIR
VSCODE = ROOT / ".vscode"


def _json(name: str) -> dict:
    return json.loads((VSCODE / name).read_text())


def test_the_debugger_attaches_to_the_worker_func_host_start_runs_after_the_install():
    (attach,) = _json("launch.json")["configurations"]
    assert attach["request"] == "attach" and attach["type"] == "debugpy"
    port = attach["connect"]["port"]
    assert port == 9091
    tasks = {t["label"]: t for t in _json("tasks.json")["tasks"]}
    start = tasks[attach["preLaunchTask"]]
    assert start["type"] == "func" and start["command"] == "host start" and start["isBackground"]
    assert f"--listen 127.0.0.1:{port}" in start["options"]["env"]["languageWorkers__python__arguments"]
    install = tasks[start["dependsOn"]]
    assert "make setup" in install["command"] and "debugpy" in install["command"]


def test_the_recommended_extensions_cover_functions_azd_bicep_and_python():
    recommended = set(_json("extensions.json")["recommendations"])
    assert {
        "ms-azuretools.vscode-azurefunctions",
        "ms-azuretools.azure-dev",
        "ms-azuretools.vscode-bicep",
    } <= recommended
    assert {"ms-python.python", "ms-python.debugpy", "humao.rest-client"} <= recommended


def _requests() -> list[tuple[str, str, str, str]]:
    """(method, path with variables filled in, headers, body) of each request in test.http."""
    text = (ROOT / "test.http").read_text()
    variables = dict(re.findall(r"^@(\w+) = (.+)$", text, flags=re.M))
    found = []
    for block in text.split("###")[1:]:
        lines = [line for line in block.splitlines()[1:] if not line.startswith("#")]
        (request,) = [i for i, line in enumerate(lines) if re.match(r"(GET|POST|PUT|DELETE) ", line)]
        method, url = lines[request].split()
        rest = "\n".join(lines[request + 1 :])
        headers, _, body = rest.partition("\n\n")
        url = re.sub(r"\{\{(\w+)\}\}", lambda m: variables[m.group(1)], url)
        url = re.sub(r"\{\{[\w.]+\}\}", "from-the-answer", url)
        body = re.sub(r"\{\{(\w+)\}\}", lambda m: variables[m.group(1)], body)
        found.append((method, url.removeprefix(variables["host"]), headers, body.strip()))
    return found


def test_every_request_in_test_http_is_a_route_the_app_indexes():
    requests = _requests()
    api = [(m, p) for m, p, _, _ in requests if p.startswith("/api/")]
    assert len(api) == 11
    named = {route_for(path.removeprefix("/api/"), method)[0] for method, path in api}
    assert {
        "ingest_weather_http",
        "ingest_weather_request",
        "pipeline_runs_submit",
        "pipeline_runs_watch_start",
    } <= named
    assert {"pipeline_runs_watch_status", "pipeline_runs_watch_cancel", "pipeline_runs_cancel"} <= named
    for _, _, headers, _ in requests:
        if "x-functions-key" not in headers:
            assert "aeg-event-type: Notification" in headers


def test_the_sample_event_grid_event_reaches_a_blob_trigger_with_a_blob_of_its_source():
    (event_request,) = [r for r in _requests() if r[1].startswith("/runtime/webhooks/blobs")]
    method, path, headers, body = event_request
    assert method == "POST"
    name = re.fullmatch(r"/runtime/webhooks/blobs\?functionName=Host\.Functions\.(\w+)", path).group(1)
    (trigger,) = [b for b in indexed_functions()[name].get_bindings() if b.type == "blobTrigger"]
    (event,) = json.loads(body)
    assert event["eventType"] == "Microsoft.Storage.BlobCreated"
    blob = event["subject"].removeprefix("/blobServices/default/containers/").replace("/blobs/", "/", 1)
    assert blob.startswith(trigger.path.removesuffix("{name}"))
    assert event["data"]["url"].endswith("/" + blob)
