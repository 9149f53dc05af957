"""Registered data and its lineage: the snapshot of the curated folder from its manifests, data versions in the
lake (a local folder and Azurite) and as Azure ML data assets (the real azure-ai-ml ``MLClient`` answered by the
in-process fake, tests/fakes/aml/), lineage both ways, and the local backend resolving ``azureml:<name>:<version>``."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.ai.ml import MLClient
from azure.ai.ml.entities import Data
from azure.core.exceptions import HttpResponseError

from shared.aml import runs
from shared.aml.catalog import load_catalog
from shared.aml.local.backend import LocalBackend
from shared.aml.local.plan import plan
from shared.aml.local.runner import Runner, run_paths
from shared.aml.request import validate_request
from shared.ingestion.service import ingest
from shared.lake import Lake, LocalLake
from shared.mlops.aml_data_assets import AzureDataCatalog
from shared.mlops.cards import Metrics, ModelCard
from shared.mlops.data_assets import (
    DataCatalog,
    DataCatalogError,
    DataVersionNotFound,
    LakeDataCatalog,
    content_hash,
    parse_reference,
    snapshot,
)
from shared.mlops.registry import LakeRegistry
from shared.settings import Settings
from tests.drivers import ROOT_DIR
from tests.fakes.aml.credential import FakeCredential
from tests.fakes.aml.fake import FakeAML

WEEK = "2026-11-23"
NEXT_WEEK = "2026-11-30"
NAME = "curated"
WS = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg"
    "/providers/Microsoft.MachineLearningServices/workspaces/ws"
)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


#: every content a test named, by its sha256 (so that :func:`given` can write it)
CONTENTS: dict[str, str] = {}


def files(**contents: str) -> dict[str, str]:
    """``shipments="..."`` -> ``{"curated/shipments_weekly/v1/shipments.csv": sha256}``."""
    datasets = {"shipments": "shipments_weekly", "weather": "weather_daily", "stores": "store_demographics"}
    CONTENTS.update({sha(v): v for v in contents.values()})
    return {f"curated/{datasets[k.rstrip('0123456789')]}/v1/{k}.csv": sha(v) for k, v in contents.items()}


def given(lake: Lake, listed: dict[str, str]) -> dict[str, str]:
    """``listed``, its curated files written into ``lake`` with the contents they name (as an
    ingest would have before the snapshot): a version pins the bytes it finds there."""
    for path, digest in listed.items():
        lake.write_bytes(path, CONTENTS[digest].encode())
    return listed


BATCH = files(shipments="s1", weather="w1", stores="d1")


def curated(lake: Lake, dataset: str, name: str, content: str, status: str = "ingested") -> str:
    """A curated csv and the manifest beside it, as the ingest writes them."""
    path = f"curated/{dataset}/v1/{name}.csv"
    lake.write_bytes(path, content.encode())
    manifest = {
        "manifest_version": 1,
        "status": status,
        "dataset": dataset,
        "outputs": {"curated": {"path": path, "sha256": sha(content), "bytes": len(content)}, "rejected": None},
    }
    lake.write_bytes(f"curated/{dataset}/v1/{name}.manifest.json", json.dumps(manifest).encode())
    return path


@pytest.fixture
def fake() -> FakeAML:
    return FakeAML()


def ml_client(fake: FakeAML) -> MLClient:
    return MLClient(FakeCredential(), fake.subscription_id, "rg", "ws", transport=fake.transport())


@pytest.fixture(params=["lake-local", "lake-blob", "azureml"])
def catalog(request: pytest.FixtureRequest) -> Iterator[DataCatalog]:
    """Each test that takes ``catalog`` runs against the lake catalog on a local folder and on Azurite, and
    against Azure ML's data assets (with its lake records on Azurite)."""
    if request.param == "azureml":
        fake = request.getfixturevalue("fake")
        yield AzureDataCatalog(ml_client(fake), request.getfixturevalue("blob_lake"))
        assert fake.unhandled == []
    else:
        yield LakeDataCatalog(request.getfixturevalue("local_lake" if request.param == "lake-local" else "blob_lake"))


