"""Which production models are too old, and the daily check that says so: each one is logged
(name, version, age), every production model's age and the count of stale ones go to
Application Insights (``model_age_days``, ``stale_models``). The next weekly batch retrains a
stale model's group (its plan sees the age); with ``FORECASTOPS_STALE_RETRAIN=at_once`` the
check asks for a batch of the stale groups at once (:func:`retrain_at_once`: a message on the
batch queue, which the bridge's queue trigger starts like any other). A stale incumbent is
replaced by any candidate that passes the gates (:mod:`shared.mlops.promotion`).

How old is stale is :func:`limit`, the one reader of the limit: the forecast pipeline's age gate,
which is the health policy's (``pipelines/health_policy.json``) unless the catalog is stricter.
The batch's plan and promotion (:mod:`shared.mlops.steps`) and the daily check read it there."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Protocol

from shared import health, telemetry
from shared.aml.catalog import Gates
from shared.mlops.cards import ModelCard
from shared.mlops.promotion import age_days
from shared.mlops.registry import Registry

__all__ = ["check", "limit", "retrain_at_once", "stale_models"]

log = logging.getLogger(__name__)


def limit(gates: Gates | None = None) -> float:
    """The age (days since ``trained_at``) beyond which a production model is stale: the age gate
    of ``gates`` (the forecast pipeline's), else the health policy's."""
    if gates is not None and gates.max_age_days is not None:
        return gates.max_age_days
    return health.policy().stale_days


def stale_models(registry: Registry, now: dt.datetime, max_age_days: float | None = None) -> list[ModelCard]:
    """Every production model trained more than ``max_age_days`` (default :func:`limit`) before
    ``now``, by name."""
    max_age_days = limit() if max_age_days is None else max_age_days
    return [card for card in registry.production_models() if age_days(card, now) > max_age_days]


def check(registry: Registry, now: dt.datetime, max_age_days: float | None = None) -> list[ModelCard]:
    """The daily check: every stale production model (older than ``max_age_days``, default
    :func:`limit`) logged and counted; the stale ones."""
    max_age_days = limit() if max_age_days is None else max_age_days
    production = registry.production_models()
    stale = [card for card in production if age_days(card, now) > max_age_days]
    for card in stale:
        log.warning(
            "model %s version %s is %.0f days old (limit %.0f): its group is retrained in the next batch",
            card.name,
            card.version,
            age_days(card, now),
            max_age_days,
        )
    telemetry.record_staleness({card.name: age_days(card, now) for card in production}, len(stale))
    log.info("staleness check: %d production model(s), %d stale", len(production), len(stale))
    return stale


class _Signal(Protocol):
    def send(self, message: dict[str, Any]) -> None: ...


def retrain_at_once(stale: list[ModelCard], week: str, signal: _Signal) -> dict[str, Any] | None:
    """Ask for a batch of the week ``week`` (the latest with data) that retrains the stale
    groups now; the message sent, or None when nothing is stale."""
    if not stale:
        return None
    message = {"week": week, "by": "staleness", "groups": sorted(card.name for card in stale)}
    signal.send(message)
    log.warning("staleness check: a batch of the week of %s retrains %d stale group(s) at once", week, len(stale))
    return message
