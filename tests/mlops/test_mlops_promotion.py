"""The promotion rules: a pure decision about one registered candidate against the production model."""

from __future__ import annotations

import datetime as dt
import json
import math

import pytest

from shared.aml.catalog import Gates
from shared.mlops.cards import Metrics, ModelCard, model_name
from shared.mlops.promotion import decide, gate_problems

NOW = dt.datetime(2026, 11, 28, 9, 30, tzinfo=dt.UTC)
GATES = Gates()  # the forecast pipeline's: MAPE <= 0.45, trained within 60 days


def card(version: int | None, mape: float | None, days_old: float = 1, **metrics: float) -> ModelCard:
    return ModelCard(
        name="northeast.large.fast",
        version=version,
        metrics=Metrics(**{"mape": mape, "rmse_all": 4.2, "baseline_mape": 0.5, **metrics}),
        trained_at=(NOW - dt.timedelta(days=days_old)).timestamp(),
        run_id=f"forecast-run-{version}",
        data_versions={"shipments_weekly": "v1@2026-11-23"},
    )


def test_a_better_candidate_is_promoted():
    d = decide(card(4, 0.31), card(3, 0.33, days_old=10), GATES, NOW)
    assert (d.outcome, d.rule) == ("promoted", "better")
    assert d.reason == "MAPE 0.31 beats production's 0.33"
    assert (d.candidate_version, d.production_version, d.decided_at) == (4, 3, "2026-11-28T09:30:00Z")


def test_an_equal_candidate_is_promoted_as_the_newer_model():
    assert decide(card(4, 0.33), card(3, 0.33), GATES, NOW).rule == "better"


def test_a_candidate_worse_within_the_margin_is_promoted():
    d = decide(card(4, 0.35), card(3, 0.33), GATES, NOW)  # 0.35 - 0.33 is 0.0199... in floats
    assert (d.outcome, d.rule) == ("promoted", "within_margin")
    assert d.reason == (
        "MAPE 0.35 is worse than production's 0.33 by 0.02, within the 0.02 margin: the newer model is promoted"
    )


def test_a_candidate_worse_beyond_the_margin_is_kept():
    d = decide(card(4, 0.38), card(3, 0.33), GATES, NOW)
    assert (d.outcome, d.rule) == ("kept", "beyond_margin")
    assert d.reason == (
        "MAPE 0.38 is worse than production's 0.33 by 0.05, beyond the 0.02 margin: production stays version 3"
    )


def test_the_margin_is_a_setting():
    assert decide(card(4, 0.38), card(3, 0.33), GATES, NOW, max_mape_increase=0.1).rule == "within_margin"
    assert decide(card(4, 0.34), card(3, 0.33), GATES, NOW, max_mape_increase=0.0).rule == "beyond_margin"


def test_the_margin_and_the_staleness_limit_are_the_health_policy_s_unless_given():
    from shared.health import policy
    from shared.settings import Settings

    margin, stale = policy().promotion.margin, policy().stale_days
    assert "promotion_margin" not in Settings.model_fields  # the policy's, not an app setting
    base = 0.30
    assert decide(card(4, base + margin - 0.001), card(3, base), GATES, NOW).rule == "within_margin"
    assert decide(card(4, base + margin + 0.001), card(3, base), GATES, NOW).rule == "beyond_margin"
    assert decide(card(4, 0.44), card(3, 0.20, days_old=stale + 1), GATES, NOW).rule == "stale_production"
    assert decide(card(4, 0.44), card(3, 0.20, days_old=stale - 1), GATES, NOW).rule == "beyond_margin"


def test_a_stale_production_model_is_replaced_even_by_a_worse_candidate():
    d = decide(card(4, 0.44), card(3, 0.20, days_old=75), GATES, NOW)
    assert (d.outcome, d.rule) == ("promoted", "stale_production")
    assert d.reason == "production (version 3) is 75 days old: stale, replaced"


def test_a_production_model_of_exactly_the_age_limit_is_not_stale():
    assert decide(card(4, 0.44), card(3, 0.20, days_old=60), GATES, NOW).rule == "beyond_margin"


def test_a_production_model_without_a_mape_is_replaced():
    d = decide(card(4, 0.40), card(3, None), GATES, NOW)
    assert (d.outcome, d.rule) == ("promoted", "stale_production")
    assert "not a number" in d.reason


def test_a_candidate_failing_the_mape_gate_is_kept_even_when_better_than_production():
    d = decide(card(4, 0.52), card(3, 0.60), GATES, NOW)
    assert (d.outcome, d.rule) == ("kept", "gate")
    assert d.reason == "MAPE 0.52 fails the 0.45 gate: not promoted (production stays version 3)"


def test_a_candidate_failing_the_gates_is_not_promoted_even_with_no_production_model():
    d = decide(card(1, 0.52), None, GATES, NOW)
    assert (d.outcome, d.rule, d.production_version) == ("kept", "gate", None)
    assert d.reason == "MAPE 0.52 fails the 0.45 gate: not promoted (no production model)"


def test_a_candidate_trained_too_long_ago_fails_the_age_gate():
    d = decide(card(4, 0.30, days_old=61), card(3, 0.33), GATES, NOW)
    assert (d.outcome, d.rule) == ("kept", "gate")
    assert "trained 61 days ago, beyond the 60-day gate" in d.reason


