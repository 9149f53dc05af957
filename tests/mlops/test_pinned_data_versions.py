"""Issue 23, item 1: a data version resolves to exactly the bytes it was registered with.

Registering a version copies its curated files into the lake's content-addressed pinned store
(``batches/pinned/objects/<sha[:2]>/<sha256>.csv``) and writes its listing (``batches/pinned/versions/<name>/<version>/
files.json``); the version's path is that folder. A file re-ingested after registration changes the
live curated folder, never what the version reads: the forecast pipeline's real prepare step, planned
by the local backend (and, on the azureml path, from the job the real ``MLClient`` sent the AML fake,
the data asset resolved as the fake's executor resolves it), reads the old bytes for the old version
and the new bytes for the new one. Tampered or missing objects are refused; re-registering copies
nothing; the store grows by the changed files only.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from azure.ai.ml import MLClient

from shared.aml.catalog import load_catalog
from shared.aml.datarefs import DataVersion
from shared.aml.lakeuri import lake_path
from shared.aml.local.plan import Step, plan
from shared.aml.request import RunRequest, validate_request
from shared.lake import Lake, LocalLake
from shared.mlops import pinned
from shared.mlops.aml_data_assets import AzureDataCatalog
from shared.mlops.data_assets import DataCatalogError, LakeDataCatalog, snapshot
from shared.mlops.lineage import Sources, lineage
from shared.mlops.registry import LakeRegistry
from tests.fakes.aml.credential import FakeCredential
from tests.fakes.aml.executor import Executor
from tests.fakes.aml.fake import FakeAML

NAME = "forecastops-curated"
WEEK = "2026-11-23"
FIRST = dt.date(2026, 3, 2)  # a Monday: 30 weeks of shipments from it
WEEKS = 30
SHIPMENTS = "curated/shipments_weekly/v1/erp/s1.csv"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ingest(lake: Lake, path: str, data: bytes) -> str:
    """A curated csv and its manifest, as the ingest writes them (a re-ingest rewrites both)."""
    lake.write_bytes(path, data)
    manifest = {
        "manifest_version": 1,
        "status": "ingested",
        "dataset": path.split("/")[1],
        "outputs": {"curated": {"path": path, "sha256": sha(data), "bytes": len(data)}, "rejected": None},
    }
    lake.write_bytes(path[: -len(".csv")] + ".manifest.json", json.dumps(manifest).encode())
    return path


def shipments(store: str, units: int) -> bytes:
    rows = ["store_id,sku,week_start,units_shipped,units_returned,source"]
    rows += [f"{store},A1,{FIRST + dt.timedelta(weeks=w)},{units + w % 3},0,erp" for w in range(WEEKS)]
    return ("\n".join(rows) + "\n").encode()


STORES = (
    b"store_id,zip_code,region,store_format,population,households,median_household_income,median_age,source\n"
    b"s1,98101,west,large,50000,20000,70000,38,master\n"
    b"s2,98102,west,small,30000,12000,65000,41,master\n"
)


def world(lake: Lake, units: int = 10) -> None:
    """Two stores' shipments and the store master: enough weeks for a prepare with a 2-week holdout."""
    ingest(lake, SHIPMENTS, shipments("s1", units))
    ingest(lake, "curated/shipments_weekly/v1/erp/s2.csv", shipments("s2", 40))
    ingest(lake, "curated/store_demographics/v1/store_master.csv", STORES)


def request_for(reference: str, pipeline: str = "forecast") -> RunRequest:
    body: dict[str, Any] = {"inputs": {"curated": reference}, "parameters": {"holdout_weeks": 2, "origins": 1}}
    if pipeline == "score":
        body["inputs"]["production"] = "batches/week=x/production"
    request, problems = validate_request(load_catalog()[pipeline], body)
    assert problems == []
    return request


def run_prepare(step: Step) -> subprocess.CompletedProcess[str]:
    assert step.name == "prepare"
    return subprocess.run(step.argv, cwd=step.cwd, capture_output=True, text=True, timeout=300)


def s1_units(step: Step) -> list[float]:
    """The units of store s1's series, week by week, as prepare read them (its history.csv)."""
    text = (step.outputs["features"] / "history.csv").read_text()
    return [float(r["units"]) for r in csv.DictReader(io.StringIO(text)) if r["series"] == "s1|A1"]


