"""The weekly batch's steps on a real lake (a local folder and Azurite): the plan (data complete
or not, which groups retrain and why), registration and promotion from a run's outputs, the
production models handed to scoring, and the published forecasts and summary; and the batch's
one sequence driven with plain calls."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest

from shared import clock
from shared.aml.catalog import load_catalog
from shared.lake import Lake
from shared.mlops import batch, steps
from shared.mlops.batch import BatchInput
from shared.mlops.cards import Metrics, ModelCard
from shared.mlops.data_assets import LakeDataCatalog
from shared.mlops.registry import LakeRegistry, review
from shared.tooling.bulk_ingest import ingest_all
from shared.weeks.announce import CollectSignal
from tests.drivers import DELIVERIES_HEADER, STORE_MASTER_HEADER, US_OBS_HEADER, lines, put

W = "2026-12-21"  # Sunday 2026-12-20 .. Saturday 2026-12-26
NOW = dt.datetime(2026, 12, 28, 9, 0, tzinfo=dt.UTC)
GATES = load_catalog()["forecast"].gates
NE = ("northeast.large.fast", "northeast.large.slow")
WEST = ("west.small.fast", "west.small.slow")


@pytest.fixture(autouse=True)
def clock_at_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """The world of these tests (W's data) is at NOW, and so is the clock: W's days are not
    dated beyond today (``future_date``), whatever today is."""
    monkeypatch.setattr(clock, "now", lambda: NOW)


def _days(first: str, last: str) -> list[str]:
    d, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    out = []
    while d <= end:
        out.append(f"{d:%m/%d/%Y}")
        d += dt.timedelta(days=1)
    return out


def world(lake: Lake, *, weather: bool = True, ne_units: int = 3, west_shipments: bool = True) -> list[str]:
    """Two regions, one store each (S1 northeast large at 02134, S2 west small at 98101), a
    weather file per zip and a shipments file per region for the week W; ingested and indexed.
    The weeks the ingest announced complete."""
    put(
        lake,
        "raw/demographics/store_master.csv",
        lines(
            STORE_MASTER_HEADER,
            "S1,02134,northeast,Large,100,40,50000,40",
            "S2,98101,west,Small,100,40,50000,40",
        ),
    )
    if weather:
        for z in ("02134", "98101"):
            rows = [f"{z},{d},50,32,0.1," for d in _days("2026-12-13", "2026-12-26")]
            put(lake, f"raw/weather/us_obs/zip-{z}.csv", lines(US_OBS_HEADER, *rows))
    put(
        lake,
        "raw/shipments/deliveries/ne/2026-12-23.csv",
        lines(DELIVERIES_HEADER, f"S1,SKU-1,2026-12-23T05:00:00,{ne_units},0"),
    )
    if west_shipments:
        put(
            lake,
            "raw/shipments/deliveries/west/2026-12-23.csv",
            lines(DELIVERIES_HEADER, "S2,SKU-1,2026-12-23T05:00:00,5,0"),
        )
    signal = CollectSignal()
    paths = [p for s in ("weather", "shipments", "demographics") for p in lake.list(f"raw/{s}")]
    ingest_all(lake, paths, io.StringIO(), signal=signal)
    return sorted({m["week"] for m in signal.messages})


def context(lake: Lake, **kw) -> steps.Context:
    return steps.Context(lake=lake, registry=LakeRegistry(lake), data=LakeDataCatalog(lake), gates=GATES, **kw)


def promote(ctx: steps.Context, plan: dict, name: str, *, mape: float = 0.3, days_old: float = 1.0) -> ModelCard:
    """A production model of ``name`` trained on the plan's data."""
    region, fmt, _ = name.split(".")
    card = ctx.registry.register(
        ModelCard(
            name=name,
            metrics=Metrics(mape=mape, baseline_mape=0.5),
            trained_at=(NOW - dt.timedelta(days=days_old)).timestamp(),
            run_id="run-before",
            data_versions={"curated": plan["data"]["reference"], "inputs": plan["fingerprints"][f"{region}.{fmt}"]},
        ),
        {"model.pkl": b"model " + name.encode()},
    )
    # promoted when it was new (a stale model was fresh once)
    review(ctx.registry, name, int(card.version or 0), GATES, NOW - dt.timedelta(days=max(0.0, days_old - 1)))
    return ctx.registry.get(name, int(card.version or 0))


# plan -------------------------------------------------------------------------------------------------
def test_the_first_batch_trains_every_group_on_a_registered_data_version(lake):
    assert world(lake) == [W]
    ctx = context(lake)
    plan = steps.plan(ctx, {"week": W, "by": "data_complete"}, NOW)
    assert plan["status"] == "ready" and plan["train"] == "all" and plan["missing"] == []
    assert plan["data"]["reference"] == f"azureml:forecastops-curated:{W}" and plan["data"]["files"] == 5
    assert set(plan["fingerprints"]) == {"northeast.large", "west.small"}
    assert json.loads(lake.read_bytes(f"batches/week={W}/plan.json"))["data"] == plan["data"]
    # the same data planned again: the same version, not a new one
    assert steps.plan(ctx, {"week": W}, NOW)["data"]["version"] == W


def test_a_week_with_a_source_missing_waits_and_says_which_or_trains_on_what_is_there(lake):
    assert world(lake, weather=False) == []
    ctx = context(lake)
    plan = steps.plan(ctx, {"week": W, "by": "schedule"}, NOW)
    assert plan["status"] == "waiting_for_data" and plan["missing"] == ["weather_daily"]
    assert "weather_daily" in plan["reason"]
    assert json.loads(lake.read_bytes(f"batches/week={W}/waiting.json"))["missing"] == ["weather_daily"]
    summary = steps.publish(ctx, {"plan": plan}, NOW)
    assert summary["outcome"] == "waiting_for_data" and summary["missing"] == ["weather_daily"]
    partial = steps.plan(ctx, {"week": W, "by": "schedule", "partial": True}, NOW)
    assert partial["status"] == "ready" and partial["partial"] is True
    assert "trained on what is there" in partial["reason"]


def test_only_the_groups_whose_inputs_changed_retrain_and_each_says_why(lake):
    world(lake)
    ctx = context(lake)
    first = steps.plan(ctx, {"week": W}, NOW)
    for name in (*NE, *WEST):
        promote(ctx, first, name)
    unchanged = steps.plan(ctx, {"week": W}, NOW)
    assert unchanged["train"] == []
    # each plan reads only the manifests new or changed since the last one (issue 22, item 4)
    assert first["data"]["manifests"] == {"listed": 5, "read": 5} and first["data"]["pinned"] is True
    assert unchanged["data"]["manifests"] == {"listed": 5, "read": 0}
    assert {g: d["action"] for g, d in unchanged["groups"].items()} == dict.fromkeys((*NE, *WEST), "skip")
    assert unchanged["groups"][NE[0]]["reason"] == "inputs unchanged since v1 (trained 1 days ago)"

    # a corrected northeast file: only northeast's groups retrain, and the reason names the file
    put(
        lake, "raw/shipments/deliveries/ne/2026-12-23.csv", lines(DELIVERIES_HEADER, "S1,SKU-1,2026-12-23T05:00:00,9,0")
    )
    ingest_all(lake, ["raw/shipments/deliveries/ne/2026-12-23.csv"], io.StringIO())
    changed = steps.plan(ctx, {"week": W}, NOW)
    assert sorted(changed["train"]) == sorted(NE)
    reason = changed["groups"][NE[1]]["reason"]
    assert reason.startswith("inputs changed since v1: 1 file(s) new or changed (2026-12-23.csv)"), reason
    assert changed["groups"][WEST[0]]["action"] == "skip"
    assert changed["data"]["version"] == f"{W}.2"  # the same week with other content: a new version
    assert changed["data"]["manifests"] == {"listed": 5, "read": 1}  # the corrected file's, rewritten

    forced = steps.plan(ctx, {"week": W, "retrain": "all"}, NOW)
    assert sorted(forced["train"]) == sorted((*NE, *WEST))
    asked = steps.plan(ctx, {"week": W, "by": "staleness", "groups": [WEST[0]]}, NOW)
    assert asked["groups"][WEST[0]] == asked["groups"][WEST[0]] | {
        "action": "retrain",
        "reason": "asked by the staleness check",
    }


def test_a_stale_production_model_retrains_even_when_its_inputs_did_not_change(lake):
    world(lake)
    ctx = context(lake)
    first = steps.plan(ctx, {"week": W}, NOW)
    promote(ctx, first, NE[0], days_old=75)
    promote(ctx, first, NE[1], days_old=10)
    plan = steps.plan(ctx, {"week": W}, NOW)
    assert plan["groups"][NE[0]]["reason"] == "production v1 is 75 days old (stale: over 60)"
    assert plan["groups"][NE[1]]["action"] == "skip"
    # west has no model yet: a new region and format, both velocities train
    assert plan["groups"][WEST[0]]["reason"] == "no production model"
    assert sorted(plan["train"]) == sorted([NE[0], *WEST])


# register ---------------------------------------------------------------------------------------------
def fake_training_run(lake: Lake, run_id: str, groups: dict[str, float]) -> dict:
    """A finished training run's outputs in the lake and the watch's answer for it."""
    for g in groups:
        lake.write_bytes(f"runs/{run_id}/outputs/train/models/{g}.pkl", f"pickle of {g} by {run_id}".encode())
    lake.write_bytes(f"runs/{run_id}/outputs/train/models/lgbm.txt", b"booster")
    evaluate: dict[str, float] = {"overall.mape": 0.3}
    for g, m in groups.items():
        evaluate |= {
            f"{g}.mape": m,
            f"{g}.rmse_all": 3.0,
            f"{g}.baseline_mape": 0.5,
            f"{g}.trained_at": NOW.timestamp(),
        }
    train = {f"{g}.trained_at": NOW.timestamp() for g in groups} | {"models_trained": float(len(groups))}
    # as the watch reports them: per step, <group>.<metric>
    return {"run_id": run_id, "outcome": "completed", "metrics": {"train": train, "evaluate": evaluate}}


def test_registration_follows_the_rules_records_lineage_and_is_idempotent(lake):
    world(lake)
    ctx = context(lake)
    plan = steps.plan(ctx, {"week": W}, NOW)
    promote(ctx, plan, NE[0], mape=0.30)
    promote(ctx, plan, NE[1], mape=0.30)
    train = fake_training_run(lake, "run-w1", {NE[0]: 0.31, NE[1]: 0.40, WEST[0]: 0.90, WEST[1]: 0.20})
    first = steps.register(ctx, {"plan": plan, "train": train}, NOW)
    again = steps.register(ctx, {"plan": plan, "train": train}, NOW)  # an activity retried
    assert first == again
    got = {g: (r["outcome"], r["rule"]) for g, r in first["groups"].items()}
    assert got == {
        NE[0]: ("promoted", "within_margin"),
        NE[1]: ("kept", "beyond_margin"),
        WEST[0]: ("kept", "gate"),
        WEST[1]: ("promoted", "no_production"),
    }
    assert [c.version for c in ctx.registry.versions(NE[1])] == [1, 2]  # not registered twice
    card = ctx.registry.get(WEST[1], 1)
    assert card.files == ["lgbm.txt", "model.pkl"] and card.run_id == "run-w1"
    assert card.data_versions["curated"] == plan["data"]["reference"]
    assert card.data_versions["inputs"] == plan["fingerprints"]["west.small"]
    # lineage: the model's data version, and from a curated file back to the run
    version = ctx.data.get("forecastops-curated", card.data_versions["curated"].rsplit(":", 1)[1])
    shipments = next(p for p in version.files if "/ne/" in p)
    assert ("forecastops-curated", W, "run-w1", "train") in [tuple(x) for x in ctx.data.runs_for_file(shipments)]


def test_a_training_run_that_failed_registers_nothing_and_says_why(lake):
    world(lake)
    ctx = context(lake)
    plan = steps.plan(ctx, {"week": W}, NOW)
    failed = {"run_id": "run-x", "outcome": "failed", "error": {"message": "train: out of memory"}, "metrics": {}}
    answer = steps.register(ctx, {"plan": plan, "train": failed}, NOW)
    assert answer["trained"] is False and "out of memory" in answer["error"]
    assert ctx.registry.names() == []


# production, publish -------------------------------------------------------------------------------
def test_scoring_gets_the_production_models_and_publish_writes_the_forecasts_dataset(lake):
    world(lake)
    ctx = context(lake)
    plan = steps.plan(ctx, {"week": W}, NOW)
    promote(ctx, plan, NE[0])
    promote(ctx, plan, WEST[0], days_old=70)
    plan = steps.plan(ctx, {"week": W}, NOW)  # northeast unchanged: skipped; west stale: retrains
    prod = steps.production(ctx, {"plan": plan}, NOW)
    # one folder per plan: a scoring run never reads a folder another batch rewrites
    folder = "batches/" + prod["uri"].removeprefix("azureml://datastores/lake_batches/paths/")
    assert folder.startswith(f"batches/week={W}/production/2026") and folder != f"batches/week={W}/production"
    assert {g: m["version"] for g, m in prod["models"].items()} == {NE[0]: 1, WEST[0]: 1}
    assert prod["models"][WEST[0]]["stale"] is True
    assert lake.read_bytes(f"{folder}/{NE[0]}/model.pkl") == f"model {NE[0]}".encode()
    listed = json.loads(lake.read_bytes(f"{folder}/production.json"))
    assert listed["models"][NE[0]]["version"] == 1

    header = "store_id,sku,week_start,forecast,model,model_version\n"
    for g in (NE[0], WEST[0]):
        row = f"S1,SKU-1,2026-12-28,4.5,{g},1\n"
        lake.write_bytes(f"runs/run-score/outputs/score_production/forecasts/{g}.csv", (header + row).encode())
    lake.write_bytes(f"curated/forecasts/v1/week={W}/gone.region.fast.csv", b"old")  # no longer scored
    score = {"run_id": "run-score", "outcome": "completed", "metrics": {}}
    summary = steps.publish(ctx, {"plan": plan, "registered": {"groups": {}}, "production": prod, "score": score}, NOW)
    assert summary["outcome"] == "succeeded", summary
    assert sorted(lake.list(f"curated/forecasts/v1/week={W}")) == [
        f"curated/forecasts/v1/week={W}/{NE[0]}.csv",
        f"curated/forecasts/v1/week={W}/{WEST[0]}.csv",
    ]
    line = summary["groups"][NE[0]]
    assert line["training"] == "skipped" and line["scored_with"] == 1 and line["rows"] == 1
    west = summary["groups"][WEST[0]]
    assert west["stale_production"] is True and west["scored_with"] == 1
    assert west["training"] == "failed" and west["why"] == "the training run produced no model for it"
    assert json.loads(lake.read_bytes(f"batches/week={W}/summary.json"))["groups"] == summary["groups"]


def test_a_scoring_run_that_failed_fails_the_batch_and_publishes_nothing(lake):
    world(lake)
    ctx = context(lake)
    plan = steps.plan(ctx, {"week": W}, NOW)
    promote(ctx, plan, NE[0])
    prod = steps.production(ctx, {"plan": plan}, NOW)
    score = {"run_id": "run-s", "outcome": "failed", "error": {"message": "score: no features"}}
    summary = steps.publish(ctx, {"plan": plan, "registered": {}, "production": prod, "score": score}, NOW)
    assert summary["outcome"] == "failed" and "no features" in summary["problems"][0]
    assert list(lake.list("curated/forecasts")) == []


# the sequence ---------------------------------------------------------------------------------------
class Recorder:
    def __init__(self, plan: dict, production: dict) -> None:
        self.plan, self.production, self.calls = plan, production, []

    def call(self, step: str, payload: dict) -> dict:
        self.calls.append(step)
        answers = {"plan": self.plan, "register": {"groups": {}}, "production": self.production}
        return answers.get(step) or {"outcome": "succeeded", "step": step, "payload": payload}

    def watch(self, command: batch.Watch) -> dict:
        self.calls.append(f"watch {command.kind}: {command.pipeline} {command.parameters} {sorted(command.inputs)}")
        return {"runs": [{"run_id": f"run-{command.kind}", "outcome": "completed", "metrics": {}}]}


PLAN = {"status": "ready", "week": W, "data": {"reference": "azureml:forecastops-curated:x"}, "watch": {}}


@pytest.mark.parametrize(
    ("train", "models", "expected"),
    [
        (
            "all",
            {"a.b.c": {}},
            [
                "plan",
                "watch train: forecast {'groups': 'all'} ['curated']",
                "register",
                "production",
                "watch score: score {} ['curated', 'production']",
                "publish",
            ],
        ),
        (
            [],
            {"a.b.c": {}},
            ["plan", "register", "production", "watch score: score {} ['curated', 'production']", "publish"],
        ),
        (
            ["a.b.c", "a.b.d"],
            {},
            [
                "plan",
                "watch train: forecast {'groups': 'a.b.c,a.b.d'} ['curated']",
                "register",
                "production",
                "publish",
            ],
        ),
    ],
)
def test_the_batch_trains_only_when_a_group_retrains_and_scores_only_with_production_models(train, models, expected):
    rec = Recorder(PLAN | {"train": train}, {"models": models, "uri": "azureml://x"})
    summary = batch.run_here(BatchInput(week=W), rec.call, rec.watch)
    assert rec.calls == expected
    if "publish" in rec.calls:
        payload = summary["payload"]
        assert payload["score"] == (None if not models else payload["score"])


def test_a_week_that_is_not_ready_goes_straight_to_its_summary():
    rec = Recorder({"status": "waiting_for_data", "week": W}, {})
    batch.run_here(BatchInput(week=W), rec.call, rec.watch)
    assert rec.calls == ["plan", "publish"]


@pytest.mark.parametrize("week", ["2026-12-22", "2026-13-01", "next week", "2026-12-21T00:00"])
def test_a_week_is_named_by_its_monday(week):
    with pytest.raises(ValueError):
        BatchInput(week=week)


def test_every_entry_point_of_a_week_is_the_same_batch_and_a_staleness_retrain_its_own():
    ids = {batch.instance_id_for(BatchInput(week=W, by=by)) for by in ("data_complete", "schedule", "http", "cli")}
    assert ids == {f"weekly-batch-{W}"}
    stale = batch.instance_id_for(BatchInput(week=W, by="staleness", groups=[NE[0]]))
    assert stale.startswith(f"weekly-batch-{W}-stale-") and stale != batch.instance_id_for(
        BatchInput(week=W, by="staleness", groups=[NE[1]])
    )


def test_a_replayed_plan_asks_for_the_same_runs_and_a_new_plan_for_new_ones():
    """The runs' keys follow the plan: a replay or a retried step re-attaches to the run it
    started; the week planned anew (its instance purged, or the command line again) does not
    re-attach to the old run, which may have failed."""
    keys = []

    def watch(command: batch.Watch) -> dict:
        keys.append(command.key)
        return {"runs": [{"run_id": "r", "outcome": "completed", "metrics": {}}]}

    def call_for(started_at: str):
        return Recorder(PLAN | {"train": "all", "started_at": started_at}, {"models": {"a.b.c": {}}, "uri": "x"}).call

    for started_at in ("2026-12-28T09:00:00Z", "2026-12-28T09:00:00Z", "2026-12-29T09:00:00Z"):
        batch.run_here(BatchInput(week=W), call_for(started_at), watch)
    train = keys[0::2]
    assert train[0] == train[1] != train[2] and all(k.startswith(f"batch-{W}-train-") for k in train)
    assert keys[1] == keys[3] != keys[5]


def test_a_registration_that_died_before_its_files_is_completed_on_the_retry(lake):
    world(lake)
    ctx = context(lake)
    plan = steps.plan(ctx, {"week": W}, NOW)
    train = fake_training_run(lake, "run-crash", {WEST[1]: 0.2})
    card = ctx.registry.register(  # the first attempt claimed version 1, then died
        ModelCard(
            name=WEST[1], metrics=Metrics(mape=0.2, baseline_mape=0.5), trained_at=NOW.timestamp(), run_id="run-crash"
        ),
        {"model.pkl": b"", "lgbm.txt": b""},
    )
    lake.delete(f"models/{WEST[1]}/1/model.pkl")
    lake.delete(f"models/{WEST[1]}/1/lgbm.txt")
    answer = steps.register(ctx, {"plan": plan, "train": train}, NOW)
    assert answer["groups"][WEST[1]]["outcome"] == "promoted" and answer["groups"][WEST[1]]["version"] == card.version
    assert ctx.registry.read_file(WEST[1], 1, "model.pkl") == f"pickle of {WEST[1]} by run-crash".encode()
    assert [c.version for c in ctx.registry.versions(WEST[1])] == [1]


def test_a_staleness_retrain_keeps_its_records_beside_the_weeks_own(lake):
    world(lake)
    ctx = context(lake)
    steps.plan(ctx, {"week": W}, NOW)
    stale = steps.plan(ctx, {"week": W, "by": "staleness", "groups": [NE[0]]}, NOW)
    suffix = stale["instance"].removeprefix(f"weekly-batch-{W}")
    assert suffix.startswith("-stale-")
    assert lake.exists(f"batches/week={W}/plan.json") and lake.exists(f"batches/week={W}/plan{suffix}.json")
    assert json.loads(lake.read_bytes(f"batches/week={W}/plan.json"))["by"] == "http"


def test_a_model_whose_run_reported_nan_is_not_registered_or_kept_and_the_others_go_on(lake):
    world(lake)
    ctx = context(lake)
    plan = steps.plan(ctx, {"week": W}, NOW)
    train = fake_training_run(lake, "run-nan", {NE[0]: 0.3, NE[1]: float("nan"), WEST[0]: 0.3})
    train["metrics"]["evaluate"][f"{WEST[0]}.trained_at"] = float("nan")
    train["metrics"]["train"][f"{WEST[0]}.trained_at"] = float("nan")
    answer = steps.register(ctx, {"plan": plan, "train": train}, NOW)["groups"]
    assert answer[NE[0]]["outcome"] == "promoted"
    assert answer[NE[1]]["outcome"] == "kept" and answer[NE[1]]["rule"] == "gate"  # a NaN MAPE fails the gate
    assert answer[WEST[0]] == {"registered": False, "reason": "the run reported no trained_at for it: not registered"}
    assert ctx.registry.versions(WEST[0]) == []
