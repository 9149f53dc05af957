"""The Data Factory JSON in adf/: it loads into the service's own models (azure-mgmt-datafactory)
with nothing left over, and every URL it calls is a route the app indexes, with that route's
method, on the app that registers it, with that app's key from Key Vault."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from azure.mgmt.datafactory import models

from tests.deploy.test_infra import MAIN, apps
from tests.drivers import ROOT_DIR, indexed_functions

ROOT = ROOT_DIR
ADF = ROOT / "adf"
KINDS = {
    "pipeline": models.PipelineResource,
    "linkedService": models.LinkedServiceResource,
    "dataset": models.DatasetResource,
    "trigger": models.TriggerResource,
}
FILES = sorted(ADF.glob("*/*.json"))


def load(path: Path):
    return KINDS[path.parent.name].deserialize(json.loads(path.read_text()))


def leftovers(obj: object, where: str = "") -> list[str]:
    """Every model object, recursively, with properties its class does not know."""
    found = []
    if hasattr(obj, "_attribute_map"):  # an azure-mgmt-datafactory (msrest-style) model
        extra = getattr(obj, "additional_properties", None)
        if extra:
            found.append(f"{where or type(obj).__name__}: {sorted(extra)}")
        for attr in obj._attribute_map:
            if attr != "additional_properties":
                found += leftovers(getattr(obj, attr), f"{where}.{attr}")
    elif isinstance(obj, list):
        for i, item in enumerate(obj):
            found += leftovers(item, f"{where}[{i}]")
    elif isinstance(obj, dict):
        for key, value in obj.items():
            found += leftovers(value, f"{where}.{key}")
    return found


def _normalised(value):
    if isinstance(value, dict):
        return {k: _normalised(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalised(v) for v in value]
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.0+)?Z", value):
        return re.sub(r"\.0+Z$", "Z", value)
    return value


def activities(acts: list) -> list:
    """The activities, and those inside If, ForEach and Switch, depth first."""
    found = []
    for a in acts or []:
        found.append(a)
        if isinstance(a, models.IfConditionActivity):
            found += activities(a.if_true_activities) + activities(a.if_false_activities)
        elif isinstance(a, models.ForEachActivity):
            found += activities(a.activities)
        elif isinstance(a, models.SwitchActivity):
            for case in a.cases or []:
                found += activities(case.activities)
            found += activities(a.default_activities)
    return found


@pytest.fixture(scope="module")
def pipeline() -> models.PipelineResource:
    return load(ADF / "pipeline" / "pl_weekly_forecast.json")


def routes() -> list[tuple[str, str, set[str], str]]:
    """(route template, function name, methods, blueprint module) for every HTTP route."""
    found = []
    for name, fn in indexed_functions().items():
        for b in fn.get_bindings():
            if b.type == "httpTrigger":
                methods = {str(getattr(m, "value", m)) for m in b.methods}
                # a blueprint's functions live in its folder's modules (trigger_aml.pipeline_runs...)
                found.append((b.route, name, methods, fn.get_user_function().__module__.split(".")[0]))
    return found


def route_for(path: str, method: str) -> tuple[str, str]:
    """The function name and blueprint of the route answering ``method path`` (path without
    /api/); fails when none does."""
    for template, name, methods, module in routes():
        pattern = "^" + re.sub(r"\\\{\w+\\\}", r"[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method in methods:
            return name, module
    raise AssertionError(f"no route answers {method} /api/{path}")


# --- the JSON is what the service's models read, nothing more -----------------------------------


def test_there_is_a_pipeline_its_linked_services_datasets_and_a_trigger():
    assert {p.parent.name for p in FILES} == set(KINDS)
    for path in FILES:
        assert json.loads(path.read_text())["name"] == path.stem


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_each_file_loads_into_typed_models_with_nothing_left_over(path):
    resource = load(path)
    assert not leftovers(resource), leftovers(resource)
    # what the models would send back is the file itself: nothing dropped inside typeProperties
    assert _normalised(resource.serialize(keep_readonly=True)) == _normalised(json.loads(path.read_text()))


def test_leftover_check_catches_an_unknown_property(pipeline):
    doc = json.loads((ADF / "pipeline" / "pl_weekly_forecast.json").read_text())
    doc["properties"]["activities"][1]["retries"] = 3
    assert leftovers(models.PipelineResource.deserialize(doc))
    doc = json.loads((ADF / "pipeline" / "pl_weekly_forecast.json").read_text())
    doc["properties"]["activities"][1]["typeProperties"]["verb"] = "GET"
    assert models.PipelineResource.deserialize(doc).serialize(keep_readonly=True) != doc


def test_activities_are_typed(pipeline):
    kinds = {type(a).__name__ for a in activities(pipeline.activities)}
    assert kinds == {
        "IfConditionActivity",
        "CopyActivity",
        "WaitActivity",
        "WebActivity",
        "ForEachActivity",
        "SwitchActivity",
        "FailActivity",
    }
    for path in FILES:
        resource = load(path)
        if path.parent.name != "pipeline":
            assert type(resource.properties).__name__ not in {"LinkedService", "Dataset", "Trigger"}


def test_references_resolve():
    names = {path.parent.name: set() for path in FILES}
    for path in FILES:
        names[path.parent.name].add(path.stem)
    text = "".join(p.read_text() for p in FILES)
    for kind, ref in re.findall(r'"referenceName": "(\w+)",\s*"type": "(\w+)Reference"', text):
        assert kind in names[{"LinkedService": "linkedService", "Dataset": "dataset", "Pipeline": "pipeline"}[ref]]
    trigger = load(ADF / "trigger" / "tr_weekly.json").properties
    pipeline = load(ADF / "pipeline" / "pl_weekly_forecast.json")
    (run,) = trigger.pipelines
    assert run.pipeline_reference.reference_name == pipeline.name
    assert set(run.parameters) <= set(pipeline.parameters)
    assert trigger.recurrence.frequency == "Week" and trigger.recurrence.schedule.week_days == ["Monday"]


def test_global_parameters_used_are_the_ones_the_factory_defines():
    text = "".join(p.read_text() for p in FILES)
    used = set(re.findall(r"pipeline\(\)\.globalParameters\.(\w+)", text))
    factory = (ROOT / "infra" / "modules" / "datafactory.bicep").read_text()
    defined = set(re.findall(r"^      (\w+): \{\n        type: 'String'", factory, flags=re.M))
    assert used == defined, (used, defined)


# --- the calls: routes, methods, apps, keys ------------------------------------------------------


def _app_of_global_parameter() -> dict[str, dict[str, str]]:
    """Global parameter (an app's URL) -> the app main.bicep gives it."""
    main = MAIN.read_text()
    by_index = {i: a for i, a in enumerate(a for a in apps() if a["kind"] == "ingest")}
    bridge = next(a for a in apps() if a["kind"] == "bridge")
    found = {}
    for param, target in re.findall(r"^    (\w+Url): (\w+(?:\[\d\])?)\.outputs\.url$", main, flags=re.M):
        m = re.fullmatch(r"ingest\[(\d)\]", target)
        found[param] = by_index[int(m.group(1))] if m else bridge
    return found


def web_calls(pipeline) -> list[tuple[models.WebActivity, str, str]]:
    """Every Web activity that calls an app: (activity, global parameter, path below /api/)."""
    found = []
    for a in activities(pipeline.activities):
        if isinstance(a, models.WebActivity) and "/api/" in a.url["value"]:
            url = a.url["value"]
            # a path segment computed by an expression (the batch's week) stands as {week}
            url = url.replace(f"', {WEEK_EXPRESSION}, '", "{week}")
            m = re.fullmatch(
                r"@concat\(pipeline\(\)\.globalParameters\.(\w+), '/api/([^'?]+)(\?code=', uriComponent\((.+)\))?'?\)",
                url,
            )
            assert m, a.url
            if m.group(3):  # the key in the URL too: the same one as in the header
                assert m.group(4) == a.headers["x-functions-key"]["value"].removeprefix("@"), a.url
            found.append((a, m.group(1), m.group(2)))
    return found


#: the week the batch starts for: the parameter, or the Monday of the last finished week
WEEK_EXPRESSION = (
    "if(empty(pipeline().parameters.week), formatDateTime(addDays(utcnow(), mul(-1, add(dayOfWeek(utcnow()), 6))), "
    "'yyyy-MM-dd'), pipeline().parameters.week)"
)


def test_every_url_is_a_route_the_app_at_that_url_registers_with_that_method(pipeline):
    apps_by_param = _app_of_global_parameter()
    calls = web_calls(pipeline)
    assert {path for _, _, path in calls} == {
        "ingest/weather",
        "ingest/shipments",
        "ingest/demographics",
        "batches/{week}",
    }
    for activity, param, path in calls:
        name, module = route_for(path.replace("{week}", "2026-12-21"), activity.method)
        app = apps_by_param[param]
        assert module in app["functions"].split(","), f"{activity.name}: {name} is not on {app['service']}"


def test_route_check_catches_a_wrong_method_or_route():
    with pytest.raises(AssertionError):
        route_for("orchestrations/pipeline-runs", "PUT")
    with pytest.raises(AssertionError):
        route_for("ingest/rainfall", "POST")
    assert route_for("orchestrations/pipeline-runs/abc", "GET")[0] == "pipeline_runs_watch_status"


def test_each_call_sends_its_apps_key_read_from_key_vault_with_the_factory_identity(pipeline):
    by_name = {a.name: a for a in activities(pipeline.activities)}
    apps_by_param = _app_of_global_parameter()
    for activity, param, _ in web_calls(pipeline):
        key = activity.headers["x-functions-key"]["value"]
        (source,) = re.fullmatch(r"@activity\('([^']+)'\)\.output\.value", key).groups()
        getter = by_name[source]
        secret = f"{apps_by_param[param]['service']}-function-key"
        assert getter.url["value"] == (
            f"@concat(pipeline().globalParameters.keyVaultUri, 'secrets/{secret}?api-version=7.4')"
        )
        assert getter.method == "GET"
        assert (getter.authentication.type, getter.authentication.resource) == ("MSI", "https://vault.azure.net")
        assert getter.policy.secure_output is True, f"{getter.name} would log the key"
        assert activity.policy.secure_input is True, f"{activity.name} would log the key it sends"
    # the secret names are the ones the Bicep writes
    assert (
        "var functionKeySecretName = '${service}-function-key'"
        in (ROOT / "infra" / "modules" / "function-app.bicep").read_text()
    )


def _expand(body: str, item: str, run_id: str) -> dict:
    text = body.replace("@{item()}", item).replace("@{pipeline().RunId}", run_id)
    text = text.replace("@{if(pipeline().parameters.replayForce, 'true', 'false')}", "true")
    assert "@" not in text, text
    return json.loads(text)


def test_the_starter_gets_the_key_in_its_url_so_that_location_carries_it(pipeline):
    """ADF's documentation does not say whether the Web activity re-sends its headers when it
    follows Location: the starter echoes a ``code`` query parameter into Location."""
    (start,) = [a for a, _, path in web_calls(pipeline) if path == "batches/{week}"]
    assert "?code=', uriComponent(activity('" in start.url["value"] and start.policy.secure_input is True


def test_replays_post_the_path_to_the_ingest_route_of_its_source_and_ask_to_be_queued(pipeline):
    from shared.ingestion.entrypoints import read_reingest_body

    (foreach,) = [a for a in pipeline.activities if isinstance(a, models.ForEachActivity)]
    assert foreach.items.value == "@pipeline().parameters.replayPaths"
    assert pipeline.parameters["replayPaths"].type == "array"
    (switch,) = foreach.activities
    assert switch.on.value == "@split(item(), '/')[1]"
    for case in switch.cases:
        (call,) = case.activities
        assert f"'/api/ingest/{case.value}?code='" in call.url["value"]
        body = _expand(call.body["value"], f"raw/{case.value}/x/2026.csv", "r")
        # always queued: a replay answers 202 + Location at once, whatever the file's size
        assert body == {"path": f"raw/{case.value}/x/2026.csv", "force": True, "async": True}
        assert read_reingest_body(case.value, json.dumps(body).encode())[3] == []  # the route accepts it
    assert {c.value for c in switch.cases} == {"weather", "shipments", "demographics"}
    (default,) = switch.default_activities
    assert isinstance(default, models.FailActivity)


def test_the_location_a_replay_follows_is_the_status_route_of_the_same_app(pipeline):
    """The ingest route answers 202 with Location ``/api/ingest/<source>/requests/<id>``
    (tests/ingestion/test_reingest.py): the app that took the POST answers the GET too."""
    for _activity, _, path in web_calls(pipeline):
        if path.startswith("ingest/"):
            _, posted_to = route_for(path, "POST")
            name, module = route_for(f"{path}/requests/{'0' * 32}", "GET")
            assert (name, module) == (f"ingest_{path.split('/')[1]}_request", posted_to)


def _seconds(timespan: str) -> int:
    days, _, clock = timespan.rpartition(".")
    hours, minutes, seconds = (int(x) for x in clock.split(":"))
    return int(days or 0) * 86400 + hours * 3600 + minutes * 60 + seconds


def test_every_call_to_an_app_is_asynchronous_and_each_request_ends_within_the_http_limit(pipeline):
    """The Functions front end answers no HTTP request after 230 s: every call to an app lets
    ADF follow 202 + Location (turnOffAsync false), as the batch call does, each request waits
    at most 230 s, and the key travels in the URL so that a Location echoing it authenticates
    the polls too."""
    calls = web_calls(pipeline)
    assert len(calls) == 4
    for activity, _, _path in calls:
        assert activity.turn_off_async is False, activity.name
        assert _seconds(activity.http_request_timeout) <= 230, activity.name
        assert "?code=', uriComponent(activity('" in activity.url["value"], activity.name
        # the activity itself may wait for the work behind the 202 far longer
        assert _seconds(activity.policy.timeout) >= 3600, activity.name


def test_the_batch_starts_through_the_batch_route_and_follows_location(pipeline):
    from shared.mlops.start import parse_start

    (start,) = [a for a in pipeline.activities if a.name == "Start weekly batch"]
    assert start.method == "POST" and start.turn_off_async is False
    for partial in ("true", "false"):
        text = start.body["value"].replace("@{if(pipeline().parameters.partial, 'true', 'false')}", partial)
        assert "@" not in text
        inp, refused = parse_start("2026-12-21", text.encode(), "http")  # the route accepts it
        assert refused is None and inp is not None and inp.partial is (partial == "true")
    assert pipeline.parameters["week"].type == "string" and pipeline.parameters["partial"].type == "bool"
    # the activity waits as long as a batch may run (two watched runs)
    days, rest = start.policy.timeout.split(".")
    hours = int(days) * 24 + int(rest.split(":")[0])
    assert hours >= 12


@pytest.mark.parametrize("day", range(14))
def test_the_week_adf_computes_is_the_last_finished_week_as_the_app_computes_it(day):
    """ADF's expression (dayOfWeek: 0 is Sunday) against shared.weeks."""
    import datetime as dt

    from shared.weeks import last_finished_week

    now = dt.datetime(2026, 12, 20, 9, 30, tzinfo=dt.UTC) + dt.timedelta(days=day)
    day_of_week = (now.weekday() + 1) % 7  # ADF's dayOfWeek
    adf = (now + dt.timedelta(days=-1 * (day_of_week + 6))).strftime("%Y-%m-%d")
    assert adf == last_finished_week(now)


def test_a_failed_batch_fails_the_pipeline(pipeline):
    fails = [a for a in pipeline.activities if isinstance(a, models.FailActivity)]
    (fail,) = fails
    (dependency,) = fail.depends_on
    assert (dependency.activity, dependency.dependency_conditions) == ("Start weekly batch", ["Failed"])


def test_the_copy_runs_only_when_asked(pipeline):
    (guard,) = [a for a in pipeline.activities if isinstance(a, models.IfConditionActivity)]
    assert guard.expression.value == "@pipeline().parameters.copyRaw"
    assert pipeline.parameters["copyRaw"].default_value is False
    copy = guard.if_true_activities[0]
    assert isinstance(copy, models.CopyActivity)
    (sink,) = copy.outputs
    assert sink.reference_name == "ds_lake_raw"
    dataset = load(ADF / "dataset" / "ds_lake_raw.json").properties
    assert dataset.location.file_system == "raw"