def prepared(request: RunRequest, lake: Lake, work: Path, pipeline: str = "forecast") -> Step:
    step = plan(load_catalog()[pipeline], request, lake, work)[0]
    done = run_prepare(step)
    assert done.returncode == 0, done.stderr
    return step


OLD = [10.0 + w % 3 for w in range(WEEKS)]
NEW = [99.0 + w % 3 for w in range(WEEKS)]


# ------------------------------------------------------------------------------ the local backend, end to end
def test_a_run_on_the_old_version_reads_the_old_bytes_after_a_reingest(lake, tmp_path):
    world(lake)
    catalog = LakeDataCatalog(lake)
    old = catalog.register(NAME, WEEK, snapshot(lake))
    assert old.pinned and old.path == f"azureml://datastores/lake_batches/paths/pinned/versions/{NAME}/{WEEK}"
    ingest(lake, SHIPMENTS, shipments("s1", 99))  # re-ingested with other content after the registration
    new = catalog.register(NAME, WEEK, snapshot(lake))
    assert new.version == f"{WEEK}.2" and new.content_hash != old.content_hash
    assert {p for p in new.files if new.files[p] != old.files[p]} == {SHIPMENTS}
    # both training and scoring name the version, and both read its bytes, whatever the live folder holds
    for pipeline in ("forecast", "score"):
        step = prepared(request_for(old.reference, pipeline), lake, tmp_path / pipeline / "old", pipeline)
        assert s1_units(step) == OLD
        meta = json.loads((step.outputs["features"] / "meta.json").read_text())
        assert meta["data_version"] == {"name": NAME, "version": WEEK, "content_hash": old.content_hash}
        assert (
            s1_units(prepared(request_for(new.reference, pipeline), lake, tmp_path / pipeline / "new", pipeline)) == NEW
        )
    # the live folder holds the new bytes: the old version no longer reads it
    assert lake.read_bytes(SHIPMENTS) == shipments("s1", 99)
    assert pinned.verify(lake, old) == [] and pinned.verify(lake, new) == []


def test_a_tampered_or_missing_object_is_refused_in_one_line(local_lake, tmp_path):
    world(local_lake)
    version = LakeDataCatalog(local_lake).register(NAME, WEEK, snapshot(local_lake))
    obj = pinned.object_path(version.files[SHIPMENTS])
    local_lake.write_bytes(obj, shipments("s1", 55))  # the store's object no longer holds its sha256's bytes
    step = plan(load_catalog()["forecast"], request_for(version.reference), local_lake, tmp_path / "w1")[0]
    done = run_prepare(step)
    assert done.returncode != 0 and not (step.outputs["features"] / "features.csv").exists()
    (line,) = done.stderr.strip().splitlines()
    assert "shipments_weekly/v1/erp/s1.csv" in line and version.files[SHIPMENTS] in line and "refused" in line
    assert pinned.verify(local_lake, version) == [f"{SHIPMENTS}: its object {obj} holds bytes of sha256 "
                                                  f"{sha(shipments('s1', 55))}"]  # fmt: skip
    local_lake.delete(obj)
    done = run_prepare(plan(load_catalog()["forecast"], request_for(version.reference), local_lake, tmp_path / "w2")[0])
    (line,) = done.stderr.strip().splitlines()
    assert done.returncode != 0 and "s1.csv" in line and "is missing" in line


def test_an_altered_listing_is_refused(local_lake, tmp_path):
    world(local_lake)
    version = LakeDataCatalog(local_lake).register(NAME, WEEK, snapshot(local_lake))
    listing = f"{pinned.version_folder(NAME, WEEK)}/files.json"
    doc = json.loads(local_lake.read_bytes(listing))
    other = doc["files"]["shipments_weekly/v1/erp/s2.csv"]
    doc["files"]["shipments_weekly/v1/erp/s1.csv"] = other  # s1 made to read s2's bytes
    local_lake.write_bytes(listing, json.dumps(doc).encode())
    done = run_prepare(plan(load_catalog()["forecast"], request_for(version.reference), local_lake, tmp_path / "w")[0])
    assert done.returncode != 0 and "altered" in done.stderr
    # registering the same content again does not take the altered version: it names its own
    again = LakeDataCatalog(local_lake).register(NAME, WEEK, snapshot(local_lake))
    assert again.version == f"{WEEK}.2" and again.content_hash == version.content_hash


