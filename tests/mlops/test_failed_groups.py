"""Per-group fault isolation in the weekly batch (issue 22, item 3): a group whose training
fails (its fit raised, too little history, the whole run failed) is recorded failed with its
one-line reason and still scored, every other group completes, the summary lists the failed
groups and the printed line counts them; a rerun of the week's batch retries only the groups
that failed, when nothing else changed (k failed groups: a training run of k groups)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from shared.lake import Lake
from shared.mlops import batch, failures, steps
from shared.mlops.batch import BatchInput
from shared.mlops.cards import TrainingCode
from shared.tooling.bulk_ingest import ingest_all
from shared.tooling.weekly_batch import print_summary
from tests.drivers import DELIVERIES_HEADER, lines, put
from tests.mlops.test_mlops_batch import (
    NE,
    NOW,
    WEST,
    W,
    clock_at_now,  # noqa: F401 (autouse: the clock at the world's NOW)
    context,
    fake_training_run,
    world,
)

GROUPS = (*NE, *WEST)
#: the MAPE each group's model reaches when it trains: west.small.fast's fails the gates (kept)
MAPE = {NE[0]: 0.3, NE[1]: 0.3, WEST[0]: 0.9, WEST[1]: 0.3}
ZEROS = "ValueError: every target of the group is zero"
SHORT = "3 training rows: too few to fit (under 20); served by its baseline"
#: the order in which groups break in the k-failed-groups test
BREAKS = (NE[1], WEST[1], NE[0], WEST[0])


class Runs:
    """The batch's pipeline runs, faked at the watch: a training run trains every group it is
    handed except the ``broken`` ones (its manifest lists them: ``failed`` with the exception's
    line, or ``not_fitted``), or fails as a whole; a scoring run serves every group of the
    world by its production model, else its baseline."""

    def __init__(self, ctx: steps.Context, broken: dict[str, str] | None = None) -> None:
        self.ctx, self.broken, self.handed, self.whole_run_fails = ctx, dict(broken or {}), [], False
        self.runs = 0

    def watch(self, command: batch.Watch) -> dict[str, Any]:
        self.runs += 1
        n = self.runs
        if command.kind == "train":
            asked = command.parameters["groups"]
            groups = list(GROUPS) if asked == "all" else asked.split(",")
            self.handed.append(sorted(groups))
            if self.whole_run_fails:
                error = {"message": "train: the node was preempted"}
                return {"runs": [{"run_id": f"run-t{n}", "outcome": "failed", "error": error, "metrics": {}}]}
            trained = {g: MAPE[g] for g in groups if g not in self.broken}
            run = fake_training_run(self.ctx.lake, f"run-t{n}", trained)
            self._manifest(f"run-t{n}", asked, groups, trained)
            return {"runs": [run]}
        production = {c.name: int(c.version or 0) for c in self.ctx.registry.production_models()}
        out = f"runs/run-s{n}/outputs/score_production/forecasts"
        sources = {}
        for g in GROUPS:
            v = production.get(g)
            row = f"S1,SKU-1,2026-12-28,4.5,{g},{v or ''},{'production' if v else 'baseline'},false\n"
            header = "store_id,sku,week_start,forecast,model,model_version,source,new_sku\n"
            self.ctx.lake.write_bytes(f"{out}/{g}.csv", (header + row).encode())
            sources[g] = {"source": "production" if v else "baseline", "model": g, "version": v, "reasons": []}
        self.ctx.lake.write_bytes(f"{out}/summary.json", json.dumps({"sources": sources}).encode())
        return {"runs": [{"run_id": f"run-s{n}", "outcome": "completed", "metrics": {}}]}

    def _manifest(self, run_id: str, asked: str, groups: list[str], trained: dict[str, float]) -> None:
        broken = [g for g in groups if g in self.broken]
        manifest = {
            "groups": "all" if asked == "all" else groups,
            "models": [{"group": g, "file": f"{g}.pkl"} for g in sorted(trained)],
            "failed": [{"group": g, "reason": self.broken[g]} for g in broken if self.broken[g] != SHORT],
            "not_fitted": [{"group": g, "reason": SHORT} for g in broken if self.broken[g] == SHORT],
        }
        self.ctx.lake.write_bytes(f"runs/{run_id}/outputs/train/models/manifest.json", json.dumps(manifest).encode())

    def batch(self, **start: Any) -> dict[str, Any]:
        """The week's batch, its steps run for real on the lake and registry."""

        def call(step: str, payload: dict[str, Any]) -> dict[str, Any]:
            return steps.run_step(self.ctx, step, payload, NOW)

        return batch.run_here(BatchInput(week=W, **start), call, self.watch)