def test_the_first_healthy_candidate_is_promoted():
    d = decide(card(1, 0.31), None, GATES, NOW)
    assert (d.outcome, d.rule, d.production_version) == ("promoted", "no_production", None)
    assert d.reason == "MAPE 0.31 passes the gates; no production model yet"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, None])
def test_a_candidate_whose_mape_is_not_a_finite_number_fails_the_gates(bad):
    c = card(2, bad)
    assert c.metrics.mape is None
    d = decide(c, None, GATES, NOW)
    assert (d.outcome, d.rule) == ("kept", "gate") and "MAPE is not a number" in d.reason


def test_a_required_metric_that_is_missing_fails_the_gates():
    gates = Gates(required=("mape", "wape"))
    assert gate_problems(card(2, 0.3), gates, NOW) == ["wape is missing or not a number"]
    assert gate_problems(card(2, 0.3, wape=0.2), gates, NOW) == []


def test_stricter_gates_apply():
    d = decide(card(4, 0.31), card(3, 0.33), Gates(max_mape=0.3), NOW)
    assert d.rule == "gate" and "MAPE 0.31 fails the 0.30 gate" in d.reason


def test_only_a_registered_candidate_other_than_production_is_decided():
    with pytest.raises(ValueError, match="version is not set"):
        decide(card(None, 0.3), None, GATES, NOW)
    with pytest.raises(ValueError, match="already in production"):
        decide(card(3, 0.3), card(3, 0.3), GATES, NOW)


def test_a_card_is_json_safe_and_round_trips():
    c = card(2, math.nan, rmse_0=math.inf)
    text = c.to_json().decode()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["metrics"]["mape"] is None
    assert ModelCard.from_json(text) == c


def test_a_card_names_a_region_format_and_velocity():
    assert model_name("NorthEast", "large", "fast") == "northeast.large.fast"
    for bad in ("northeast.large", "north east.large.fast", "a.b.c.d", ""):
        with pytest.raises(ValueError):
            ModelCard(name=bad, trained_at=0, run_id="r")
    with pytest.raises(ValueError, match="finite"):
        ModelCard(name="a.b.c", trained_at=math.nan, run_id="r")


@pytest.mark.parametrize(
    ("mape", "theirs", "reason"),
    [
        (0.224, 0.220, "MAPE 0.224 is worse than production's 0.220 by 0.004, within the 0.02 margin"),
        (0.219, 0.2212, "MAPE 0.219 beats production's 0.221"),
        (0.25, 0.25, "MAPE 0.25 matches production's 0.25: the newer model is promoted"),
    ],
)
def test_a_reason_never_hides_the_difference_it_decided_on(mape, theirs, reason):
    """'0.22 is worse than 0.22 by 0.00' says nothing: a third decimal when two hide it."""
    d = decide(card(2, mape), card(1, theirs), GATES, NOW)
    assert d.outcome == "promoted" and d.reason.startswith(reason), d.reason


@pytest.mark.parametrize(
    ("mape", "baseline", "said"),
    [
        (0.40, 0.40, "0.40 passes the gates, but does not beat its baseline's 0.40"),
        # better than the historical average, but by less than the policy's margin (0.02)
        (0.39, 0.40, "0.39 passes the gates, but does not beat its baseline's 0.40"),
        (0.385, 0.40, "0.39 passes the gates, but does not beat its baseline's 0.40"),
    ],
)
def test_a_candidate_that_does_not_beat_its_baseline_by_the_margin_is_never_promoted(mape, baseline, said):
    # passes the gates (<= 0.45) and there is no production model, but the historical
    # average does as well, or nearly: the baseline is served instead
    d = decide(card(1, mape, baseline_mape=baseline), None, GATES, NOW)
    assert (d.outcome, d.rule) == ("kept", "baseline")
    assert d.reason == f"MAPE {said} by more than the 0.02 margin: not promoted (no production model)"


def test_a_candidate_that_beats_its_baseline_by_more_than_the_margin_is_promoted():
    d = decide(card(1, 0.37, baseline_mape=0.40), None, GATES, NOW)
    assert (d.outcome, d.reason) == ("promoted", "MAPE 0.37 passes the gates; no production model yet")
    # nor over a production model, however much better than it
    d = decide(card(4, 0.30, baseline_mape=0.29), card(3, 0.44), GATES, NOW)
    assert (d.outcome, d.rule) == ("kept", "baseline")
    assert d.reason.endswith("not promoted (production stays version 3)")


def test_a_candidate_whose_baseline_is_unknown_is_not_promoted():
    bare = card(1, 0.30).model_copy(update={"metrics": Metrics(mape=0.30)})
    d = decide(bare, None, GATES, NOW)
    assert (d.outcome, d.rule) == ("kept", "baseline")
    assert "its baseline's MAPE is not known" in d.reason


def test_promotion_and_the_report_share_one_rule_of_health():
    from shared import health

    policy = health.policy()
    for mape, base in ((0.30, 0.50), (0.40, 0.40), (0.41, 0.40)):
        promoted = decide(card(1, mape, baseline_mape=base), None, GATES, NOW).outcome == "promoted"
        assert promoted == policy.beats_baseline(mape, base)
