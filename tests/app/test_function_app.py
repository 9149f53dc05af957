"""The function app as the host sees it: indexing, bindings, host.json and settings, and the
ingestion functions called with the objects the Python worker builds."""

from __future__ import annotations

import json
from pathlib import Path

import azure.functions as func
import jsonschema
import pytest

from shared import runtime
from shared.ingestion import entrypoints as ingestion
from shared.settings import Settings
from tests.drivers import (
    ROOT_DIR,
    US_OBS_HEADER,
    binding_problems,
    context,
    http_request,
    indexed_functions,
    lines,
    put,
    read_json,
    sdk_blob_client,
)

ROOT = ROOT_DIR
SCHEMAS = ROOT.parent / "shared" / "schemas"
SOURCES = ("weather", "shipments", "demographics")


@pytest.fixture(autouse=True)
def fresh_runtime():
    runtime.lake.cache_clear()
    runtime.batch_signal.cache_clear()
    yield
    runtime.lake.cache_clear()
    runtime.batch_signal.cache_clear()


def test_the_app_indexes_a_blob_trigger_a_route_a_queue_trigger_and_a_status_route_per_source():
    fns = indexed_functions()
    ingest = sorted(f"ingest_{s}_{kind}" for s in SOURCES for kind in ("blob", "http", "queue", "request"))
    assert sorted(n for n in fns if n.startswith("ingest_")) == ingest
    for source in SOURCES:
        (trigger,) = json.loads(fns[f"ingest_{source}_blob"].get_function_json())["bindings"]
        assert trigger == {
            "direction": "IN",
            "type": "blobTrigger",
            "name": "client",
            "path": f"raw/{source}/{{name}}",
            "connection": "LAKE_STORAGE",
            "source": "LogsAndContainerScan",
        }
        http = json.loads(fns[f"ingest_{source}_http"].get_function_json())["bindings"]
        assert http[0]["route"] == f"ingest/{source}" and http[0]["authLevel"] == "FUNCTION"
        assert http[0]["methods"] == ["POST"] and http[1] == {"direction": "OUT", "type": "http", "name": "$return"}
        (queue,) = json.loads(fns[f"ingest_{source}_queue"].get_function_json())["bindings"]
        assert queue == {
            "direction": "IN",
            "type": "queueTrigger",
            "name": "msg",
            "queueName": f"%FORECASTOPS_INGEST_QUEUE%-{source}",
            "connection": "LAKE_STORAGE",
        }
        status = json.loads(fns[f"ingest_{source}_request"].get_function_json())["bindings"]
        assert status[0]["route"] == f"ingest/{source}/requests/{{request_id}}" and status[0]["methods"] == ["GET"]
        assert status[0]["authLevel"] == "FUNCTION"


def test_the_app_indexes_the_pipeline_run_routes():
    fns = indexed_functions()
    routes = {}
    for name in ("pipelines_list", "pipeline_runs_submit", "pipeline_runs_get", "pipeline_runs_cancel"):
        trigger = json.loads(fns[name].get_function_json())["bindings"][0]
        routes[name] = (trigger["route"], trigger["methods"], trigger["authLevel"])
    assert routes == {
        "pipelines_list": ("pipelines", ["GET"], "FUNCTION"),
        "pipeline_runs_submit": ("pipelines/{pipeline}/runs", ["POST"], "FUNCTION"),
        "pipeline_runs_get": ("pipelines/runs/{run_id}", ["GET"], "FUNCTION"),
        "pipeline_runs_cancel": ("pipelines/runs/{run_id}/cancel", ["POST"], "FUNCTION"),
    }


def test_every_binding_matches_its_handler_parameters():
    problems = {name: binding_problems(fn) for name, fn in indexed_functions().items()}
    assert problems == {name: [] for name in problems}


def test_the_binding_check_catches_what_the_worker_refuses():
    bp = func.Blueprint()

    @bp.route(route="x")
    def unbound_parameter(req: func.HttpRequest, extra: str) -> func.HttpResponse:  # pragma: no cover
        raise AssertionError

    @bp.blob_trigger(arg_name="blob", path="raw/x/{name}", connection="LAKE_STORAGE")
    def wrong_type(client: int) -> None:  # pragma: no cover
        raise AssertionError

    app = func.FunctionApp()
    app.register_functions(bp)
    problems = {fn.get_function_name(): binding_problems(fn) for fn in app.get_functions()}
    assert any("parameters without a binding: ['extra']" in p for p in problems["unbound_parameter"])
    assert any("bindings without a parameter: ['blob']" in p for p in problems["wrong_type"])


def test_the_blob_trigger_source_comes_from_the_settings_when_the_app_is_indexed(monkeypatch):
    monkeypatch.setenv("FORECASTOPS_BLOB_TRIGGER_SOURCE", "EventGrid")
    assert runtime.blob_trigger_source() == "EventGrid"
    assert runtime.blob_trigger_source(Settings(blob_trigger_source="LogsAndContainerScan")) == "LogsAndContainerScan"


