"""The daily staleness check of the production models: the timer function in the bridge app, on
the local lake's registry; a stale model is logged and counted."""

from __future__ import annotations

import datetime as dt
import logging

from azure.functions.timer import TimerRequest

from shared import clock, runtime
from shared.mlops import staleness
from shared.mlops.cards import Decision, ModelCard
from shared.mlops.registry import LakeRegistry
from tests.drivers import indexed_functions

NOW = dt.datetime(2026, 11, 28, 6, tzinfo=dt.UTC)


def production(registry, name, days_old, version_note="run", now=NOW):
    card = registry.register(
        ModelCard(
            name=name, trained_at=(now - dt.timedelta(days=days_old)).timestamp(), run_id=f"{version_note}-{name}"
        ),
        {"model.pkl": b"x"},
    )
    decision = Decision(
        outcome="promoted",
        rule="no_production",
        reason="test",
        decided_at="2026-11-28T06:00:00Z",
        candidate_version=card.version,
        production_version=None,
    )
    return registry.promote(name, card.version, decision)


def test_a_production_model_older_than_the_limit_is_logged_and_returned(local_lake, caplog):
    registry = LakeRegistry(local_lake)
    production(registry, "west.large.fast", days_old=75)
    production(registry, "west.small.slow", days_old=10)
    registry.register(  # a stale candidate is nobody's concern: only production models count
        ModelCard(name="east.large.fast", trained_at=(NOW - dt.timedelta(days=90)).timestamp(), run_id="r"), {}
    )
    with caplog.at_level(logging.WARNING, logger="shared.mlops.staleness"):
        stale = staleness.check(registry, NOW, 60)
    assert [c.name for c in stale] == ["west.large.fast"]
    assert any("west.large.fast" in r.getMessage() and "75 days old" in r.getMessage() for r in caplog.records)
    assert not any("west.small.slow" in r.getMessage() for r in caplog.records)


def test_the_daily_timer_checks_the_workers_registry(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("FORECASTOPS_LAKE_ROOT", str(tmp_path / "lake"))
    runtime.lake.cache_clear()
    runtime.aml_backend.cache_clear()
    runtime.registry.cache_clear()
    try:
        production(runtime.registry(), "plains.small.slow", days_old=61, now=clock.now())
        fn = indexed_functions()["models_staleness_check"]
        trigger = fn.get_trigger()
        assert trigger.schedule == "%FORECASTOPS_STALENESS_SCHEDULE%"
        with caplog.at_level(logging.WARNING, logger="shared.mlops.staleness"):
            fn.get_user_function()(timer=TimerRequest(past_due=False))
        assert any("plains.small.slow" in r.getMessage() for r in caplog.records)
    finally:
        runtime.lake.cache_clear()
        runtime.aml_backend.cache_clear()
        runtime.registry.cache_clear()


def test_retrain_at_once_puts_the_stale_groups_on_the_batch_queue_as_a_start_the_bridge_takes(
    tmp_path, monkeypatch, azurite
):
    """FORECASTOPS_STALE_RETRAIN=at_once: the daily timer sends the stale groups on the batch queue
    (Azurite's), and the message is a start the queue trigger accepts, as its own batch."""
    import base64
    import json

    from azure.storage.queue import QueueClient

    from shared.mlops.batch import BatchInput, instance_id_for

    monkeypatch.setenv("FORECASTOPS_LAKE_ROOT", str(tmp_path / "lake"))
    monkeypatch.setenv("LAKE_STORAGE", azurite.connection_string)
    monkeypatch.setenv("FORECASTOPS_BATCH_QUEUE", "stale-test")
    monkeypatch.setenv("FORECASTOPS_STALE_RETRAIN", "at_once")
    caches = (runtime.lake, runtime.aml_backend, runtime.registry, runtime.batch_signal)
    for cache in caches:
        cache.cache_clear()
    try:
        # the timer reads the clock: the models' ages are the clock's
        production(runtime.registry(), "plains.small.slow", days_old=61, now=clock.now())
        production(runtime.registry(), "plains.small.fast", days_old=3, now=clock.now())
        fn = indexed_functions()["models_staleness_check"]
        fn.get_user_function()(timer=TimerRequest(past_due=False))
        queue = QueueClient.from_connection_string(azurite.connection_string, "stale-test")
        messages = [json.loads(base64.b64decode(m.content)) for m in queue.receive_messages()]
    finally:
        for cache in caches:
            cache.cache_clear()
    assert len(messages) == 1
    message = messages[0]
    assert message["by"] == "staleness" and message["groups"] == ["plains.small.slow"]
    start = BatchInput.model_validate(message)  # no week of data in this lake: the last finished one
    assert instance_id_for(start).startswith(f"weekly-batch-{start.week}-stale-")


def test_nothing_stale_sends_nothing():
    class Never:
        def send(self, message):
            raise AssertionError("nothing should be sent")

    assert staleness.retrain_at_once([], "2026-12-21", Never()) is None


def test_the_staleness_limit_is_read_in_one_place_the_forecast_pipeline_s_age_gate():
    from shared.aml.catalog import Gates, load_catalog
    from shared.health import policy
    from shared.mlops import steps

    gates = load_catalog()["forecast"].gates
    assert staleness.limit(gates) == gates.max_age_days == policy().stale_days == staleness.limit()
    # a stricter gate is the limit; no gate, the policy's limit
    assert (
        staleness.limit(Gates(max_age_days=30)) == 30
        and staleness.limit(Gates(max_age_days=None)) == policy().stale_days
    )
    # the batch's plan and promotion read the same function
    ctx = steps.Context(lake=None, registry=None, data=None, gates=Gates(max_age_days=30))
    assert steps._stale_days(ctx) == 30


def test_the_daily_check_defaults_to_the_policy_s_limit(local_lake):
    from shared.health import policy

    registry = LakeRegistry(local_lake)
    limit = policy().stale_days
    production(registry, "west.large.fast", days_old=limit + 1)
    production(registry, "west.small.fast", days_old=limit - 1)
    assert [c.name for c in staleness.check(registry, NOW)] == ["west.large.fast"]
    assert [c.name for c in staleness.stale_models(registry, NOW)] == ["west.large.fast"]
