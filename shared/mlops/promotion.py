"""The promotion rules: a pure decision about one registered candidate (no I/O but the health
policy, read once, for the limits not given).

In order:

1. **Gates.** The candidate must pass its pipeline's health gates (:class:`shared.aml.catalog.Gates`,
   the health policy's limits): a finite MAPE at most ``max_mape``, trained no more than
   ``max_age_days`` ago, every required metric present. A candidate that fails is never
   promoted, even when there is no production model: serving nothing new is better than
   serving a model the gates call unhealthy.
2. **Beats the baseline.** The candidate's MAPE must be below its group's baseline's (the
   historical average's, on the same backtest) by more than the health policy's baseline margin:
   the one rule of health (:meth:`shared.health.HealthPolicy.beats_baseline`, which the report
   uses too). A candidate that does not, or whose baseline MAPE is unknown, is not promoted: the
   group's baseline is served in its place (the score step's fallback chain).
3. **No production model:** the candidate is promoted.
4. **Stale production model** (older than ``stale_days``, by default the health policy's
   staleness limit, or whose MAPE is not a number): the candidate is promoted whatever it scores
   against it.
5. **Comparison.** With ``max_mape_increase`` (an absolute difference in MAPE, by default the
   health policy's promotion margin: with a margin of 0.02, MAPE 0.35 against production's 0.33
   is within it), the candidate is promoted when its MAPE is at most production's plus the
   margin (a newer model trained on newer data that is about as good replaces the older one),
   and kept otherwise.

The decision says which rule decided and, for a person, why.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from shared import health
from shared.aml.catalog import Gates
from shared.clock import iso
from shared.mlops.cards import Decision, ModelCard
from shared.watch.gates import age_failure, finite, mape_failure

__all__ = ["age_days", "baseline_problem", "decide", "gate_problems"]

# float noise: 0.35 - 0.33 is 0.01999..., which must count as within a 0.02 margin
_EPSILON = 1e-9


def age_days(card: ModelCard, now: dt.datetime) -> float:
    """How old the model is at ``now``, in days."""
    return (now.timestamp() - card.trained_at) / 86400


def gate_problems(card: ModelCard, gates: Gates, now: dt.datetime) -> list[str]:
    """Why ``card`` fails the gates, one sentence each; empty when it passes."""
    problems = []
    mape = card.metrics.mape
    if mape is None or not finite(mape):
        problems.append("MAPE is not a number")
    elif (failure := mape_failure(mape, gates)) is not None:
        problems.append(f"MAPE {mape:.2f} fails the {failure['limit']:.2f} gate")
    if (failure := age_failure(card.trained_at, gates, now)) is not None:
        problems.append(f"trained {failure['value']:.0f} days ago, beyond the {failure['limit']:.0f}-day gate")
    metrics = card.metrics.model_dump()
    for name in gates.required:
        if name in metrics and metrics[name] is None:
            problems.append(f"{name} is missing or not a number")
    return problems


def baseline_problem(mape: float, baseline: float | None) -> str | None:
    """Why a model of MAPE ``mape`` (it passed the gates) does not beat its baseline, by the
    health policy's rule; None when it does."""
    policy = health.policy()
    if policy.beats_baseline(mape, baseline):
        return None
    if baseline is None:
        return f"MAPE {mape:.2f} passes the gates, but its baseline's MAPE is not known"
    why = f"MAPE {mape:.2f} passes the gates, but does not beat its baseline's {baseline:.2f}"
    if policy.baseline.margin > 0:
        why += f" by more than the {policy.baseline.margin:.2f} margin"
    return why


def _limits(max_mape_increase: float | None, stale_days: float | None) -> tuple[float, float]:
    """The margin and the staleness limit: as given, else the health policy's."""
    policy = health.policy()
    return (
        policy.promotion.margin if max_mape_increase is None else max_mape_increase,
        policy.stale_days if stale_days is None else stale_days,
    )


def decide(
    candidate: ModelCard,
    production: ModelCard | None,
    gates: Gates,
    now: dt.datetime,
    max_mape_increase: float | None = None,
    stale_days: float | None = None,
) -> Decision:
    """Promote ``candidate`` or keep ``production`` (see the module's rules); the margin and the
    staleness limit are the health policy's unless given."""
    max_mape_increase, stale_days = _limits(max_mape_increase, stale_days)
    version = candidate.version
    if version is None:
        raise ValueError("decide on a registered candidate (its version is not set)")
    if production is not None and production.version == candidate.version:
        raise ValueError(f"version {candidate.version} of {candidate.name} is already in production")

    def result(outcome: Literal["promoted", "kept"], rule: str, reason: str) -> Decision:
        return Decision(
            outcome=outcome,
            rule=rule,
            reason=reason,
            decided_at=iso(now),
            candidate_version=version,
            production_version=production.version if production is not None else None,
        )

    incumbent = "no production model" if production is None else f"production stays version {production.version}"
    problems = gate_problems(candidate, gates, now)
    mape = candidate.metrics.mape
    if problems or mape is None:
        return result("kept", "gate", f"{'; '.join(problems)}: not promoted ({incumbent})")
    if (why := baseline_problem(mape, candidate.metrics.baseline_mape)) is not None:
        return result("kept", "baseline", f"{why}: not promoted ({incumbent})")
    if production is None:
        return result("promoted", "no_production", f"MAPE {mape:.2f} passes the gates; no production model yet")
    age = age_days(production, now)
    if age > stale_days:
        reason = f"production (version {production.version}) is {age:.0f} days old: stale, replaced"
        return result("promoted", "stale_production", reason)
    theirs = production.metrics.mape
    if theirs is None:
        reason = f"production's MAPE (version {production.version}) is not a number: replaced by MAPE {mape:.2f}"
        return result("promoted", "stale_production", reason)
    worse_by = mape - theirs
    # two decimals, or three when two would hide the difference ("0.22 worse than 0.22")
    digits = 2 if round(mape, 2) != round(theirs, 2) or abs(worse_by) <= _EPSILON else 3
    ours, prod, by = f"{mape:.{digits}f}", f"{theirs:.{digits}f}", f"{abs(worse_by):.{digits}f}"
    if abs(worse_by) <= _EPSILON:
        return result("promoted", "better", f"MAPE {ours} matches production's {prod}: the newer model is promoted")
    if worse_by < 0:
        return result("promoted", "better", f"MAPE {ours} beats production's {prod}")
    if worse_by <= max_mape_increase + _EPSILON:
        reason = (
            f"MAPE {ours} is worse than production's {prod} by {by}, "
            f"within the {max_mape_increase:.2f} margin: the newer model is promoted"
        )
        return result("promoted", "within_margin", reason)
    reason = (
        f"MAPE {ours} is worse than production's {prod} by {by}, beyond the {max_mape_increase:.2f} margin: {incumbent}"
    )
    return result("kept", "beyond_margin", reason)