def _validate(document: Path, schema_name: str) -> list[str]:
    schema_file = SCHEMAS / schema_name
    if not schema_file.exists():
        pytest.skip(f"{schema_file} is not here (the team kit beside the repo is absent, as on a user's clone)")
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [e.message for e in validator.iter_errors(json.loads(document.read_text()))]


def test_host_json_validates_against_the_functions_schema():
    assert _validate(ROOT / "host.json", "host.schema.json") == []


def test_host_json_names_the_bundle_and_the_task_hub():
    host = json.loads((ROOT / "host.json").read_text())
    assert host["extensionBundle"] == {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"}
    assert host["extensions"]["durableTask"]["hubName"]


def test_local_settings_sample_validates_against_its_schema():
    assert _validate(ROOT / "local.settings.sample.json", "local.settings.schema.json") == []


def test_local_settings_sample_lists_every_app_setting():
    values = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    names = set()
    for name, field in Settings.model_fields.items():
        aliases = field.validation_alias.choices if field.validation_alias else [name]
        names.add(aliases[0])
    # the identity-based alternatives: "__" is not allowed locally
    names -= {"LAKE_STORAGE__blobServiceUri", "LAKE_STORAGE__queueServiceUri"}
    assert names <= set(values), names - set(values)
    assert values["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"
    # every value parses as the settings would read it
    Settings(**{k: v for k, v in values.items() if k in names and v != ""})


def test_requirements_hold_what_the_app_imports():
    reqs = (ROOT / "requirements.txt").read_text().lower()
    for dist in (
        "azure-functions==",
        "azure-functions-durable",
        "azurefunctions-extensions-bindings-blob",
        "azure-storage-blob",
        "pyarrow",
        "pydantic==",
        "pydantic-settings",
        "opencensus-ext-azure",
    ):
        assert dist in reqs, dist
    assert "pytest" not in reqs


# the functions, called as the worker calls them ------------------------------------------------------
@pytest.fixture
def app_env(monkeypatch, azurite, blob_lake):
    monkeypatch.setenv("FORECASTOPS_LAKE_BACKEND", "blob")
    monkeypatch.setenv("LAKE_STORAGE", azurite.connection_string)
    return blob_lake


def test_blob_trigger_ingests_the_blob_it_is_given(app_env, invocation_id):
    put(app_env, "raw/weather/us_obs/2026.csv", lines(US_OBS_HEADER, "2134,01/31/2026,50,32,0.1,", "1,2,3"))
    fn = indexed_functions()["ingest_weather_blob"].get_user_function()
    client = sdk_blob_client("LAKE_STORAGE", "raw", "weather/us_obs/2026.csv")
    assert fn(client=client, context=context(invocation_id)) is None
    manifest = read_json(app_env, "curated/weather_daily/v1/us_obs/2026.manifest.json")
    assert manifest["invocation_id"] == invocation_id
    assert manifest["rows"]["read"] == 2 and manifest["rows"]["written"] == 1 and manifest["rows"]["rejected"] == 1


def test_blob_trigger_quarantines_a_bad_file_and_succeeds_so_the_host_does_not_retry(app_env, invocation_id):
    put(app_env, "raw/shipments/x.csv", b"this is not a shipment file\n")
    fn = indexed_functions()["ingest_shipments_blob"].get_user_function()
    fn(client=sdk_blob_client("LAKE_STORAGE", "raw", "shipments/x.csv"), context=context(invocation_id))
    error = read_json(app_env, "quarantine/shipments_weekly/v1/x.error.json")
    assert error["error"]["reason"] == "no_matching_format" and error["invocation_id"] == invocation_id


def test_blob_trigger_raises_on_storage_failure_so_the_host_retries(monkeypatch, invocation_id):
    from azure.storage.blob import BlobServiceClient

    from shared.lake import BlobLake, TransientLakeError

    monkeypatch.setattr("shared.ingestion.service.time.sleep", lambda s: None)
    # nothing listens on this port: every call fails as a network error
    dead = BlobServiceClient(
        "http://127.0.0.1:9/devstoreaccount1", credential=None, retry_total=0, connection_timeout=1
    )
    with pytest.raises(TransientLakeError):
        ingestion.ingest_blob("raw/weather/x.csv", invocation_id, target=BlobLake(dead))


def _call_http(source, body, invocation_id):
    fn = indexed_functions()[f"ingest_{source}_http"].get_user_function()
    resp = fn(req=http_request("POST", f"ingest/{source}", body), context=context(invocation_id))
    assert resp.mimetype == "application/json"
    return resp.status_code, json.loads(resp.get_body())


def test_http_reingest_answers_the_manifest(app_env, invocation_id):
    put(app_env, "raw/demographics/m.jsonl", '{"store_id": "S1", "zip": "2134", "region": "x", "format": "Large"}\n')
    status, body = _call_http("demographics", {"path": "raw/demographics/m.jsonl"}, invocation_id)
    assert status == 200 and body["status"] == "ingested" and body["rows"]["written"] == 1
    status, body = _call_http("demographics", {"path": "raw/demographics/m.jsonl"}, invocation_id)
    assert status == 200 and body["unchanged"] is True
    status, body = _call_http("demographics", {"path": "raw/demographics/m.jsonl", "force": True}, "another")
    assert status == 200 and "unchanged" not in body and body["invocation_id"] == "another"


def test_http_reingest_of_an_unreadable_file_answers_422_with_the_reason(app_env, invocation_id):
    put(app_env, "raw/weather/empty.csv", b"")
    status, body = _call_http("weather", {"path": "raw/weather/empty.csv"}, invocation_id)
    assert status == 422 and body["error"]["reason"] == "empty_file"


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (b"{not json", ["(body)"]),
        ([1, 2], ["(body)"]),
        ({}, ["path"]),
        ({"path": "raw/shipments/x.csv"}, ["path"]),
        ({"path": "raw/weather/../x.csv", "force": "yes", "extra": 1}, ["extra", "path", "force"]),
    ],
    ids=["not-json", "array", "no-path", "other-source", "everything-wrong"],
)
def test_http_reingest_lists_every_problem_of_a_bad_request(local_lake, body, fields, invocation_id):
    status, answer, _ = ingestion.reingest_request(
        "weather", body if isinstance(body, bytes) else json.dumps(body).encode(), invocation_id, target=local_lake
    )
    assert status == 400 and answer["error"] == "invalid_request"
    assert [p["field"] for p in answer["problems"]] == fields
    assert all(p["message"] for p in answer["problems"])