def test_a_plain_folder_without_a_version_is_read_as_it_is(local_lake, tmp_path):
    world(local_lake)
    request, problems = validate_request(load_catalog()["forecast"], {"parameters": {"holdout_weeks": 2, "origins": 1}})
    assert problems == [] and request.inputs["curated"] == "azureml://datastores/lake_curated/paths/"
    assert s1_units(prepared(request, local_lake, tmp_path / "w")) == OLD


# ------------------------------------------------------------------------------ registration
def test_a_file_reingested_between_the_snapshot_and_the_copy_is_not_pinned(local_lake):
    world(local_lake)
    listed = snapshot(local_lake)
    ingest(local_lake, SHIPMENTS, shipments("s1", 99))
    with pytest.raises(DataCatalogError, match=rf"^{SHIPMENTS}: its bytes hash to .* not the .* snapshot listed"):
        LakeDataCatalog(local_lake).register(NAME, WEEK, listed)
    assert not local_lake.exists(pinned.object_path(listed[SHIPMENTS]))
    assert list(local_lake.list("batches/data")) == [] and list(local_lake.list("batches/pinned/versions")) == []


def test_registering_again_copies_nothing_and_a_changed_file_adds_one_object(lake):
    world(lake)
    catalog = LakeDataCatalog(lake)
    first = catalog.register(NAME, WEEK, snapshot(lake))
    store = sorted((i.path, i.etag) for i in lake.list_info("batches/pinned"))
    usage = pinned.store_usage(lake)
    assert usage.objects == 3 and usage.bytes == sum(len(lake.read_bytes(p)) for p in first.files)
    assert catalog.register(NAME, WEEK, snapshot(lake)) == first
    assert sorted((i.path, i.etag) for i in lake.list_info("batches/pinned")) == store  # nothing written again
    assert catalog.pin(first) == pinned.PinReport(copied=0, copied_bytes=0, present=3)
    ingest(lake, SHIPMENTS, shipments("s1", 99))
    catalog.register(NAME, "2026-11-30", snapshot(lake))
    assert pinned.store_usage(lake) == (4, usage.bytes + len(shipments("s1", 99)))


def test_storage_grows_with_new_content_not_with_versions(local_lake):
    """N weekly versions, each with one file changed (the week's new shipments): the store holds the
    files once plus one object per change; a copy per version would hold N times every file."""
    world(local_lake)
    for i in range(3, 11):  # more stores, whose files do not change
        ingest(local_lake, f"curated/shipments_weekly/v1/erp/s{i}.csv", shipments(f"s{i}", 10 * i))
    catalog = LakeDataCatalog(local_lake)
    monday = dt.date.fromisoformat(WEEK)
    sizes = []
    for n in range(10):
        ingest(local_lake, SHIPMENTS, shipments("s1", 100 + n))
        version = catalog.register(NAME, (monday + dt.timedelta(weeks=n)).isoformat(), snapshot(local_lake))
        sizes.append(sum(len(local_lake.read_bytes(pinned.object_path(s))) for s in version.files.values()))
    usage = pinned.store_usage(local_lake)
    changed = len(shipments("s1", 100))
    assert usage.objects == 10 + 10 and usage.bytes == sizes[0] + 9 * changed
    assert usage.bytes < sum(sizes) / 5  # a copy per version: sum(sizes)
    listings = sum(i.size for i in local_lake.list_info("batches/pinned/versions"))
    print(f"10 versions: {usage.objects} objects, {usage.bytes} bytes (+{listings} bytes of listings); "
          f"a copy per version: {sum(sizes)} bytes")  # fmt: skip


def test_a_record_from_before_the_pinned_store_resolves_as_before_and_says_not_pinned(local_lake, tmp_path):
    world(local_lake)
    files = snapshot(local_lake)
    catalog = LakeDataCatalog(local_lake)
    legacy = catalog._candidate(NAME, WEEK, files).model_copy(
        update={"path": "azureml://datastores/lake/paths/curated"}  # as written before the pinned store
    )
    local_lake.write_bytes(f"batches/data/{NAME}/{WEEK}.json", legacy.to_json())
    assert not catalog.get(NAME, WEEK).pinned
    # it still runs, on the live folder, as it did
    assert s1_units(prepared(request_for(legacy.reference), local_lake, tmp_path / "w")) == OLD
    sources = Sources(local_lake, LakeRegistry(local_lake), catalog)
    assert lineage(sources, f"data:{WEEK}")["upstream"]["pinned"] is False
    # registering the same content again names a pinned version, never the live folder
    pinned_version = catalog.register(NAME, WEEK, files)
    assert pinned_version.version == f"{WEEK}.2" and pinned_version.pinned
    assert lineage(sources, f"data:{WEEK}.2")["upstream"]["pinned"] is True


