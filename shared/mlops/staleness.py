"""Which production models are too old: the detection half of the daily staleness check (the
timer function that logs them, counts them in a custom metric and retrains their groups builds
on it)."""

from __future__ import annotations

import datetime as dt

from shared.mlops.cards import ModelCard
from shared.mlops.promotion import DEFAULT_STALE_DAYS, age_days
from shared.mlops.registry import Registry

__all__ = ["stale_models"]


def stale_models(registry: Registry, now: dt.datetime, max_age_days: float = DEFAULT_STALE_DAYS) -> list[ModelCard]:
    """Every production model trained more than ``max_age_days`` before ``now``, by name."""
    return [card for card in registry.production_models() if age_days(card, now) > max_age_days]
