"""The health gates, applied: a completed run passes when every model's MAPE is at most
``max_mape``, every model was trained no more than ``max_age_days`` ago, and every model
reports the metrics its pipeline requires, as finite numbers. The gates themselves are the
pipeline catalog's (:class:`shared.aml.catalog.Gates`); the watch applies them to a finished
run's metrics, and the main job's report to each model it shows.

The gates fail closed: a required metric that is missing, or any gated metric that is not a
finite number (NaN, infinity, null), is a failure that names the model and the metric.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

from shared.aml.catalog import Gates

__all__ = ["GateFailure", "Gates", "age_failure", "finite", "gate_failures", "leaf", "mape_failure"]

GateFailure = dict[str, Any]
Metrics = dict[str, dict[str, float | None]]

_NAME_END = re.compile(r"(?:^|[./:])([A-Za-z_]+)$")


def leaf(metric: str) -> str:
    """The metric's own name without its model prefix (``northeast.large.fast.mape`` -> ``mape``)."""
    m = _NAME_END.search(metric)
    return m.group(1) if m else metric


def model_of(metric: str) -> str:
    """The model a metric belongs to (``northeast.large.fast``), or ``""`` for the run itself."""
    return metric[: -len(leaf(metric))].rstrip("./:")


def finite(value: Any) -> bool:
    """Whether the value is a finite number (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def mape_failure(value: float, gates: Gates) -> GateFailure | None:
    """The max_mape gate's failure if the MAPE is over it, else None."""
    if gates.max_mape is None or not value > gates.max_mape:
        return None
    by = round(value - gates.max_mape, 4)
    return {"gate": "max_mape", "value": round(value, 4), "limit": gates.max_mape, "by": by}


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


def _metrics_failure(step: str | None, metric: str | None, message: str) -> GateFailure:
    model = model_of(metric) if metric else None
    return {
        "gate": "metrics",
        "step": step,
        "metric": metric,
        "model": model or None,
        "value": None,
        "limit": None,
        "by": None,
        "message": message,
    }


def gate_failures(metrics: Metrics, gates: Gates, now: dt.datetime) -> list[GateFailure]:
    """Every gate a run's metrics fail (per step, metric names may carry a model prefix:
    ``northeast.large.fast.mape``)."""
    failures: list[GateFailure] = []
    gated = {"mape", "trained_at", *gates.required}
    reported: dict[str, set[str]] = {}
    for step, values in sorted(metrics.items()):
        for name, value in sorted(values.items()):
            kind = leaf(name)
            if kind not in gated:
                continue
            if value is None or not finite(value):
                failures.append(_metrics_failure(step, name, f"{name} is not a finite number ({value})"))
                continue
            reported.setdefault(model_of(name), set()).add(kind)
            found = mape_failure(value, gates) if kind == "mape" else None
            if kind == "trained_at":
                found = age_failure(value, gates, now)
            if found is not None:
                gate = found.pop("gate")
                failures.append({"gate": gate, "step": step, "metric": name, "model": model_of(name) or None, **found})
    return failures + _missing(reported, gates)


def _missing(reported: dict[str, set[str]], gates: Gates) -> list[GateFailure]:
    """Required metrics no model reports, and those a model that reports others lacks."""
    failures = []
    for kind in gates.required:
        if not any(kind in kinds for kinds in reported.values()):
            failures.append(_metrics_failure(None, None, f"no {kind} metric: the run reported none"))
    for model, kinds in sorted(reported.items()):
        if model in gates.aggregates:
            continue
        for kind in gates.required:
            if kind not in kinds:
                name = f"{model}.{kind}" if model else kind
                failures.append(_metrics_failure(None, name, f"model {model or '(run)'} reported no {kind}"))
    return failures