# ------------------------------------------------------------------------------ Azure ML (the fake)
def ml_client(fake: FakeAML) -> MLClient:
    return MLClient(FakeCredential(), fake.subscription_id, "rg", "ws", transport=fake.transport())


def aml_prepare(fake: FakeAML, lake: Lake, version: DataVersion, run_id: str, work: Path) -> tuple[dict, Step]:
    """Submit the forecast pipeline on ``version`` through the azureml backend (the real MLClient), then
    plan the job the fake received as its executor does (the data asset resolved through the workspace's
    data) and run its prepare step."""
    pipeline = load_catalog()["forecast"]
    fake.backend().submit(pipeline, request_for(version.reference), run_id)
    props = fake.jobs[run_id]["body"]["properties"]
    _, request = Executor(lake, work)._request(fake, props)
    step = plan(pipeline, request, lake, work)[0]
    done = run_prepare(step)
    assert done.returncode == 0, done.stderr
    return props, step


def test_aml_the_data_asset_is_the_pinned_folder_and_the_job_reads_the_version_it_names(blob_lake, tmp_path):
    fake = FakeAML()
    fake.register_repo_components()
    catalog = AzureDataCatalog(ml_client(fake), blob_lake)
    world(blob_lake)
    old = catalog.register(NAME, WEEK, snapshot(blob_lake))
    ingest(blob_lake, SHIPMENTS, shipments("s1", 99))
    new = catalog.register(NAME, WEEK, snapshot(blob_lake))
    assets = fake.data_versions(NAME)
    for v in (old, new):
        uri = assets[v.version]["properties"]["dataUri"]
        assert uri == v.path and lake_path(uri) == f"batches/pinned/versions/{NAME}/{v.version}"
        assert blob_lake.exists(f"{lake_path(uri)}/files.json")
    for v, units in ((old, OLD), (new, NEW)):
        props, step = aml_prepare(fake, blob_lake, v, f"run-{v.version.replace('.', '-')}", tmp_path / v.version)
        ws = f"/subscriptions/{fake.subscription_id}/resourceGroups/rg/providers/Microsoft.MachineLearningServices"
        assert props["inputs"]["curated"]["uri"] == f"{ws}/workspaces/ws/data/{NAME}/versions/{v.version}"
        # the store (catalog.toml declares it; the request may drop its trailing slash)
        assert props["inputs"]["pinned"]["uri"].rstrip("/") == "azureml://datastores/lake_batches/paths/pinned"
        assert s1_units(step) == units
    assert fake.unhandled == []


def test_aml_an_asset_from_before_the_pinned_store_is_not_taken_for_the_same_content(local_lake):
    from azure.ai.ml.entities import Data

    fake = FakeAML()
    catalog = AzureDataCatalog(ml_client(fake), local_lake)
    world(local_lake)
    files = snapshot(local_lake)
    legacy = catalog._candidate(NAME, WEEK, files).model_copy(
        update={"path": "azureml://datastores/lake_curated/paths/"}
    )
    local_lake.write_bytes(f"batches/data/{NAME}/{WEEK}.json", legacy.to_json())
    catalog.client.data.create_or_update(
        Data(name=NAME, version=WEEK, path=legacy.path, tags={"content_hash": legacy.content_hash})
    )
    assert not catalog.get(NAME, WEEK).pinned  # it reads as before
    version = catalog.register(NAME, WEEK, files)
    assert version.version == f"{WEEK}.2" and version.pinned
    assert fake.data_versions(NAME)[f"{WEEK}.2"]["properties"]["dataUri"] == version.path
    assert isinstance(local_lake, LocalLake) and (local_lake.root / pinned.version_folder(NAME, f"{WEEK}.2")).is_dir()
