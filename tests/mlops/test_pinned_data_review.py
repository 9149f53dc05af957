"""Issue 23 item 1, after review: pinning a data version costs a bad file, never the weekly plan;
registering reads and copies only the new content (one listing of the store, no request per
file); a listing without a content hash, or a folder that is neither a version nor a curated
folder, is refused in one line; and the register step refuses models from a run that read
another version than the plan registered."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from shared import clock
from shared.aml.catalog import load_catalog
from shared.aml.local.plan import plan as plan_steps
from shared.lake import Lake, LocalLake
from shared.mlops import pinned, steps
from shared.mlops.data_assets import DataCatalogError, LakeDataCatalog, content_hash, snapshot
from tests.mlops.test_mlops_batch import NOW, W, context, fake_training_run
from tests.mlops.test_mlops_batch import world as batch_world
from tests.mlops.test_pinned_data_versions import NAME, SHIPMENTS, WEEK, ingest, request_for, run_prepare, shipments
from tests.mlops.test_pinned_data_versions import world as small_world


@pytest.fixture(autouse=True)
def clock_at_now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock, "now", lambda: NOW)


def _shipments(lake: Lake) -> list[str]:
    return sorted(p for p in lake.list("curated/shipments_weekly") if p.endswith(".csv"))


# ------------------------------------------------------------------------------ item 1: a bad file costs its file
def test_a_file_that_cannot_be_pinned_is_left_out_and_named_and_the_plan_goes_on(lake):
    batch_world(lake)
    rewritten, _ = _shipments(lake)
    lake.write_bytes(rewritten, b"store_id,sku\nre-ingested,without its manifest\n")  # bytes its manifest does not list
    ctx = context(lake)
    plan = steps.plan(ctx, {"week": W, "by": "data_complete"}, NOW)
    assert plan["status"] == "ready" and plan["train"] == "all"
    assert set(plan["problems"]) == {rewritten} and "its bytes hash to" in plan["problems"][rewritten]
    assert all("\n" not in why and "left out of data version" in why for why in plan["problems"].values())
    # the batch says it trains on less than the lake has
    assert plan["partial"] is True and "1 file(s) left out of the data version" in plan["reason"]
    # the version is what was pinned: its files, its content hash, its listing, its objects
    version = ctx.data.get("forecastops-curated", plan["data"]["version"])
    assert plan["data"]["files"] == len(version.files) == 4 and rewritten not in version.files
    assert version.content_hash == content_hash(version.files) == plan["data"]["content_hash"]
    listing = json.loads(lake.read_bytes(f"{pinned.version_folder(version.name, version.version)}/files.json"))
    assert sorted(f"curated/{rel}" for rel in listing["files"]) == sorted(version.files)
    assert pinned.verify(lake, version) == []
    # a retried step plans the same
    again = steps.plan(ctx, {"week": W, "by": "data_complete"}, NOW)
    assert again["problems"] == plan["problems"]
    assert {k: v for k, v in again["data"].items() if k != "manifests"} == {
        k: v for k, v in plan["data"].items() if k != "manifests"
    }


def test_a_plan_that_would_lose_every_shipments_file_or_the_store_master_waits(lake):
    batch_world(lake)
    rewritten, gone = _shipments(lake)
    lake.write_bytes(rewritten, b"store_id,sku\nre-ingested,without its manifest\n")
    lake.delete(gone)  # its manifest still lists it
    plan = steps.plan(context(lake), {"week": W, "by": "data_complete"}, NOW)
    assert plan["status"] == "waiting_for_data" and plan["reason"].startswith("every shipments file could not be")
    assert "its bytes hash to" in plan["problems"][rewritten] and "gone" in plan["problems"][gone]


def test_a_store_master_that_cannot_be_pinned_makes_the_plan_wait_not_train_without_it(local_lake):
    batch_world(local_lake)
    (master,) = [p for p in local_lake.list("curated/store_demographics") if p.endswith(".csv")]
    local_lake.write_bytes(master, local_lake.read_bytes(master) + b"\n")  # re-ingested since its manifest
    plan = steps.plan(context(local_lake), {"week": W, "by": "data_complete"}, NOW)
    assert plan["status"] == "waiting_for_data" and plan["reason"].startswith(f"the store master ({master})")
    assert master in plan["problems"]


def test_no_file_pinnable_waits_for_the_data_and_says_why(local_lake):
    batch_world(local_lake)
    for path in (p for p in local_lake.list("curated") if p.endswith(".csv")):
        local_lake.delete(path)
    plan = steps.plan(context(local_lake), {"week": W, "by": "data_complete"}, NOW)
    assert plan["status"] == "waiting_for_data" and "could be pinned" in plan["reason"]
    assert plan["problems"] and all("gone" in why for why in plan["problems"].values())
    assert list(local_lake.list("batches/data")) == []


def test_registering_directly_still_refuses_a_file_it_cannot_pin(local_lake):
    small_world(local_lake)
    listed = snapshot(local_lake)
    ingest(local_lake, SHIPMENTS, shipments("s1", 99))
    with pytest.raises(DataCatalogError, match=rf"^{SHIPMENTS}: its bytes hash to "):
        LakeDataCatalog(local_lake).register(NAME, WEEK, listed)
    skipped: dict[str, str] = {}
    version = LakeDataCatalog(local_lake).register(NAME, WEEK, listed, skipped=skipped)
    assert list(skipped) == [SHIPMENTS] and SHIPMENTS not in version.files and len(version.files) == 2


# ------------------------------------------------------------------------------ item 2: only the new content
class CountingLake(LocalLake):
    """A local lake that counts the requests pinning makes (instrumentation, not a fake: every call
    goes to the real lake)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.calls: list[tuple[str, str]] = []

    def stat(self, path: str):
        self.calls.append(("stat", path))
        return super().stat(path)

    def open(self, path: str):
        self.calls.append(("open", path))
        return super().open(path)

    def create(self, path: str, data: bytes) -> bool:
        self.calls.append(("create", path))
        return super().create(path, data)

    def list_info(self, prefix: str):
        self.calls.append(("list", prefix))
        return super().list_info(prefix)