# ----------------------------------------------------------------------------------------------- the snapshot
def test_snapshot_holds_every_ingested_file_with_the_sha256_of_its_csv(lake):
    raw = {
        "raw/shipments/deliveries/2026-09-11.csv": "samples/raw/shipments/deliveries/2026-09-11.csv",
        "raw/demographics/store_master.csv": "samples/raw/demographics/store_master.csv",
    }
    for path, sample in raw.items():
        lake.write_bytes(path, (ROOT_DIR / sample).read_bytes())
        assert ingest(lake, path)["status"] == "ingested"
    found = snapshot(lake)
    assert list(found) == [
        "curated/shipments_weekly/v1/deliveries/2026-09-11.csv",
        "curated/store_demographics/v1/store_master.csv",
    ]
    for path, digest in found.items():
        assert hashlib.sha256(lake.read_bytes(path)).hexdigest() == digest


def test_snapshot_skips_quarantined_and_error_manifests_and_what_is_no_manifest(lake):
    good = curated(lake, "weather_daily", "zip=98101/2026", "w")
    curated(lake, "weather_daily", "zip=98102/2026", "x", status="quarantined")
    curated(lake, "shipments_weekly", "erp/2026-11-23", "y", status="error")
    lake.write_bytes("curated/shipments_weekly/v1/broken.manifest.json", b"{not json")
    lake.write_bytes("curated/shipments_weekly/v1/no-manifest.csv", b"z")
    lake.write_bytes("curated/store_demographics/v1/odd.manifest.json", b'{"status": "ingested", "outputs": {}}')
    curated(lake, "forecasts", "week=2026-11-23/all", "f")  # not one of the datasets
    assert snapshot(lake) == {good: sha("w")}
    assert snapshot(lake, datasets=("shipments_weekly",)) == {}


def test_snapshot_of_many_manifests_reads_them_through_a_bounded_pool(lake):
    expected = {curated(lake, "shipments_weekly", f"erp/{i:03d}", f"rows {i}"): sha(f"rows {i}") for i in range(60)}
    assert snapshot(lake, workers=3) == dict(sorted(expected.items()))


def test_content_hash_is_over_sorted_path_and_sha256_lines():
    lines = "".join(f"{p} {BATCH[p]}\n" for p in sorted(BATCH))
    assert content_hash(BATCH) == hashlib.sha256(lines.encode()).hexdigest()
    assert content_hash(dict(reversed(list(BATCH.items())))) == content_hash(BATCH)
    assert content_hash({**BATCH, "curated/weather_daily/v1/weather.csv": sha("w2")}) != content_hash(BATCH)


# ----------------------------------------------------------------------------------------------- the contract
def test_a_week_registered_once_is_version_week_with_its_files(catalog):
    version = catalog.register(NAME, WEEK, given(catalog.lake, BATCH))
    assert (version.name, version.version, version.week) == (NAME, WEEK, WEEK)
    assert version.path == f"azureml://datastores/lake_batches/paths/pinned/versions/{NAME}/{WEEK}" and version.pinned
    assert version.files == dict(sorted(BATCH.items())) and version.content_hash == content_hash(BATCH)
    assert version.reference == f"azureml:{NAME}:{WEEK}" and parse_reference(version.reference) == (NAME, WEEK)
    assert version.created_at.endswith("Z")
    assert catalog.get(NAME, WEEK) == version
    assert catalog.resolve(version.reference) == version
    assert catalog.versions(NAME) == [version]


def test_registering_the_same_content_again_returns_the_same_version(catalog):
    first = catalog.register(NAME, WEEK, given(catalog.lake, BATCH))
    again = catalog.register(NAME, WEEK, given(catalog.lake, dict(reversed(list(BATCH.items())))))
    assert again == first and catalog.versions(NAME) == [first]


def test_other_content_in_the_same_week_gets_the_next_version(catalog):
    first = catalog.register(NAME, WEEK, given(catalog.lake, BATCH))
    late = catalog.register(NAME, WEEK, given(catalog.lake, {**BATCH, **files(shipments2="late file")}))
    corrected = catalog.register(NAME, WEEK, given(catalog.lake, {**BATCH, **files(shipments="corrected")}))
    assert [first.version, late.version, corrected.version] == [WEEK, f"{WEEK}.2", f"{WEEK}.3"]
    assert catalog.register(NAME, WEEK, given(catalog.lake, BATCH)) == first
    assert catalog.register(NAME, WEEK, given(catalog.lake, {**BATCH, **files(shipments="corrected")})) == corrected
    next_week = catalog.register(NAME, NEXT_WEEK, BATCH)  # the same files a week later: that week's version
    assert next_week.version == NEXT_WEEK
    assert [v.version for v in catalog.versions(NAME)] == [WEEK, f"{WEEK}.2", f"{WEEK}.3", NEXT_WEEK]


