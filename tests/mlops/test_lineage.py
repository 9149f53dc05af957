"""Lineage both ways (issue 23, item 4): a published batch on a small world, asked from a forecast
down to its model, training run, data version and code, and from a curated file up to the data
versions, runs, models and weeks that used it; on the lake registry and on Azure ML's (the fake),
through the function, the command line and the route; unknown and hostile things are one line."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest
from azure.ai.ml import MLClient

from shared import runtime
from shared.lake import Lake
from shared.mlops import lineage, steps
from shared.mlops.aml_data_assets import AzureDataCatalog
from shared.mlops.aml_registry import AzureRegistry
from shared.mlops.cards import TrainingCode
from shared.mlops.data_assets import LakeDataCatalog
from shared.mlops.registry import LakeRegistry
from shared.tooling import cli
from shared.weeks import layout
from tests.drivers import indexed_functions
from tests.fakes.aml.credential import FakeCredential
from tests.fakes.aml.fake import FakeAML
from tests.mlops.test_mlops_batch import (
    GATES,
    NE,
    NOW,
    WEST,
    W,
    clock_at_now,  # noqa: F401 (autouse: the clock at the world's NOW)
    fake_training_run,
    world,
)

CODE = TrainingCode(version="0123456789abcdef", components={"forecastops_forecast_train": "v-abc"})
NE_FILE = "curated/shipments_weekly/v1/deliveries/ne/2026-12-23.csv"
HEADER = "store_id,sku,week_start,forecast,model,model_version,source,new_sku\n"


@pytest.fixture(params=["lake", "azureml"])
def ctx(request: pytest.FixtureRequest, local_lake: Lake) -> Iterator[steps.Context]:
    """The batch's context on the lake registry, or on Azure ML's through the fake workspace."""
    if request.param == "azureml":
        fake = FakeAML()
        client = MLClient(FakeCredential(), fake.subscription_id, "rg", "ws", transport=fake.transport())
        yield steps.Context(
            lake=local_lake,
            registry=AzureRegistry(client, local_lake),
            data=AzureDataCatalog(client, local_lake),
            gates=GATES,
            code=CODE,
        )
        assert fake.unhandled == []
    else:
        yield steps.Context(
            lake=local_lake, registry=LakeRegistry(local_lake), data=LakeDataCatalog(local_lake), gates=GATES, code=CODE
        )


def publish_batch(ctx: steps.Context) -> dict[str, Any]:
    """Week W's whole batch: plan, a training run of the four groups, registration, production,
    a scoring run (S1/SKU-1 by every group) and publish; the summary."""
    world(ctx.lake)
    plan = steps.plan(ctx, {"week": W}, NOW)
    train = fake_training_run(ctx.lake, "run-w1", {NE[0]: 0.3, NE[1]: 0.3, WEST[0]: 0.3, WEST[1]: 0.3})
    registered = steps.register(ctx, {"plan": plan, "train": train}, NOW)
    prod = steps.production(ctx, {"plan": plan}, NOW)
    for group, model in prod["models"].items():
        row = f"S1,SKU-1,2026-12-28,4.5,{group},{model['version']},production,False\n"
        ctx.lake.write_bytes(f"runs/run-score/outputs/score_production/forecasts/{group}.csv", (HEADER + row).encode())
    score = {"run_id": "run-score", "outcome": "completed", "metrics": {}}
    payload = {"plan": plan, "train": train, "registered": registered, "production": prod, "score": score}
    summary = steps.publish(ctx, payload, NOW)
    assert summary["outcome"] == "succeeded", summary
    return summary


def test_a_forecast_leads_to_its_model_training_run_data_version_and_code(ctx):
    summary = publish_batch(ctx)
    reference = summary["data"]["reference"]
    for thing in (f"forecast:{W}/{NE[0]}", f"curated/forecasts/v1/week={W}/{NE[0]}.csv"):
        got = lineage.lineage(ctx, thing)
        assert got["kind"] == "forecast"
        up = got["upstream"]
        assert (up["week"], up["group"], up["source"], up["score_run"]) == (W, NE[0], "production", "run-score")
        model = up["model"]
        assert model["model"]["name"] == NE[0] and model["model"]["version"] == 1
        assert model["training_run"] == "run-w1"
        assert model["data_version"]["reference"] == reference and model["data_version"]["known"] is True
        assert model["data_version"]["content_hash"] == summary["data"]["content_hash"]
        assert model["code_version"] == CODE.version and model["code_components"] == CODE.components
        # the summary says which version served: no forecast file is read without a store and SKU
        assert not any(r.startswith("curated/forecasts/") for r in got["reads"])
    one = lineage.lineage(ctx, f"forecast:{W}/{NE[0]}/S1/SKU-1")["upstream"]
    assert [(r["store_id"], r["sku"], r["forecast"]) for r in one["rows"]] == [("S1", "SKU-1", "4.5")]
    assert one["model"]["training_run"] == "run-w1"


def test_a_curated_file_leads_to_its_raw_file_and_down_to_versions_runs_models_and_weeks(ctx):
    summary = publish_batch(ctx)
    reference = summary["data"]["reference"]
    got = lineage.lineage(ctx, NE_FILE)
    assert got["kind"] == "curated"
    up = got["upstream"]
    assert up["raw"]["path"] == "raw/shipments/deliveries/ne/2026-12-23.csv" and len(up["raw"]["sha256"]) == 64
    assert up["manifest"] == NE_FILE.removesuffix(".csv") + ".manifest.json" and len(up["sha256"]) == 64
    down = got["downstream"]
    assert [(v["data_version"], v["same_content"]) for v in down["data_versions"]] == [(reference, True)]
    assert {(r["run_id"], r["kind"]) for r in down["runs"]} == {("run-w1", "train"), ("run-score", "score")}
    assert sorted(m["model"] for m in down["models"]) == sorted(f"{g}:1" for g in (*NE, *WEST))
    served = {(w["week"], w["group"], w["model"]) for w in down["weeks_served"]}
    assert served == {(W, g, f"{g}:1") for g in (*NE, *WEST)}


def test_a_model_a_data_version_and_a_run_answer_both_ways(ctx):
    summary = publish_batch(ctx)
    reference = summary["data"]["reference"]
    model = lineage.lineage(ctx, f"model:{WEST[1]}:1")
    assert model["upstream"]["training_run"] == "run-w1" and model["upstream"]["data_version"]["reference"] == reference
    assert [(w["week"], w["forecasts"]) for w in model["downstream"]["weeks_served"]] == [
        (W, f"curated/forecasts/v1/week={W}/{WEST[1]}.csv")
    ]
    data = lineage.lineage(ctx, f"data:{W}")
    assert NE_FILE in data["upstream"]["files"] and data["upstream"]["content_hash"] == summary["data"]["content_hash"]
    assert len(data["downstream"]["models"]) == 4 and len(data["downstream"]["weeks_served"]) == 4
    assert lineage.lineage(ctx, reference)["downstream"] == data["downstream"]
    run = lineage.lineage(ctx, "run:run-w1")
    assert run["upstream"] == {
        "run_id": "run-w1",
        "kind": "train",
        "data_versions": [reference],
        "code_versions": [CODE.version],
    }
    assert len(run["downstream"]["models"]) == 4
    scored = lineage.lineage(ctx, "run:run-score")
    assert scored["upstream"]["kind"] == "score"
    assert scored["downstream"]["forecasts"] == [{"week": W, "forecasts": f"curated/forecasts/v1/week={W}/"}]


UNKNOWN = [
    f"model:{NE[0]}:99",
    "model:nowhere.large.fast:1",
    "data:2031-01-06",
    "run:run-never",
    "forecast:2027-01-04/northeast.large.fast",
    f"forecast:{W}/{NE[0]}/S9/SKU-9",
    "curated/shipments_weekly/v1/nothing.csv",
    "something",
]
HOSTILE = ["../../etc/passwd", "x" * 10_000, "model:a\x00b:1", "curated/../../../etc/passwd.csv", "", "/etc/passwd"]


@pytest.mark.parametrize("thing", UNKNOWN + HOSTILE)
def test_an_unknown_or_hostile_thing_is_one_line_naming_no_file_system_path(ctx, thing):
    publish_batch(ctx)
    with pytest.raises(lineage.LineageNotFound) as caught:
        lineage.lineage(ctx, thing)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 400
    assert str(ctx.lake.describe("x/y")).rsplit("/x/y", 1)[0] not in message  # the lake's own folder
    status, body, _ = lineage.answer(ctx, thing)
    assert status == 404 and body == {"error": "not_found", "message": message}


def test_the_command_line_prints_the_lineage_and_refuses_an_unknown_thing_in_one_line(local_lake, capsys):
    ctx = steps.Context(
        lake=local_lake, registry=LakeRegistry(local_lake), data=LakeDataCatalog(local_lake), gates=GATES, code=CODE
    )
    publish_batch(ctx)
    root = local_lake.describe("x/y").rsplit("/x/y", 1)[0]
    out = io.StringIO()
    assert cli.main(["--lake", root, "lineage", f"forecast:{W}/{NE[0]}"], out=out) == 0
    assert json.loads(out.getvalue())["upstream"]["model"]["training_run"] == "run-w1"
    for thing in ("model:northeast.large.fast:99", "../../etc/passwd", "a\x00b"):
        assert cli.main(["--lake", root, "lineage", thing], out=io.StringIO()) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_the_route_answers_the_lineage_and_404_for_an_unknown_thing(local_lake, monkeypatch):
    ctx = steps.Context(
        lake=local_lake, registry=LakeRegistry(local_lake), data=LakeDataCatalog(local_lake), gates=GATES, code=CODE
    )
    publish_batch(ctx)
    monkeypatch.setattr(runtime, "lake", lambda: local_lake)
    monkeypatch.setattr(runtime, "registry", lambda: ctx.registry)
    monkeypatch.setattr(runtime, "data_catalog", lambda: ctx.data)
    fn = indexed_functions()["lineage_http"]
    trigger = json.loads(fn.get_function_json())["bindings"][0]
    assert (trigger["route"], trigger["methods"], trigger["authLevel"]) == ("lineage/{*thing}", ["GET"], "FUNCTION")

    def get(thing: str) -> tuple[int, dict]:
        req = func.HttpRequest(
            method="GET", url=f"http://localhost:7071/api/lineage/{thing}", body=b"", route_params={"thing": thing}
        )
        resp = fn.get_user_function()(req)
        return resp.status_code, json.loads(resp.get_body())

    status, body = get(NE_FILE)
    assert status == 200 and body["downstream"]["weeks_served"]
    status, body = get(f"model:{NE[0]}:1")
    assert status == 200 and body["upstream"]["training_run"] == "run-w1"
    for thing in ("model:northeast.large.fast:99", "../../etc/passwd", "x" * 10_000):
        status, body = get(thing)
        assert status == 404 and body["error"] == "not_found" and "\n" not in body["message"]


def _rewrite_summary(ctx: steps.Context, change) -> None:
    path = f"batches/week={W}/summary.json"
    summary = json.loads(ctx.lake.read_bytes(path))
    change(summary)
    ctx.lake.write_bytes(path, json.dumps(summary).encode())


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda s: s.update(groups=sorted(s["groups"])),  # a list of the names
        lambda s: s["groups"].update({NE[0]: "production"}),  # one group's line a string
        lambda s: s["groups"].update({WEST[1]: ["production", 1]}),
    ],
    ids=["groups-a-list", "line-a-string", "line-a-list"],
)
def test_a_malformed_week_summary_is_skipped_where_it_does_not_read(ctx, corrupt):
    publish_batch(ctx)
    _rewrite_summary(ctx, corrupt)
    for thing in (
        f"forecast:{W}/{NE[0]}",
        f"model:{WEST[1]}:1",
        f"model:{NE[1]}:1",
        f"data:{W}",
        NE_FILE,
        "run:run-w1",
    ):
        status, body, _ = lineage.answer(ctx, thing)
        assert status == 200, (thing, body)
    # a forecast whose summary line does not read is answered from its published file
    up = lineage.lineage(ctx, f"forecast:{W}/{NE[0]}")["upstream"]
    assert up["model"]["training_run"] == "run-w1" and up["source"] == "production"
    served = lineage.lineage(ctx, f"model:{NE[1]}:1")["downstream"]["weeks_served"]
    groups = json.loads(ctx.lake.read_bytes(f"batches/week={W}/summary.json"))["groups"]
    assert [(w["week"], w["group"]) for w in served] == ([(W, NE[1])] if isinstance(groups, dict) else [])


def test_a_run_link_that_is_not_json_is_skipped_and_named(ctx):
    summary = publish_batch(ctx)
    version = summary["data"]["reference"].rsplit(":", 1)[1]
    bad = f"{layout.data_runs('forecastops-curated', version)}/run-bad.json"
    ctx.lake.write_bytes(bad, b"{not json")
    for thing in (f"data:{W}", NE_FILE):
        got = lineage.lineage(ctx, thing)
        assert {(r["run_id"], r["kind"]) for r in got["downstream"]["runs"]} == {
            ("run-w1", "train"),
            ("run-score", "score"),
        }
        assert len(got["downstream"]["models"]) == 4
        assert [p for p in got["problems"] if bad in p], got["problems"]
    assert lineage.answer(ctx, f"data:{W}")[0] == 200
    assert "problems" not in lineage.lineage(ctx, f"model:{NE[0]}:1")  # only when something did not read