def test_a_second_version_with_one_new_file_copies_one_object_and_asks_per_file_nothing(tmp_path):
    lake = CountingLake(tmp_path / "lake")
    small_world(lake)
    for i in range(3, 41):  # a history of curated files that do not change
        ingest(lake, f"curated/shipments_weekly/v1/erp/s{i}.csv", shipments(f"s{i}", i))
    catalog = LakeDataCatalog(lake)
    catalog.register(NAME, WEEK, snapshot(lake))
    ingest(lake, SHIPMENTS, shipments("s1", 99))
    files = snapshot(lake)
    lake.calls.clear()
    report = catalog.pin(catalog._candidate(NAME, "2026-11-30", files))
    objects = f"{pinned.object_path(files[SHIPMENTS])}"
    assert report == pinned.PinReport(copied=1, copied_bytes=len(shipments("s1", 99)), present=40)
    assert [c for c in lake.calls if c[0] == "create"] == [("create", objects)]
    assert [c for c in lake.calls if c[0] == "open"] == [("open", SHIPMENTS)]  # only the new file is read
    # no HEAD per file: the one read the local lake makes of the file it copies, and nothing else
    assert {c[1] for c in lake.calls if c[0] == "stat"} <= {SHIPMENTS}
    assert [c for c in lake.calls if c[0] == "list"] == [("list", "batches/pinned/objects")]


# ------------------------------------------------------------------------------ item 3 and 4: prepare refuses
def _prepare(lake: Lake, reference: str, work: Path):
    step = plan_steps(load_catalog()["forecast"], request_for(reference), lake, work)[0]
    return step, run_prepare(step)


def test_a_listing_without_a_content_hash_is_refused_in_one_line(local_lake, tmp_path):
    small_world(local_lake)
    version = LakeDataCatalog(local_lake).register(NAME, WEEK, snapshot(local_lake))
    path = f"{pinned.version_folder(NAME, WEEK)}/files.json"
    doc = json.loads(local_lake.read_bytes(path))
    del doc["content_hash"]
    local_lake.write_bytes(path, json.dumps(doc).encode())
    _, done = _prepare(local_lake, version.reference, tmp_path / "w")
    (line,) = done.stderr.strip().splitlines()
    assert done.returncode == 2 and "content_hash" in line


def test_a_version_folder_without_its_listing_is_not_read_as_a_curated_folder(local_lake, tmp_path):
    small_world(local_lake)
    version = LakeDataCatalog(local_lake).register(NAME, WEEK, snapshot(local_lake))
    local_lake.delete(f"{pinned.version_folder(NAME, WEEK)}/files.json")
    _, done = _prepare(local_lake, version.reference, tmp_path / "w")
    (line,) = done.stderr.strip().splitlines()
    assert done.returncode == 2 and "no files.json" in line and "nor a curated folder" in line


# ------------------------------------------------------------------------------ item 3: the run read the plan's version
def _meta(lake: Lake, run_id: str, content: str | None) -> None:
    meta = {"data_version": {"name": "forecastops-curated", "version": W, "content_hash": content}}
    lake.write_bytes(f"runs/{run_id}/outputs/prepare/features/meta.json", json.dumps(meta).encode())


