"""The health policy (``pipelines/health_policy.json``), read once: the gates every model must
pass, the promotion margin, the staleness limit and the beat-the-baseline rule. Everything that
judges a model reads it here (the catalog's gates, promotion, staleness, the report, CI); the
forecast pipeline's evaluate step gets its values as parameters, the workbook and the alerts at
deploy."""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared import ROOT

POLICY_FILE = ROOT / "pipelines" / "health_policy.json"

__all__ = ["POLICY_FILE", "HealthPolicy", "PolicyError", "beats_baseline", "policy"]


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GateLimits(_Part):
    """The limits every model must meet: a MAPE and an age."""

    #: the highest MAPE a model may have
    max_mape: float = Field(gt=0)
    #: the oldest a model may be, in days; also the staleness limit of a production model
    max_age_days: float = Field(gt=0)


class Promotion(_Part):
    """When a candidate model may replace production."""

    #: how much worse (absolute MAPE) a candidate may be than production and still replace it
    margin: float = Field(ge=0, le=1)


class Baseline(_Part):
    """When a model beats its baseline, and how many must."""

    #: a model beats its baseline when its MAPE is below the baseline's by more than this
    margin: float = Field(ge=0, le=1)
    #: CI: the share of a run's models that must beat their baseline
    min_share: float = Field(ge=0, le=1)


class HealthPolicy(_Part):
    """The health policy: the gates, the promotion rule and the baseline rule."""

    gates: GateLimits
    promotion: Promotion
    baseline: Baseline

    @property
    def stale_days(self) -> float:
        """A production model older than this (days since ``trained_at``) is stale."""
        return self.gates.max_age_days

    def beats_baseline(self, mape: float | None, baseline_mape: float | None) -> bool:
        """The rule: both MAPEs are numbers and the model's is below the baseline's by more
        than the baseline margin."""
        return beats_baseline(mape, baseline_mape, self.baseline.margin)


class PolicyError(ValueError):
    """The policy file is not valid; the message names every problem."""


def beats_baseline(mape: float | None, baseline_mape: float | None, margin: float) -> bool:
    """``mape`` is below ``baseline_mape`` by more than ``margin`` (False when either is not a
    finite number)."""
    if mape is None or baseline_mape is None or not (math.isfinite(mape) and math.isfinite(baseline_mape)):
        return False
    return baseline_mape - mape > margin


def _without_comments(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_comments(v) for k, v in value.items() if not k.startswith("$")}
    return value


@cache
def policy(path: Path = POLICY_FILE) -> HealthPolicy:
    """The health policy in ``path`` (keys starting with ``$`` are comments)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return HealthPolicy.model_validate(_without_comments(data))
    except (OSError, json.JSONDecodeError) as e:
        raise PolicyError(f"{path}: {e}") from e
    except ValidationError as e:
        problems = [f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in e.errors()]
        raise PolicyError(f"{path}: " + "; ".join(problems)) from e