def test_concurrent_registrations_never_clobber_each_other(catalog):
    # other files, not other bytes at the same paths: each registration finds its own bytes there
    contents = [
        given(catalog.lake, c) for c in (BATCH, {**BATCH, **files(weather2="w2")}, {**BATCH, **files(stores2="d2")})
    ]
    results: list[tuple[int, str, str]] = []
    errors: list[BaseException] = []

    def register(i: int) -> None:
        try:
            version = catalog.register(NAME, WEEK, contents[i % 3])
            results.append((i % 3, version.version, version.content_hash))
        except BaseException as e:  # reported below, not lost in the thread
            errors.append(e)

    threads = [threading.Thread(target=register, args=(i,)) for i in range(9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    by_content = {c: {v for i, v, _ in results if i == c} for c in range(3)}
    assert all(len(v) == 1 for v in by_content.values())  # one content, one version, whoever registered it
    assert sorted(v.pop() for v in by_content.values()) == [WEEK, f"{WEEK}.2", f"{WEEK}.3"]
    for i, version, digest in results:
        stored = catalog.get(NAME, version)
        assert stored.content_hash == digest == content_hash(contents[i]) and stored.files == contents[i]


def test_bad_names_weeks_and_file_lists_are_refused(catalog):
    for name, week, given in [
        ("curated", "2026-11-24", BATCH),  # a Tuesday
        ("curated", "2026-W48", BATCH),
        ("curated", "2026-11-23", {}),
        ("curated", "2026-11-23", {"../escape.csv": sha("x")}),
        ("curated", "2026-11-23", {"curated/weather_daily/v1/a.csv": "not-a-sha"}),
        ("cur:ated", "2026-11-23", BATCH),
        ("", "2026-11-23", BATCH),
    ]:
        with pytest.raises(ValueError):
            catalog.register(name, week, given)
    assert catalog.versions(NAME) == []


def test_unknown_versions_are_not_found(catalog):
    for version in (WEEK, "latest", "../x"):
        with pytest.raises(DataVersionNotFound):
            catalog.get(NAME, version)
    with pytest.raises(DataVersionNotFound):
        catalog.resolve("azureml:curated")
    with pytest.raises(DataVersionNotFound):
        catalog.link_run(NAME, WEEK, "forecast-w48")
    assert catalog.versions(NAME) == [] and catalog.versions_with_file("curated/x/v1/a.csv") == []


# ----------------------------------------------------------------------------------------------- lineage
def test_lineage_from_a_model_card_to_its_data_version_and_files(catalog, local_lake):
    version = catalog.register(NAME, WEEK, given(catalog.lake, BATCH))
    catalog.link_run(NAME, version.version, "forecast-w48", kind="train")
    registry = LakeRegistry(local_lake)
    card = registry.register(
        ModelCard(
            name="northeast.large.fast",
            metrics=Metrics(mape=0.3),
            trained_at=1_795_000_000.0,
            run_id="forecast-w48",
            data_versions={NAME: version.version},
        ),
        {"model.joblib": b"m"},
    )
    stored = registry.get(card.name, card.version)
    data = catalog.get(NAME, stored.data_versions[NAME])
    assert data.files == dict(sorted(BATCH.items()))
    assert [link.run_id for link in catalog.runs_of(NAME, data.version)] == [stored.run_id]


def test_lineage_from_a_file_to_the_versions_holding_it_and_the_runs_that_used_them(catalog):
    shipments = next(p for p in BATCH if "shipments" in p)
    first = catalog.register(NAME, WEEK, given(catalog.lake, BATCH))
    corrected = catalog.register(NAME, WEEK, given(catalog.lake, {**BATCH, **files(shipments="corrected")}))
    later = catalog.register(NAME, NEXT_WEEK, given(catalog.lake, {p: h for p, h in BATCH.items() if p != shipments}))
    catalog.register("other-data", WEEK, given(catalog.lake, BATCH))
    catalog.link_run(NAME, first.version, "forecast-w48", kind="train")
    catalog.link_run(NAME, first.version, "score-w48", kind="score")
    catalog.link_run(NAME, corrected.version, "forecast-w48-rerun")
    catalog.link_run(NAME, later.version, "forecast-w49")
    assert [(v.name, v.version) for v in catalog.versions_with_file(shipments)] == [
        (NAME, WEEK),
        (NAME, f"{WEEK}.2"),
        ("other-data", WEEK),
    ]
    assert [v.version for v in catalog.versions_with_file(shipments, sha256=sha("corrected"))] == [f"{WEEK}.2"]
    assert catalog.runs_for_file(shipments) == [
        (NAME, WEEK, "forecast-w48", "train"),
        (NAME, WEEK, "score-w48", "score"),
        (NAME, f"{WEEK}.2", "forecast-w48-rerun", "train"),
    ]
    assert catalog.runs_for_file(shipments, sha256=sha("s1")) == catalog.runs_of(NAME, WEEK)
    assert catalog.runs_for_file("curated/weather_daily/v1/elsewhere.csv") == []


def test_a_run_is_linked_once_and_with_one_kind(catalog):
    catalog.register(NAME, WEEK, given(catalog.lake, BATCH))
    assert catalog.link_run(NAME, WEEK, "forecast-w48") == catalog.link_run(NAME, WEEK, "forecast-w48")
    assert catalog.runs_of(NAME, WEEK) == [(NAME, WEEK, "forecast-w48", "train")]
    with pytest.raises(DataCatalogError, match="already linked .* as train, not score"):
        catalog.link_run(NAME, WEEK, "forecast-w48", kind="score")
    for run_id, kind in [("../x", "train"), ("", "train"), ("run", "predict")]:
        with pytest.raises(ValueError):
            catalog.link_run(NAME, WEEK, run_id, kind=kind)


# ----------------------------------------------------------------------------------------------- the lake's layout
def test_the_lake_catalog_layout(local_lake):
    catalog = LakeDataCatalog(local_lake)
    catalog.register(NAME, WEEK, given(catalog.lake, BATCH))
    catalog.register(NAME, WEEK, given(catalog.lake, files(shipments="s2")))
    catalog.link_run(NAME, WEEK, "forecast-w48")
    assert list(local_lake.list("batches/data")) == [
        f"batches/data/{NAME}/{WEEK}.2.json",
        f"batches/data/{NAME}/{WEEK}.json",
        f"batches/data/{NAME}/{WEEK}/runs/forecast-w48.json",
    ]
    record = json.loads(local_lake.read_bytes(f"batches/data/{NAME}/{WEEK}.json"))
    assert set(record) == {"name", "version", "week", "path", "content_hash", "files", "created_at"}
    link = json.loads(local_lake.read_bytes(f"batches/data/{NAME}/{WEEK}/runs/forecast-w48.json"))
    assert link["kind"] == "train" and link["linked_at"].endswith("Z")


class RacedLake(LocalLake):
    """A lake where another registration with other content claims the week between this one's look and its claim."""

    raced = False

    def create(self, path: str, data: bytes) -> bool:
        if path.endswith(f"/{WEEK}.json") and not self.raced:
            self.raced = True
            other = LakeDataCatalog(LocalLake(self.root)).register(NAME, WEEK, given(self, files(weather="other")))
            assert other.version == WEEK
        return super().create(path, data)


def test_a_version_claimed_by_another_registration_meanwhile_is_skipped(tmp_path):
    lake = RacedLake(tmp_path / "lake")
    version = LakeDataCatalog(lake).register(NAME, WEEK, given(lake, BATCH))
    assert version.version == f"{WEEK}.2"
    catalog = LakeDataCatalog(LocalLake(tmp_path / "lake"))
    assert catalog.get(NAME, WEEK).files == files(weather="other") and catalog.get(NAME, f"{WEEK}.2") == version


def test_a_record_that_is_not_valid_is_reported(local_lake):
    local_lake.write_bytes(f"batches/data/{NAME}/{WEEK}.json", b'{"name": "curated"}')
    with pytest.raises(DataCatalogError, match="is not valid"):
        LakeDataCatalog(local_lake).get(NAME, WEEK)
    # registering passes over the corrupt version (it stays as it is) rather than failing the batch
    assert LakeDataCatalog(local_lake).register(NAME, WEEK, given(local_lake, BATCH)).version == f"{WEEK}.2"


# ----------------------------------------------------------------------------------------------- AML's data assets
def test_the_data_catalog_and_the_local_backend_never_import_azure_ml():
    import subprocess
    import sys

    code = "import sys, shared.mlops.data_assets, shared.aml.local.plan; print('azure.ai.ml' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT_DIR, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.fixture
def aml(fake, local_lake) -> AzureDataCatalog:
    return AzureDataCatalog(ml_client(fake), local_lake)


def test_aml_data_asset_is_a_uri_folder_on_the_lake_with_the_versions_facts_as_tags(fake, aml):
    version = aml.register(NAME, WEEK, given(aml.lake, BATCH))
    (put,) = fake.requests_to("PUT", r"/data/")
    assert put.path == f"{WS}/data/{NAME}/versions/{WEEK}"
    props = put.json["properties"]
    assert props["dataType"] == "uri_folder"
    assert props["dataUri"] == f"azureml://datastores/lake_batches/paths/pinned/versions/{NAME}/{WEEK}" == version.path
    assert props["tags"] == {
        "week": WEEK,
        "content_hash": version.content_hash,
        "files": "3",
        "datasets": "shipments_weekly,store_demographics,weather_daily",
        "pinned": "true",
    }
    assert f"batches/data/{NAME}/{WEEK}.json" in props["description"]
    # nothing uploaded through the SDK: no datastore lookup, no blob call
    assert not [r for r in fake.requests if "/datastores" in r.path or "blob.core" in r.url]


def test_aml_the_same_content_again_puts_nothing(fake, aml):
    aml.register(NAME, WEEK, given(aml.lake, BATCH))
    aml.register(NAME, WEEK, given(aml.lake, BATCH))
    assert len(fake.requests_to("PUT", r"/data/")) == 1


def test_aml_a_version_aml_holds_with_other_content_is_skipped(fake, aml, local_lake):
    # registered from elsewhere (another lake, by hand in the studio): AML's version is not ours to clobber
    aml.client.data.create_or_update(
        Data(name=NAME, version=WEEK, path="azureml://datastores/lake_curated/paths/", tags={"content_hash": "other"})
    )
    version = aml.register(NAME, WEEK, given(aml.lake, BATCH))
    assert version.version == f"{WEEK}.2" and not local_lake.exists(f"batches/data/{NAME}/{WEEK}.json")
    assert fake.data_versions(NAME)[WEEK]["properties"]["tags"] == {"content_hash": "other"}
    assert [v.version for v in aml.versions(NAME)] == [f"{WEEK}.2"]


def test_aml_a_registration_that_died_after_its_lake_claim_is_completed_by_the_next(fake, aml, local_lake):
    fake.inject("PUT", rf"/data/{NAME}/versions/{WEEK}$", [403])
    with pytest.raises(HttpResponseError) as e:
        aml.register(NAME, WEEK, given(aml.lake, BATCH))
    assert e.value.status_code == 403 and local_lake.exists(f"batches/data/{NAME}/{WEEK}.json")
    with pytest.raises(DataVersionNotFound, match="not a data asset in workspace ws: register it again"):
        aml.get(NAME, WEEK)
    version = aml.register(NAME, WEEK, given(aml.lake, BATCH))
    assert version.version == WEEK and aml.get(NAME, WEEK) == version
    assert WEEK in fake.data_versions(NAME)


def test_aml_versions_are_amls_with_their_lake_records(fake, aml):
    aml.register(NAME, WEEK, given(aml.lake, BATCH))
    aml.register(NAME, NEXT_WEEK, given(aml.lake, files(shipments="s2")))
    aml.client.data.create_or_update(Data(name=NAME, version="7", path="azureml://datastores/lake_curated/paths/x"))
    assert [v.version for v in aml.versions(NAME)] == [WEEK, NEXT_WEEK]
    assert aml.versions("no-such-data") == []
    assert fake.requests_to("GET", rf"/data/{NAME}/versions$")


def test_aml_a_lake_record_and_an_asset_that_disagree_are_reported(fake, aml):
    aml.register(NAME, WEEK, given(aml.lake, BATCH))
    fake.data_versions(NAME)[WEEK]["properties"]["tags"]["content_hash"] = "edited"
    with pytest.raises(DataCatalogError, match="is not the lake record's"):
        aml.get(NAME, WEEK)


def test_aml_registration_gives_up_after_its_attempts(fake, local_lake):
    client = ml_client(fake)
    for version in (WEEK, f"{WEEK}.2"):
        client.data.create_or_update(
            Data(
                name=NAME, version=version, path="azureml://datastores/lake_curated/paths/", tags={"content_hash": "x"}
            )
        )
    with pytest.raises(DataCatalogError, match="no free version for week 2026-11-23 after 2 attempts"):
        AzureDataCatalog(client, local_lake, attempts=2).register(NAME, WEEK, given(local_lake, BATCH))


def test_aml_a_version_put_meanwhile_with_another_path_is_reported(fake, aml):
    fake.inject("GET", rf"/data/{NAME}/versions/{WEEK}$", [404])  # read before the other registration's PUT
    aml.client.data.create_or_update(
        Data(name=NAME, version=WEEK, path="azureml://datastores/lake_curated/paths/other")
    )
    with pytest.raises(DataCatalogError, match="with another path"):
        aml.register(NAME, WEEK, given(aml.lake, BATCH))


# ----------------------------------------------------------------------------------------------- the local backend
def forecast_request(curated_input: str):
    request, problems = validate_request(load_catalog()["forecast"], {"inputs": {"curated": curated_input}})
    assert problems == []
    return request


def test_the_local_backend_runs_on_the_pinned_folder_a_registered_version_names(lake, tmp_path):
    curated(lake, "shipments_weekly", "erp/2026-11-23", "store_id,sku\n")
    version = LakeDataCatalog(lake).register(NAME, WEEK, snapshot(lake))
    steps = plan(load_catalog()["forecast"], forecast_request(version.reference), lake, tmp_path / "work")
    argv = steps[0].argv
    folder, store = Path(argv[argv.index("--curated") + 1]), Path(argv[argv.index("--pinned") + 1])
    if isinstance(lake, LocalLake):
        assert folder == lake.root / "batches/pinned/versions" / NAME / WEEK and store == lake.root / "batches/pinned"
    else:  # a remote lake's folders are copied to the step's machine: of the store, the version's objects only
        assert folder == tmp_path / "work" / "inputs" / "curated" and store == tmp_path / "work" / "inputs" / "pinned"
        assert [p.name for p in store.rglob("*") if p.is_file()] == [f"{sha('store_id,sku' + chr(10))}.csv"]
    listing = json.loads((folder / "files.json").read_text())
    entry = listing["files"]["shipments_weekly/v1/erp/2026-11-23.csv"]
    assert (store / entry["object"]).read_text() == "store_id,sku\n"


def test_the_local_backend_refuses_an_unknown_data_asset_before_anything_starts(local_lake):
    backend = LocalBackend(local_lake, Settings(lake_backend="local", lake_root=local_lake.root))
    body = {"inputs": {"curated": f"azureml:{NAME}:{WEEK}"}, "idempotency_key": "w48"}
    status, answer, _ = runs.submit(backend, load_catalog(), "forecast", json.dumps(body).encode(), "https://app")
    assert status == 400 and answer["error"] == "missing_asset"
    assert answer["message"] == (
        f"input curated: azureml:{NAME}:{WEEK} is not a data asset registered in the lake "
        f"(no version {WEEK} of data {NAME})"
    )
    assert list(local_lake.list("runs")) == []


def test_a_malformed_data_asset_reference_is_a_bad_request(local_lake):
    backend = LocalBackend(local_lake, Settings(lake_backend="local", lake_root=local_lake.root))
    for value in ("azureml:curated", "azureml:curated:", "azureml::1", "azureml:cur ated:1"):
        body = json.dumps({"inputs": {"curated": value}}).encode()
        status, answer, _ = runs.submit(backend, load_catalog(), "forecast", body, "https://app")
        assert status == 400 and answer["problems"][0]["field"] == "inputs.curated"
        assert "azureml:<name>:<version>" in answer["problems"][0]["message"]


def test_the_runner_fails_a_run_whose_data_asset_is_gone_with_a_clear_error(local_lake, tmp_path):
    request = forecast_request(f"azureml:{NAME}:{WEEK}")
    record = {"run_id": "r1", "pipeline": "forecast", "request": request.model_dump(mode="json"), "created_at": "x"}
    local_lake.write_bytes(run_paths("r1")["run"], json.dumps(record).encode())
    Runner(local_lake, "r1", tmp_path / "work").run()
    status = json.loads(local_lake.read_bytes(run_paths("r1")["status"]))
    assert status["aml_status"] == "Failed" and status["error"]["code"] == "plan"
    assert f"no version {WEEK} of data {NAME}" in status["error"]["message"]