def _plan(lake: Lake) -> dict[str, Any]:
    return json.loads(lake.read_bytes(f"batches/week={W}/plan.json"))


def test_the_summary_lists_each_failed_group_with_its_reason_and_every_group_is_scored(lake):
    world(lake)
    runs = Runs(context(lake), {NE[1]: ZEROS, WEST[1]: SHORT})
    summary = runs.batch(by="data_complete")
    assert summary["outcome"] == "succeeded", summary
    assert summary["failed_groups"] == {NE[1]: f"its fit failed: {ZEROS}", WEST[1]: f"not fitted: {SHORT}"}
    for group in (NE[1], WEST[1]):
        line = summary["groups"][group]
        assert line["training"] == "failed" and line["why"] == summary["failed_groups"][group]
        assert line["source"] == "baseline" and line["rows"] == 1  # still scored
    assert summary["groups"][NE[0]]["decision"] == "promoted" and summary["groups"][NE[0]]["source"] == "production"
    assert summary["groups"][WEST[0]]["decision"] == "kept"
    assert summary["counts"]["failed"] == 2 and summary["counts"]["scored"] == 4
    assert json.loads(lake.read_bytes(f"batches/week={W}/summary.json"))["failed_groups"] == summary["failed_groups"]
    out = io.StringIO()
    print_summary(summary, out)
    assert f"2 failed to train ({NE[1]}, {WEST[1]})" in out.getvalue()


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_a_rerun_trains_exactly_the_k_groups_that_failed(local_lake, k):
    world(local_lake)
    broken = dict.fromkeys(BREAKS[:k], ZEROS)
    runs = Runs(context(local_lake), broken)
    first = runs.batch(by="data_complete")
    assert sorted(first["failed_groups"]) == sorted(broken) and runs.handed == [sorted(GROUPS)]

    rerun = runs.batch(rerun=True)
    assert runs.handed[1] == sorted(broken)  # k groups, not a whole run
    assert sorted(rerun["failed_groups"]) == sorted(broken)  # the same faults: failed again, still listed
    plan = _plan(local_lake)["groups"]
    for group in broken:
        assert plan[group]["reason"] == f"retrying: training failed in the last batch (its fit failed: {ZEROS})"
    for group in set(GROUPS) - set(broken):
        assert plan[group]["action"] == "skip", (group, plan[group])

    runs.broken = {}  # the faults mended: the next rerun retries them once more, and they train
    mended = runs.batch(rerun=True)
    assert runs.handed[2] == sorted(broken) and mended["failed_groups"] == {}
    runs.batch(rerun=True)
    assert len(runs.handed) == 3  # nothing failed, nothing changed: no training run at all


def test_a_kept_model_is_not_trained_again_by_reruns_of_the_same_inputs(local_lake):
    world(local_lake)
    runs = Runs(context(local_lake), {NE[1]: ZEROS})
    runs.batch()
    for _ in range(2):
        runs.batch(rerun=True)
        decided = _plan(local_lake)["groups"][WEST[0]]
        assert decided["action"] == "skip" and decided["candidate"] == 1
        assert decided["reason"] == "unchanged since the last batch, which trained v1 on the same inputs and code"
    assert runs.handed[1:] == [[NE[1]], [NE[1]]]
    assert [c.version for c in runs.ctx.registry.versions(WEST[0])] == [1]


def test_a_rerun_after_a_groups_inputs_changed_retrains_those_with_the_failed_ones(local_lake):
    world(local_lake)
    runs = Runs(context(local_lake), {NE[1]: ZEROS})
    runs.batch()
    lake = local_lake
    put(
        lake,
        "raw/shipments/deliveries/west/2026-12-23.csv",
        lines(DELIVERIES_HEADER, "S2,SKU-1,2026-12-23T05:00:00,8,0"),
    )
    ingest_all(lake, ["raw/shipments/deliveries/west/2026-12-23.csv"], io.StringIO())
    runs.batch(rerun=True)
    assert runs.handed[1] == sorted([NE[1], *WEST])
    plan = _plan(lake)["groups"]
    assert plan[WEST[0]]["reason"] == "no production model"  # its inputs moved: the usual rules
    assert plan[WEST[1]]["reason"].startswith("inputs changed since v1")
    assert plan[NE[1]]["reason"].startswith("retrying: training failed in the last batch")
    assert plan[NE[0]]["action"] == "skip"