def test_models_from_a_run_that_read_another_version_are_not_registered(lake):
    batch_world(lake)
    ctx = context(lake)
    plan = steps.plan(ctx, {"week": W, "by": "data_complete"}, NOW)
    groups = {"northeast.large.fast": 0.2}
    # the run's prepare read a listing rewritten consistently (another content hash): refused
    other = hashlib.sha256(b"another listing").hexdigest()
    train = fake_training_run(lake, "run-other", groups)
    _meta(lake, "run-other", other)
    done = steps.register(ctx, {"plan": plan, "train": train}, NOW)
    assert done["trained"] is False and done["groups"] == {}
    assert other in done["error"] and plan["data"]["content_hash"] in done["error"] and "\n" not in done["error"]
    assert ctx.registry.versions("northeast.large.fast") == []
    # a meta.json that does not read, or says no data version (a plain folder was read): refused too
    for run_id, body in (("run-junk", b"{not json"), ("run-plain", b'{"series": 2}')):
        train = fake_training_run(lake, run_id, groups)
        lake.write_bytes(f"runs/{run_id}/outputs/prepare/features/meta.json", body)
        assert "content hash None" in steps.register(ctx, {"plan": plan, "train": train}, NOW)["error"]
    # the run that read the plan's version: registered
    train = fake_training_run(lake, "run-same", groups)
    _meta(lake, "run-same", plan["data"]["content_hash"])
    done = steps.register(ctx, {"plan": plan, "train": train}, NOW)
    assert done["trained"] is True and done["groups"]["northeast.large.fast"]["registered"] is True


# ------------------------------------------------------------------------------ item 5: an MLTable beside the listing
def test_a_version_folder_holds_an_mltable_of_its_objects_by_datastore_uri(lake):
    import yaml

    from shared.aml.lakeuri import lake_path

    small_world(lake)
    ingest(lake, "curated/shipments_weekly/v1/erp/copy.csv", shipments("s1", 10))  # s1's bytes again: one object
    version = LakeDataCatalog(lake).register(NAME, WEEK, snapshot(lake))
    folder = pinned.version_folder(NAME, WEEK)
    assert sorted(lake.list(folder)) == [f"{folder}/MLTable", f"{folder}/files.json"]
    table = yaml.safe_load(lake.read_bytes(f"{folder}/MLTable"))
    assert set(table) == {"type", "paths"} and table["type"] == "mltable"
    uris = [p["file"] for p in table["paths"]]
    assert uris == [
        f"azureml://datastores/lake_batches/paths/pinned/objects/{s[:2]}/{s}.csv"
        for _, s in sorted(version.files.items())
    ]
    assert all(lake.exists(lake_path(u) or "") for u in uris) and len(set(uris)) == len(uris) - 1
    # written once: registering again finds it, an altered one makes registration take the next version
    assert LakeDataCatalog(lake).register(NAME, WEEK, snapshot(lake)) == version
    lake.write_bytes(f"{folder}/MLTable", b"type: mltable\npaths:\n  - file: elsewhere.csv\n")
    assert LakeDataCatalog(lake).register(NAME, WEEK, snapshot(lake)).version == f"{WEEK}.2"


def test_a_scoring_run_that_read_another_version_publishes_nothing_and_the_batch_says_why(lake):
    batch_world(lake)
    ctx = context(lake)
    plan = steps.plan(ctx, {"week": W, "by": "data_complete"}, NOW)
    header = "store_id,sku,week_start,forecast,model,model_version\n"
    other = hashlib.sha256(b"another listing").hexdigest()
    for run_id, read in (("run-score-other", other), ("run-score-same", plan["data"]["content_hash"])):
        lake.write_bytes(
            f"runs/{run_id}/outputs/score_production/forecasts/northeast.large.fast.csv",
            (header + "S1,SKU-1,2026-12-28,4.5,northeast.large.fast,\n").encode(),
        )
        _meta(lake, run_id, read)
    score = {"run_id": "run-score-other", "outcome": "completed", "metrics": {}}
    summary = steps.publish(ctx, {"plan": plan, "registered": {"groups": {}}, "score": score}, NOW)
    assert summary["outcome"] == "failed" and list(lake.list(f"curated/forecasts/v1/week={W}")) == []
    (problem,) = summary["problems"]
    assert problem.startswith("the scoring run run-score-other read data of content hash " + other)
    assert problem.endswith("its forecasts are not published") and "\n" not in problem
    # the run that read the plan's version publishes
    score = {"run_id": "run-score-same", "outcome": "completed", "metrics": {}}
    summary = steps.publish(ctx, {"plan": plan, "registered": {"groups": {}}, "score": score}, NOW)
    assert summary["outcome"] == "succeeded", summary
    assert list(lake.list(f"curated/forecasts/v1/week={W}")) == [
        f"curated/forecasts/v1/week={W}/northeast.large.fast.csv"
    ]
