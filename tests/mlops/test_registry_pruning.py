"""The registry stays small (issue 23, item 5): a group keeps its last N versions and every version
that was ever in production, the rest archived (the lake moves them under ``archive/``, Azure ML
archives them through ``models.archive``); the batch prunes after it registers a run's models;
listing the production models reads per group, however long each group's history."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator

import pytest
from azure.ai.ml import MLClient
from azure.core.exceptions import HttpResponseError

from shared import clock
from shared.lake import Lake, LocalLake, TransientLakeError
from shared.mlops import steps
from shared.mlops.aml_registry import AzureRegistry
from shared.mlops.cards import Decision, ModelCard
from shared.mlops.registry import LakeRegistry, Registry
from tests.fakes.aml.credential import FakeCredential
from tests.fakes.aml.fake import FakeAML
from tests.fakes.aml.transport import Reply
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

NAME = "northeast.large.fast"
GROUPS = ("northeast.large.fast", "northeast.large.slow", "west.small.fast")
FILES = {"model.pkl": b"model"}
PROMOTED = (3, 10, 17)  # 3 and 10 retired since, 17 serves


class CountingFake(FakeAML):
    """The fake workspace, counting the model versions its listings answer."""

    def __init__(self) -> None:
        super().__init__()
        self.listed = 0

    def _asset_versions(self, values, rec, **equal) -> Reply:
        reply = super()._asset_versions(values, rec, **equal)
        self.listed += len(reply.body["value"])
        return reply


class CountingLake(LocalLake):
    """A local lake counting the records it reads and the names its listings answer."""

    reads = 0
    listed = 0

    def read_bytes(self, path: str) -> bytes:
        self.reads += 1
        return super().read_bytes(path)

    def list(self, prefix: str) -> Iterator[str]:
        for path in super().list(prefix):
            self.listed += 1
            yield path

    def children(self, prefix: str) -> list[str]:
        found = super().children(prefix)
        self.listed += len(found)
        return found


@pytest.fixture(params=["lake-local", "lake-blob", "azureml"])
def registry(request: pytest.FixtureRequest, local_lake: Lake) -> Iterator[Registry]:
    if request.param == "azureml":
        fake = CountingFake()
        client = MLClient(FakeCredential(), fake.subscription_id, "rg", "ws", transport=fake.transport())
        yield AzureRegistry(client, local_lake)
        assert fake.unhandled == []
    else:
        yield LakeRegistry(request.getfixturevalue("local_lake" if request.param == "lake-local" else "blob_lake"))


def card(name: str = NAME, run: str = "run") -> ModelCard:
    return ModelCard(name=name, trained_at=NOW.timestamp(), run_id=run)


def decision(version: int, production: int | None) -> Decision:
    return Decision(
        outcome="promoted",
        rule="better",
        reason="test",
        decided_at=clock.iso(NOW + dt.timedelta(minutes=version)),
        candidate_version=version,
        production_version=production,
    )


def history(registry: Registry, n: int = 30, name: str = NAME, promoted: tuple[int, ...] = PROMOTED) -> None:
    """``n`` versions of ``name``; those in ``promoted`` promoted in turn, the others candidates."""
    before = None
    for v in range(1, n + 1):
        assert registry.register(card(name, f"run-{v}"), FILES).version == v
        if v in promoted:
            registry.promote(name, v, decision(v, before))
            before = v


def test_thirty_versions_end_with_the_last_n_and_every_version_ever_in_production(registry):
    history(registry)
    archived = registry.prune(NAME, 5)
    assert archived == [v for v in range(1, 26) if v not in PROMOTED]
    assert [c.version for c in registry.versions(NAME)] == [3, 10, 17, 26, 27, 28, 29, 30]
    assert registry.production(NAME).version == 17
    assert [c.stage for c in registry.versions(NAME)][:3] == ["retired", "retired", "production"]
    assert registry.prune(NAME, 5) == []  # run again: nothing more
    # the next registration still gets the next number
    assert registry.register(card(), FILES).version == 31


def test_a_production_version_older_than_the_last_n_is_kept_and_one_is_the_least(registry):
    history(registry, 6, promoted=(1,))
    assert registry.prune(NAME, 1) == [2, 3, 4, 5]
    assert [c.version for c in registry.versions(NAME)] == [1, 6]
    with pytest.raises(ValueError, match="keep at least one"):
        registry.prune(NAME, 0)


def test_the_lake_moves_an_archived_version_under_archive_and_finishes_a_half_done_move(local_lake):
    registry = LakeRegistry(local_lake)
    history(registry, 4, promoted=())
    local_lake.write_bytes(f"models/{NAME}/archive/1/model.pkl", b"model")  # a move that died half-way
    local_lake.delete(f"models/{NAME}/1/model.pkl")
    assert registry.prune(NAME, 2) == [1, 2]
    kept = sorted(p for p in local_lake.list(f"models/{NAME}") if "/decisions/" not in p)
    assert kept == [
        f"models/{NAME}/3/card.json",
        f"models/{NAME}/3/model.pkl",
        f"models/{NAME}/4/card.json",
        f"models/{NAME}/4/model.pkl",
        f"models/{NAME}/archive/1/card.json",
        f"models/{NAME}/archive/1/model.pkl",
        f"models/{NAME}/archive/2/card.json",
        f"models/{NAME}/archive/2/model.pkl",
    ]
    assert ModelCard.from_json(local_lake.read_bytes(f"models/{NAME}/archive/2/card.json")).run_id == "run-2"
    assert registry.names() == [NAME]


def test_aml_archives_through_models_archive_and_keeps_the_files(local_lake):
    fake = FakeAML()
    client = MLClient(FakeCredential(), fake.subscription_id, "rg", "ws", transport=fake.transport())
    registry = AzureRegistry(client, local_lake)
    history(registry, 3, promoted=())
    assert registry.prune(NAME, 1) == [1, 2]
    versions = fake.model_versions(NAME)
    assert [versions[v]["properties"]["isArchived"] for v in ("1", "2", "3")] == [True, True, False]
    # archived, not deleted: AML still answers it, its files are still in the lake
    assert client.models.get(NAME, "1").tags["run_id"] == "run-1"
    folder = versions["1"]["properties"]["modelUri"].split("/paths/")[1]
    assert local_lake.read_bytes(f"models/{folder}model.pkl") == b"model"
    assert fake.unhandled == []


def _production_listing_cost(registry: Registry, counter, n: int) -> tuple[int, int]:
    for name in GROUPS:
        history(registry, n, name=name, promoted=tuple(range(1, n + 1, 3)))
    counter.reads = counter.listed = 0
    found = registry.production_models()
    assert [c.name for c in found] == list(GROUPS)
    return counter.reads, counter.listed


def test_listing_the_production_models_reads_per_group_not_per_version(tmp_path):
    short, long = CountingLake(tmp_path / "short"), CountingLake(tmp_path / "long")
    one = _production_listing_cost(LakeRegistry(short), short, 1)
    thirty = _production_listing_cost(LakeRegistry(long), long, 30)
    # the pointer and the card of each group, the group names once
    assert one == thirty == (2 * len(GROUPS), len(GROUPS))


def test_aml_listing_the_production_models_reads_per_group_not_per_version(local_lake):
    costs = []
    for n in (1, 30):
        fake = CountingFake()
        client = MLClient(FakeCredential(), fake.subscription_id, "rg", "ws", transport=fake.transport())
        registry = AzureRegistry(client, local_lake)
        for name in GROUPS:
            history(registry, n, name=name, promoted=tuple(range(1, n + 1, 3)))
        fake.listed, requests = 0, len(fake.requests)
        assert [c.name for c in registry.production_models()] == list(GROUPS)
        costs.append((len(fake.requests) - requests, fake.listed))
    # the model names once, then per group the one version whose stage is Production
    assert costs[0] == costs[1] == (1 + len(GROUPS), len(GROUPS))


@pytest.fixture(autouse=True)
def today(monkeypatch):
    """The clock at the batch's Monday: the world's rows are not 'after today'."""
    monkeypatch.setattr(clock, "now", lambda: NOW)


def test_the_batch_prunes_each_group_it_registered_after_the_decisions(lake):
    world(lake)
    ctx = context(lake, versions_kept=3)
    plan = steps.plan(ctx, {"week": W}, NOW)
    history(ctx.registry, 12, name=NE[0], promoted=(2,))
    history(ctx.registry, 12, name=WEST[1], promoted=(2,))  # not trained by this run: left alone
    train = fake_training_run(lake, "run-prune", {NE[0]: 0.2, NE[1]: 0.2})
    registered = steps.register(ctx, {"plan": plan, "train": train}, NOW)
    assert registered["groups"][NE[0]] == registered["groups"][NE[0]] | {"version": 13, "outcome": "promoted"}
    assert registered["archived"] == {NE[0]: [1, 3, 4, 5, 6, 7, 8, 9, 10]}
    assert [c.version for c in ctx.registry.versions(NE[0])] == [2, 11, 12, 13]
    assert len(ctx.registry.versions(WEST[1])) == 12
    again = steps.register(ctx, {"plan": plan, "train": train}, NOW)  # the step retried
    assert again["groups"] == registered["groups"] and again["archived"] == {}
    summary = steps.publish(ctx, {"plan": plan, "train": train, "registered": registered}, NOW)
    assert summary["archived"] == {NE[0]: [1, 3, 4, 5, 6, 7, 8, 9, 10]}


@pytest.mark.parametrize("home", ["lake", "azureml"])
def test_a_prune_that_fails_is_recorded_and_the_register_step_goes_on(lake, local_lake, home, caplog):
    world(lake)
    ctx = context(lake, versions_kept=1)
    if home == "azureml":
        fake = FakeAML()
        client = MLClient(FakeCredential(), fake.subscription_id, "rg", "ws", transport=fake.transport())
        ctx = dataclasses.replace(ctx, registry=AzureRegistry(client, local_lake))
        fault: Exception = HttpResponseError(message="(ServiceError) the archive timed out\nsecond line")
    else:
        fault = TransientLakeError("throttled: 503")
    plan = steps.plan(ctx, {"week": W}, NOW)
    history(ctx.registry, 3, name=NE[0], promoted=(2,))

    def archive(name: str, version: int) -> None:
        raise fault

    ctx.registry.archive = archive  # type: ignore[method-assign]
    train = fake_training_run(lake, "run-prune-fails", {NE[0]: 0.2, NE[1]: 0.2})
    registered = steps.register(ctx, {"plan": plan, "train": train}, NOW)
    # the models were registered and decided: housekeeping does not undo them
    assert set(registered["groups"]) == {NE[0], NE[1]}
    assert registered["groups"][NE[0]]["version"] == 4 and registered["groups"][NE[0]]["outcome"]
    assert registered["groups"][NE[1]]["registered"] and registered["groups"][NE[1]]["outcome"]
    assert registered["archived"] == {}
    assert list(registered["archive_failed"]) == [NE[0]]
    why = registered["archive_failed"][NE[0]]
    assert "\n" not in why and ("throttled" in why or "timed out" in why)
    warned = [r for r in caplog.records if r.levelname == "WARNING" and NE[0] in r.getMessage()]
    assert len(warned) == 1 and "prun" in warned[0].getMessage()
    assert [c.version for c in ctx.registry.versions(NE[0])] == [1, 2, 3, 4]  # the next batch prunes again
    summary = steps.publish(ctx, {"plan": plan, "train": train, "registered": registered}, NOW)
    assert summary["archive_failed"] == registered["archive_failed"]  # the batch's summary says so


def test_the_lake_registry_names_only_groups_that_hold_a_version_or_a_pointer(local_lake):
    registry = LakeRegistry(local_lake)
    history(registry, 1, promoted=())
    local_lake.write_bytes("models/README.txt", b"what this folder is")
    (local_lake.root / "models" / "x.large.fast").mkdir()  # an empty folder
    local_lake.write_bytes("models/y.small.slow/decisions/1.json", b"{}")  # no version, no pointer
    local_lake.write_bytes("models/z.small.fast/production.json", b'{"version": 1}')  # a pointer: a name
    assert registry.names() == [NAME, "z.small.fast"]
    assert registry.strays() == ["README.txt", "x.large.fast", "y.small.slow"]
