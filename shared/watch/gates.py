"""The health gates, in one place: a model passes when its MAPE is at most ``max_mape`` and it
was trained no more than ``max_age_days`` ago. The watch applies them to a finished run's
metrics; the main job's report applies the same ones to each model it shows."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from pydantic import BaseModel, Field

GateFailure = dict[str, Any]

_NAME_END = re.compile(r"(?:^|[./:])([A-Za-z_]+)$")


class Gates(BaseModel):
    max_mape: float | None = Field(0.45, gt=0)
    max_age_days: float | None = Field(60.0, gt=0)


def leaf(metric: str) -> str:
    """The metric's own name without its model prefix (``northeast.large.fast.mape`` -> ``mape``)."""
    m = _NAME_END.search(metric)
    return m.group(1) if m else metric


def mape_failure(value: float, gates: Gates) -> GateFailure | None:
    if gates.max_mape is None or not value > gates.max_mape:
        return None
    return {
        "gate": "max_mape",
        "value": round(value, 4),
        "limit": gates.max_mape,
        "by": round(value - gates.max_mape, 4),
    }


def age_failure(trained_at: float, gates: Gates, now: dt.datetime) -> GateFailure | None:
    """``trained_at`` in epoch seconds."""
    age = (now.timestamp() - trained_at) / 86400
    if gates.max_age_days is None or not age > gates.max_age_days:
        return None
    return {
        "gate": "max_age_days",
        "value": round(age, 2),
        "limit": gates.max_age_days,
        "by": round(age - gates.max_age_days, 2),
    }


def gate_failures(metrics: dict[str, dict[str, float]], gates: Gates, now: dt.datetime) -> list[GateFailure]:
    """Every gate a run's metrics fail: ``mape`` metrics above ``max_mape``; ``trained_at``
    (epoch seconds) older than ``max_age_days``. Metric names may carry a model prefix
    (``northeast.large.fast.mape``)."""
    failures = []
    for step, values in sorted(metrics.items()):
        for name, value in sorted(values.items()):
            kind = leaf(name)
            found = None
            if kind == "mape":
                found = mape_failure(value, gates)
            elif kind == "trained_at":
                found = age_failure(value, gates, now)
            if found is not None:
                failures.append({"gate": found.pop("gate"), "step": step, "metric": name, **found})
    return failures
