"""One corrupt registry record, manifest or data-version record costs its own group, never the
weekly plan: every other group is planned as before and the bad record is reported in the plan
with a one-line reason (issue 24, item 13)."""

from __future__ import annotations

import json

import pytest

from shared.aml.datarefs import record_path
from shared.lake import Lake
from shared.mlops import steps
from shared.mlops.batch import DATA_ASSET
from shared.weeks import store_master
from tests.mlops.test_mlops_batch import (
    NE,
    NOW,
    WEST,
    W,
    clock_at_now,  # noqa: F401 (autouse: the clock at the world's NOW)
    context,
    promote,
    world,
)

BAD = NE[0]


def _card(lake: Lake, text: bytes) -> None:
    lake.write_bytes(f"models/{BAD}/1/card.json", text)


def _pointer(lake: Lake, text: bytes) -> None:
    lake.write_bytes(f"models/{BAD}/production.json", text)


def _manifest(lake: Lake, change) -> None:
    path = next(p for p in lake.list("curated/shipments_weekly") if p.endswith(".manifest.json"))
    manifest = json.loads(lake.read_bytes(path))
    change(manifest)
    lake.write_bytes(path, json.dumps(manifest).encode())


CORRUPT_REGISTRY = {
    "truncated production.json": lambda lake: _pointer(lake, b'{"name": "northeast.large.fast", "vers'),
    "production.json naming no such version": lambda lake: _pointer(lake, b'{"version": 99}'),
    "production.json with a string version": lambda lake: _pointer(lake, b'{"version": "latest"}'),
    "production.json not an object": lambda lake: _pointer(lake, b"[1]"),
    "truncated card": lambda lake: _card(lake, b'{"name": "northeast.large.fast", "metr'),
    "ill-typed card": lambda lake: _card(lake, b'{"name": "northeast.large.fast", "metrics": "none"}'),
}


@pytest.mark.parametrize("case", sorted(CORRUPT_REGISTRY))
def test_a_corrupt_registry_record_costs_its_own_group_not_the_plan(lake, case):
    world(lake)
    ctx = context(lake)
    first = steps.plan(ctx, {"week": W}, NOW)
    for name in (*NE, *WEST):
        promote(ctx, first, name)
    CORRUPT_REGISTRY[case](lake)
    plan = steps.plan(ctx, {"week": W}, NOW)
    assert plan["status"] == "ready"
    for name in (NE[1], *WEST):
        assert plan["groups"][name]["action"] == "skip", plan["groups"][name]
    bad = plan["groups"][BAD]
    assert bad["action"] == "retrain" and bad["production_version"] is None
    assert bad["reason"].startswith("its production model is not readable"), bad["reason"]
    assert "\n" not in bad["reason"]
    assert plan["train"] == [BAD]
    assert BAD in plan["problems"]
    # the production step hands the other groups' models to scoring; the bad group falls back
    models = steps.production(ctx, {"plan": plan}, NOW)["models"]
    assert set(models) == {NE[1], *WEST}


def test_a_stray_folder_in_the_registry_is_reported_and_ignored(lake):
    world(lake)
    ctx = context(lake)
    first = steps.plan(ctx, {"week": W}, NOW)
    for name in (*NE, *WEST):
        promote(ctx, first, name)
    lake.write_bytes("models/junk/1/card.json", b'{"name": "junk"}')
    lake.write_bytes("models/junk/production.json", b'{"version": 1}')
    plan = steps.plan(ctx, {"week": W}, NOW)
    assert plan["status"] == "ready" and plan["train"] == []
    assert {g: d["action"] for g, d in plan["groups"].items()} == dict.fromkeys((*NE, *WEST), "skip")
    assert "junk" in plan["problems"]
    assert set(steps.production(ctx, {"plan": plan}, NOW)["models"]) == {*NE, *WEST}


CORRUPT_MANIFEST = {
    "outputs.curated a string": lambda m: m["outputs"].update(curated="curated/x.csv"),
    "outputs a list": lambda m: m.update(outputs=[1]),
    "sha256 not hex": lambda m: m["outputs"]["curated"].update(sha256="z" * 64),
    "curated path outside the lake's names": lambda m: m["outputs"]["curated"].update(path="../../etc/passwd"),
}


@pytest.mark.parametrize("case", sorted(CORRUPT_MANIFEST))
def test_a_corrupt_manifest_is_left_out_and_reported_not_the_plan(lake, case):
    world(lake)
    ctx = context(lake)
    first = steps.plan(ctx, {"week": W}, NOW)
    for name in (*NE, *WEST):
        promote(ctx, first, name)
    _manifest(lake, CORRUPT_MANIFEST[case])
    plan = steps.plan(ctx, {"week": W}, NOW)
    assert plan["status"] == "ready"
    (problem,) = [p for p in plan["problems"] if p.endswith(".manifest.json")]
    assert "\n" not in plan["problems"][problem]
    # the file is left out of the data version: the groups it fed retrain, the others do not
    assert plan["data"]["files"] == first["data"]["files"] - 1
    assert all(plan["groups"][g]["action"] == "skip" for g in WEST) or all(
        plan["groups"][g]["action"] == "skip" for g in NE
    )


def test_a_truncated_data_version_record_is_passed_over_and_reported(lake):
    world(lake)
    ctx = context(lake)
    first = steps.plan(ctx, {"week": W}, NOW)
    for name in (*NE, *WEST):
        promote(ctx, first, name)
    path = record_path(DATA_ASSET, W)
    lake.write_bytes(path, lake.read_bytes(path)[:40])
    plan = steps.plan(ctx, {"week": W}, NOW)
    assert plan["status"] == "ready"
    assert plan["data"]["version"] == f"{W}.2"  # the corrupt version is not reused
    assert {g: d["action"] for g, d in plan["groups"].items()} == dict.fromkeys((*NE, *WEST), "skip")
    # a group whose inputs changed cannot name what changed: it retrains, saying so
    card = ctx.registry.production(BAD)
    assert card is not None
    assert steps._changed(ctx, card, BAD, [], store_master(lake), {}) == "its data version record is not readable"
