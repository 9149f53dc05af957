"""The model registry's contract, the same for the lake registry (a local folder and Azurite) and for Azure ML's
model registry (the real azure-ai-ml ``MLClient`` answered by the in-process fake, tests/fakes/aml/)."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator

import pytest
from azure.ai.ml import MLClient
from azure.ai.ml.entities import Model
from azure.core.exceptions import HttpResponseError

from shared.aml.catalog import Gates
from shared.lake import Lake, LocalLake
from shared.mlops.aml_registry import AzureRegistry
from shared.mlops.cards import Decision, Metrics, ModelCard
from shared.mlops.promotion import decide
from shared.mlops.registry import LakeRegistry, ModelNotFound, Registry, RegistryError, review
from shared.mlops.staleness import stale_models
from tests.fakes.aml.credential import FakeCredential
from tests.fakes.aml.fake import FakeAML
from tests.fakes.aml.models import ASSET_PATH_MESSAGE

NOW = dt.datetime(2026, 11, 28, 9, 30, tzinfo=dt.UTC)
NAME = "northeast.large.fast"
FILES = {"model.joblib": b"\x80\x04lasso+mlp", "features.json": b'{"lags": [1, 2, 52]}'}
WS = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg"
    "/providers/Microsoft.MachineLearningServices/workspaces/ws"
)


def candidate(mape: float | None, days_old: float = 1, name: str = NAME, run: str = "forecast-w48") -> ModelCard:
    return ModelCard(
        name=name,
        metrics=Metrics(mape=mape, rmse_0=0.8, rmse_all=4.2, baseline_mape=0.51),
        trained_at=(NOW - dt.timedelta(days=days_old)).timestamp(),
        run_id=run,
        data_versions={"shipments_weekly": "v1@2026-11-23", "weather_daily": "v1@2026-11-27"},
    )


def promoted(version: int, production: int | None = None) -> Decision:
    return Decision(
        outcome="promoted",
        rule="better",
        reason="test",
        decided_at="2026-11-28T09:30:00Z",
        candidate_version=version,
        production_version=production,
    )


@pytest.fixture
def fake() -> FakeAML:
    return FakeAML()


@pytest.fixture(params=["lake-local", "lake-blob", "azureml"])
def registry(request: pytest.FixtureRequest, local_lake: Lake) -> Iterator[Registry]:
    """Each test that takes ``registry`` runs against the lake registry on a local folder and on Azurite, and
    against Azure ML's model registry (model files in a local lake standing for the workspace's datastore)."""
    if request.param == "azureml":
        fake = request.getfixturevalue("fake")
        client = MLClient(FakeCredential(), fake.subscription_id, "rg", "ws", transport=fake.transport())
        yield AzureRegistry(client, local_lake)
        assert fake.unhandled == []
    else:
        lake = request.getfixturevalue("local_lake" if request.param == "lake-local" else "blob_lake")
        yield LakeRegistry(lake)


# ----------------------------------------------------------------------------------------------- the contract
def test_registration_assigns_versions_one_two_three_as_candidates(registry):
    first = registry.register(candidate(0.31), FILES)
    second = registry.register(candidate(0.30, run="forecast-w49"), FILES)
    assert (first.version, second.version) == (1, 2)
    assert first.stage == "candidate" and first.decision is None and first.files == ["features.json", "model.joblib"]
    assert registry.get(NAME, 1) == first
    assert registry.get(NAME, 2).run_id == "forecast-w49"
    assert [c.version for c in registry.versions(NAME)] == [1, 2]
    assert registry.names() == [NAME]


def test_a_card_keeps_every_fact(registry):
    card = candidate(0.31).model_copy(update={"metrics": Metrics(mape=0.31, rmse_all=4.25, baseline_mape=None)})
    stored = registry.get(NAME, registry.register(card, FILES).version)
    assert stored.metrics == Metrics(mape=0.31, rmse_all=4.25)
    assert stored.trained_at == card.trained_at
    assert stored.data_versions == {"shipments_weekly": "v1@2026-11-23", "weather_daily": "v1@2026-11-27"}
    assert stored.run_id == "forecast-w48"


def test_model_files_are_stored_with_the_version(registry):
    registry.register(candidate(0.31), FILES)
    registry.register(candidate(0.30), {"model.joblib": b"second"})
    assert registry.read_file(NAME, 1, "model.joblib") == FILES["model.joblib"]
    assert registry.read_file(NAME, 1, "features.json") == FILES["features.json"]
    assert registry.read_file(NAME, 2, "model.joblib") == b"second"
    with pytest.raises(ModelNotFound):
        registry.read_file(NAME, 2, "features.json")


def test_unknown_models_and_bad_file_names(registry):
    with pytest.raises(ModelNotFound):
        registry.get(NAME, 1)
    assert registry.versions(NAME) == [] and registry.production(NAME) is None and registry.names() == []
    # a relative path of plain names is a file of the version (an MLflow model's artifacts/, code/)
    for bad in ("../escape", "sub/../file", "/abs", "sub//file", "sub/.hidden", "a/b/c/d/e/f", "card.json", ""):
        with pytest.raises(RegistryError):
            registry.register(candidate(0.3), {bad: b"x"})


def test_concurrent_registrations_of_one_model_get_distinct_versions(registry):
    cards: list[ModelCard] = []
    errors: list[BaseException] = []

    def register(i: int) -> None:
        try:
            cards.append(registry.register(candidate(0.3, run=f"run-{i}"), {"model.joblib": f"model {i}".encode()}))
        except BaseException as e:  # reported below, not lost in the thread
            errors.append(e)

    threads = [threading.Thread(target=register, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(c.version for c in cards) == [1, 2, 3, 4, 5, 6]
    for c in cards:
        stored = registry.get(NAME, c.version)
        assert stored.run_id == c.run_id
        assert registry.read_file(NAME, c.version, "model.joblib") == f"model {c.run_id[4:]}".encode()


def test_production_moves_only_through_promote(registry):
    registry.register(candidate(0.31), FILES)
    registry.register(candidate(0.29), FILES)
    assert registry.production(NAME) is None
    assert registry.promote(NAME, 1, promoted(1)).stage == "production"
    assert registry.production(NAME).version == 1
    registry.register(candidate(0.20), FILES)
    assert registry.production(NAME).version == 1  # registering changes nothing
    registry.promote(NAME, 2, promoted(2, production=1))
    assert registry.production(NAME).version == 2
    assert [c.stage for c in registry.versions(NAME)] == ["retired", "production", "candidate"]
    assert registry.get(NAME, 2).decision == promoted(2, production=1)


def test_keep_records_the_decision_and_leaves_production_alone(registry):
    registry.register(candidate(0.31), FILES)
    registry.promote(NAME, 1, promoted(1))
    registry.register(candidate(0.40), FILES)
    kept = Decision(
        outcome="kept",
        rule="beyond_margin",
        reason="MAPE 0.40 is worse than production's 0.31 by 0.09, beyond the 0.02 margin: production stays version 1",
        decided_at="2026-11-28T09:31:00Z",
        candidate_version=2,
        production_version=1,
    )
    assert registry.keep(NAME, 2, kept).stage == "candidate"
    assert registry.get(NAME, 2).decision == kept
    assert registry.production(NAME).version == 1
    assert registry.decisions(NAME) == [promoted(1), kept]


def test_a_decision_must_fit_what_it_is_recorded_for(registry):
    registry.register(candidate(0.31), FILES)
    with pytest.raises(RegistryError):
        registry.promote(NAME, 1, promoted(2))
    with pytest.raises(RegistryError):
        registry.keep(NAME, 1, promoted(1))
    with pytest.raises(ModelNotFound):
        registry.promote(NAME, 7, promoted(7))
    assert registry.production(NAME) is None and registry.decisions(NAME) == []


def test_review_applies_the_rules_and_records_every_decision(registry):
    gates = Gates()
    steps = [
        (0.33, "no_production"),
        (0.40, "beyond_margin"),
        (0.52, "gate"),
        (0.34, "within_margin"),
        (0.30, "better"),
    ]
    for mape, _ in steps:
        card = registry.register(candidate(mape), FILES)
        review(registry, NAME, card.version, gates, NOW)
    assert [(d.candidate_version, d.rule) for d in registry.decisions(NAME)] == [
        (i, rule) for i, (_, rule) in enumerate(steps, start=1)
    ]
    assert [c.stage for c in registry.versions(NAME)] == ["retired", "candidate", "candidate", "retired", "production"]
    assert (
        registry.get(NAME, 3).decision.reason
        == "MAPE 0.52 fails the 0.45 gate: not promoted (production stays version 1)"
    )


def test_review_replaces_a_stale_production_model(registry):
    registry.register(candidate(0.20, days_old=75), FILES)
    registry.promote(NAME, 1, decide(registry.get(NAME, 1), None, Gates(max_age_days=None), NOW))
    registry.register(candidate(0.44), FILES)
    decision = review(registry, NAME, 2, Gates(), NOW)
    assert decision.reason == "production (version 1) is 75 days old: stale, replaced"
    assert registry.production(NAME).version == 2


def test_stale_models_lists_production_models_older_than_the_limit(registry):
    for name, days in [("west.small.slow", 70), ("west.large.fast", 10), ("florida.small.fast", 61)]:
        card = registry.register(candidate(0.3, days_old=days, name=name), FILES)
        registry.promote(name, card.version, promoted(card.version))
    registry.register(candidate(0.3, days_old=90, name="texas.small.slow"), FILES)  # never promoted: not served
    assert [c.name for c in registry.production_models()] == [
        "florida.small.fast",
        "west.large.fast",
        "west.small.slow",
    ]
    assert [c.name for c in stale_models(registry, NOW)] == ["florida.small.fast", "west.small.slow"]
    assert [c.name for c in stale_models(registry, NOW, max_age_days=65)] == ["west.small.slow"]
    assert stale_models(registry, NOW - dt.timedelta(days=30)) == []  # the clock is injected


# ----------------------------------------------------------------------------------------------- the lake's layout
def test_the_lake_registry_layout(local_lake):
    registry = LakeRegistry(local_lake)
    registry.register(candidate(0.33), FILES)
    review(registry, NAME, 1, Gates(), NOW)
    registry.register(candidate(0.60), FILES)
    review(registry, NAME, 2, Gates(), NOW)
    paths = list(local_lake.list("models"))
    decisions = [p for p in paths if "/decisions/" in p]
    assert [p for p in paths if p not in decisions] == [
        f"models/{NAME}/1/card.json",
        f"models/{NAME}/1/features.json",
        f"models/{NAME}/1/model.joblib",
        f"models/{NAME}/2/card.json",
        f"models/{NAME}/2/features.json",
        f"models/{NAME}/2/model.joblib",
        f"models/{NAME}/production.json",
    ]
    assert len(decisions) == 2 and decisions[0].startswith(f"models/{NAME}/decisions/20261128T093000Z-v1-")
    pointer = json.loads(local_lake.read_bytes(f"models/{NAME}/production.json"))
    assert pointer["version"] == 1 and pointer["reason"] == "MAPE 0.33 passes the gates; no production model yet"
    card = json.loads(local_lake.read_bytes(f"models/{NAME}/2/card.json"))
    assert card["stage"] == "candidate" and card["decision"]["outcome"] == "kept"


class RacedLake(LocalLake):
    """A lake where another writer claims version 2 right after this writer lists the versions."""

    def list(self, prefix: str) -> Iterator[str]:
        found = list(super().list(prefix))
        other = candidate(0.3, run="other").model_copy(update={"version": 2})
        self.create(f"models/{NAME}/2/card.json", other.to_json())
        return iter(found)


def test_a_version_claimed_by_another_writer_meanwhile_is_skipped(tmp_path):
    lake = RacedLake(tmp_path / "lake")
    lake.write_bytes(f"models/{NAME}/1/card.json", candidate(0.3).model_copy(update={"version": 1}).to_json())
    registry = LakeRegistry(lake)
    card = registry.register(candidate(0.3), FILES)
    assert card.version == 3 and registry.get(NAME, 2).run_id == "other" and registry.get(NAME, 3) == card


def test_a_version_whose_files_never_arrived_is_not_promoted(local_lake):
    registry = LakeRegistry(local_lake)
    registry.register(candidate(0.3), FILES)
    local_lake.delete(f"models/{NAME}/1/model.joblib")  # what a registration that died mid-way leaves
    with pytest.raises(RegistryError, match=r"incomplete \(missing model.joblib\)"):
        review(registry, NAME, 1, Gates(), NOW)
    assert registry.production(NAME) is None


# ----------------------------------------------------------------------------------------------- AML's registry
@pytest.fixture
def aml(fake, local_lake) -> AzureRegistry:
    client = MLClient(FakeCredential(), fake.subscription_id, "rg", "ws", transport=fake.transport())
    return AzureRegistry(client, local_lake)


def test_aml_versions_carry_the_card_as_tags_and_reference_the_lake(fake, aml, local_lake):
    aml.register(candidate(0.31), FILES)
    (put,) = fake.requests_to("PUT", r"/models/")
    assert put.path == f"{WS}/models/{NAME}/versions/1"
    props = put.json["properties"]
    folder = "models/" + props["modelUri"].split("/datastores/lake_models/paths/")[1]
    assert props["modelUri"].startswith("azureml://subscriptions/") and folder.startswith(f"models/{NAME}/files/")
    assert sorted(local_lake.list(folder.rstrip("/"))) == [f"{folder}features.json", f"{folder}model.joblib"]
    assert props["modelType"] == "custom_model"
    assert props["tags"] == {
        "forecastops.card": "1",
        "stage": "candidate",
        "trained_at": repr(candidate(0.31).trained_at),
        "run_id": "forecast-w48",
        "group.region": "northeast",
        "group.format": "large",
        "group.velocity": "fast",
        "mape": "0.31",
        "rmse_0": "0.8",
        "rmse_all": "4.2",
        "baseline_mape": "0.51",
        "data.shipments_weekly": "v1@2026-11-23",
        "data.weather_daily": "v1@2026-11-27",
        "files": "features.json,model.joblib",
    }
    # nothing uploaded through the SDK: no datastore lookup, no blob call
    assert not [r for r in fake.requests if "/datastores" in r.path or "blob.core" in r.url]


def test_aml_promotion_retags_the_new_and_the_old_production_version(fake, aml):
    for mape in (0.33, 0.30):
        aml.register(candidate(mape), FILES)
    review(aml, NAME, 1, Gates(), NOW)
    review(aml, NAME, 2, Gates(), NOW)
    tags = {v: body["properties"]["tags"] for v, body in fake.model_versions(NAME).items()}
    assert (tags["1"]["stage"], tags["2"]["stage"]) == ("retired", "production")
    assert tags["2"]["decision.outcome"] == "promoted" and tags["2"]["decision.rule"] == "better"
    assert tags["2"]["decision.reason"] == "MAPE 0.30 beats production's 0.33"
    assert tags["2"]["decision.production_version"] == "1"
    # the path of a version never moves; only its tags change
    assert fake.model_versions(NAME)["2"]["properties"]["modelUri"].endswith("/")


def test_aml_a_version_number_taken_meanwhile_is_refused_and_the_next_one_taken(fake, aml):
    aml.register(candidate(0.31, run="first"), FILES)
    # the second registration read the versions before the first one's PUT landed
    fake.inject("GET", rf"/models/{NAME}/versions$", [200], body={"value": [], "nextLink": None})
    card = aml.register(candidate(0.30, run="second"), FILES)
    assert card.version == 2 and aml.get(NAME, 1).run_id == "first" and aml.get(NAME, 2).run_id == "second"
    refused = [r for r in fake.requests_to("PUT", rf"/models/{NAME}/versions/1$")]
    assert len(refused) == 2


def test_aml_models_without_a_card_are_not_read(fake, aml):
    client = aml.client
    client.models.create_or_update(
        Model(name=NAME, version="1", path="azureml://datastores/lake_models/paths/x/", tags={})
    )
    client.models.create_or_update(
        Model(name="someone-elses-model", version="1", path="azureml://datastores/lake_models/paths/y/")
    )
    # another team's model with a three-part name is not a group either (the workspace is shared)
    client.models.create_or_update(
        Model(name="sales.lgbm.v1", version="1", path="azureml://datastores/lake_models/paths/z/")
    )
    assert aml.versions(NAME) == [] and aml.names() == [NAME]
    with pytest.raises(ModelNotFound):
        aml.get(NAME, 1)


def test_aml_a_version_whose_tags_are_not_a_card_is_reported(fake, aml):
    aml.register(candidate(0.31), FILES)
    del fake.model_versions(NAME)["1"]["properties"]["tags"]["trained_at"]  # someone edited the tags in the studio
    with pytest.raises(RegistryError, match="its tags are not a model card"):
        aml.get(NAME, 1)


def test_aml_errors_other_than_a_taken_version_are_raised_not_retried(fake, aml):
    fake.inject("PUT", rf"/models/{NAME}/versions/1$", [403])
    with pytest.raises(HttpResponseError) as e:
        aml.register(candidate(0.31), FILES)
    assert e.value.status_code == 403 and len(fake.requests_to("PUT", r"/models/")) == 1


def test_aml_registration_gives_up_after_its_attempts(fake, local_lake):
    client = MLClient(FakeCredential(), fake.subscription_id, "rg", "ws", transport=fake.transport())
    body = fake._error_response("UserError", ASSET_PATH_MESSAGE)
    fake.inject("PUT", r"/models/", [400], body=body, forever=True)
    with pytest.raises(RegistryError, match="no free version after 3 attempts"):
        AzureRegistry(client, local_lake, attempts=3).register(candidate(0.31), FILES)
    assert [r.path.rsplit("/", 1)[1] for r in fake.requests_to("PUT", r"/models/")] == ["1", "2", "3"]


def test_aml_an_unknown_model_has_no_versions_even_when_aml_answers_404(fake, aml):
    fake.inject("GET", rf"/models/{NAME}/versions$", [404])
    assert aml.versions(NAME) == []


def test_a_lake_card_that_is_not_valid_is_reported(local_lake):
    local_lake.write_bytes(f"models/{NAME}/1/card.json", b'{"name": "x"}')
    with pytest.raises(RegistryError, match="is not valid"):
        LakeRegistry(local_lake).get(NAME, 1)