def test_http_reingest_of_a_missing_file_is_404(app_env, invocation_id):
    status, body = _call_http("weather", {"path": "raw/weather/nope.csv"}, invocation_id)
    assert status == 404 and "raw/weather/nope.csv" in body["message"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper than 64"),
        (b'{"path": ' + b"[" * 65 + b"]" * 65 + b"}", "nested deeper than 64"),
        (json.dumps({"path": "raw/weather/a\x00b.csv"}).encode(), "control character"),
        (json.dumps({"path": "raw/weather/x\ty.csv"}).encode(), "control character"),
        (json.dumps({"path": "raw/weather/" + "a" * 300 + ".csv"}).encode(), "at most 255"),
        (json.dumps({"path": "raw/weather/" + "/".join(["abcdefghij"] * 100) + ".csv"}).encode(), "at most 1024"),
    ],
    ids=["deep-json", "deep-path-value", "nul", "tab", "long-segment", "long-path"],
)
@pytest.mark.parametrize("backend", ["local", "blob"])
def test_http_reingest_answers_400_never_500_for_a_clients_bad_request(
    monkeypatch, tmp_path, request, backend, body, words, invocation_id
):
    if backend == "blob":
        monkeypatch.setenv("FORECASTOPS_LAKE_BACKEND", "blob")
        monkeypatch.setenv("LAKE_STORAGE", request.getfixturevalue("azurite").connection_string)
    else:
        monkeypatch.setenv("FORECASTOPS_LAKE_ROOT", str(tmp_path))
    status, answer = _call_http("weather", body, invocation_id)
    assert status == 400 and answer["error"] == "invalid_request", answer
    assert any(words in p["message"] for p in answer["problems"]), answer


def test_a_first_line_over_the_csv_field_limit_is_quarantined_by_the_trigger_and_422_on_the_route(
    app_env, invocation_id
):
    put(app_env, "raw/weather/long.csv", b"x" * 200_000 + b",y\n1,2\n")
    fn = indexed_functions()["ingest_weather_blob"].get_user_function()
    assert fn(client=sdk_blob_client("LAKE_STORAGE", "raw", "weather/long.csv"), context=context(invocation_id)) is None
    assert read_json(app_env, "quarantine/weather_daily/v1/long.error.json")["error"]["reason"] == "record_too_long"
    status, body = _call_http("weather", {"path": "raw/weather/long.csv", "force": True}, invocation_id)
    assert status == 422 and body["error"]["reason"] == "record_too_long"


def test_a_blob_whose_name_cannot_be_ingested_is_refused_without_a_retry(local_lake, invocation_id, caplog):
    m = ingestion.ingest_blob("raw/weather/a\tb.csv", invocation_id, target=local_lake)
    assert m["status"] == "quarantined" and "control character" in m["error"]["message"]
    assert "quarantined (bad_path)" in caplog.text