def test_a_training_run_that_failed_whole_fails_each_of_its_groups_and_a_rerun_retries_them(local_lake):
    world(local_lake)
    runs = Runs(context(local_lake))
    runs.batch()
    runs.whole_run_fails = True
    runs.batch(retrain="all")
    failed = json.loads(local_lake.read_bytes(f"batches/week={W}/summary.json"))["failed_groups"]
    assert sorted(failed) == sorted(GROUPS)
    assert failed[NE[0]] == "the training run run-t3 ended failed: train: the node was preempted"
    runs.whole_run_fails = False
    summary = runs.batch(rerun=True)
    assert runs.handed[2] == sorted(GROUPS) and summary["failed_groups"] == {}
    assert (
        _plan(local_lake)["groups"][NE[0]]["reason"] == f"retrying: training failed in the last batch ({failed[NE[0]]})"
    )


def test_other_training_code_plans_every_group_by_the_usual_rules(local_lake):
    world(local_lake)
    old, new = TrainingCode(version="a" * 16), TrainingCode(version="b" * 16)
    runs = Runs(context(local_lake, code=old), {NE[1]: ZEROS})
    runs.batch()
    runs.ctx = context(local_lake, code=new)
    runs.batch(rerun=True)
    assert runs.handed[1] == sorted(GROUPS)  # the kept one too: new code, maybe another model
    assert _plan(local_lake)["groups"][WEST[0]]["reason"] == "no production model"


def test_a_group_the_data_does_not_have_is_left_out_not_failed_and_not_retried(local_lake):
    world(local_lake)
    ctx = context(local_lake)
    plan = steps.plan(ctx, {"week": W}, NOW)
    plan["train"] = [NE[0], "northeast.small.fast"]  # a velocity the data turns out not to have
    run = fake_training_run(local_lake, "run-x", {NE[0]: 0.3})
    manifest = {"groups": [NE[0]], "models": [{"group": NE[0]}], "failed": [], "not_fitted": []}
    local_lake.write_bytes("runs/run-x/outputs/train/models/manifest.json", json.dumps(manifest).encode())
    registered = steps.register(ctx, {"plan": plan, "train": run}, NOW)
    assert registered["failed"] == {} and registered["left_out"] == {"northeast.small.fast": steps.failures.LEFT_OUT}
    plan["groups"]["northeast.small.fast"] = {"action": "retrain", "reason": "no production model"}
    summary = steps.publish(ctx, {"plan": plan, "registered": registered, "production": {}, "score": None}, NOW)
    assert summary["groups"]["northeast.small.fast"]["training"] == "skipped" and summary["failed_groups"] == {}


def test_a_manifest_that_does_not_read_costs_only_the_reasons(local_lake):
    world(local_lake)
    ctx = context(local_lake)
    plan = steps.plan(ctx, {"week": W}, NOW)
    plan["train"] = [NE[0], NE[1]]
    plan["groups"] = dict.fromkeys(plan["train"], {"action": "retrain", "reason": "no production model"})
    run = fake_training_run(local_lake, "run-y", {NE[0]: 0.3})
    local_lake.write_bytes("runs/run-y/outputs/train/models/manifest.json", b"{not json")
    registered = steps.register(ctx, {"plan": plan, "train": run}, NOW)
    assert registered["groups"][NE[0]]["registered"] is True and registered["failed"] == {}
    summary = steps.publish(ctx, {"plan": plan, "registered": registered, "production": {}, "score": None}, NOW)
    assert summary["failed_groups"] == {NE[1]: "the training run produced no model for it"}


def test_a_group_whose_mlflow_model_was_not_saved_says_so_not_that_its_fit_failed(local_lake):
    models = "runs/run-x/outputs/train/models"
    manifest = {
        "groups": "all",
        "models": [],
        "failed": [
            {"group": GROUPS[0], "reason": "its MLflow model was not saved (OSError: disk full)"},
            {"group": GROUPS[1], "reason": "ValueError: too few rows"},
        ],
        "not_fitted": [],
    }
    local_lake.write_bytes(f"{models}/manifest.json", json.dumps(manifest).encode())
    failed, _ = failures.untrained(local_lake, models, "all")
    assert failed[GROUPS[0]] == "its MLflow model was not saved (OSError: disk full)"
    assert failed[GROUPS[1]] == "its fit failed: ValueError: too few rows"
