"""The health policy (shared/health.py over pipelines/health_policy.json): its shape, the
beat-the-baseline rule."""

from __future__ import annotations

import json
import math

import pytest

from shared.health import POLICY_FILE, HealthPolicy, PolicyError, beats_baseline, policy


def test_the_policy_holds_the_gates_the_margin_the_staleness_limit_and_the_baseline_rule():
    p = policy()
    raw = json.loads(POLICY_FILE.read_text())
    assert p.gates.max_mape == raw["gates"]["max_mape"] and p.gates.max_age_days == raw["gates"]["max_age_days"]
    assert p.promotion.margin == raw["promotion"]["margin"]
    assert (p.baseline.margin, p.baseline.min_share) == (raw["baseline"]["margin"], raw["baseline"]["min_share"])
    # one number for the age: the gate is the staleness limit
    assert p.stale_days == p.gates.max_age_days
    # the engagement's numbers, as they were in six places before
    assert (p.gates.max_mape, p.gates.max_age_days, p.promotion.margin, p.baseline.min_share) == (0.45, 60, 0.02, 0.75)


def test_a_broken_policy_names_every_problem(tmp_path):
    bad = tmp_path / "policy.json"
    bad.write_text(json.dumps({"gates": {"max_mape": -1}, "promotion": {"margin": 0.02, "extra": 1}}))
    with pytest.raises(PolicyError) as e:
        policy(bad)
    text = str(e.value)
    for problem in ("gates.max_mape", "gates.max_age_days", "promotion.extra", "baseline"):
        assert problem in text
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(PolicyError, match="broken.json"):
        policy(tmp_path / "broken.json")


def test_beating_the_baseline_is_a_mape_below_the_baseline_s_by_more_than_the_margin():
    # margin 0: strictly below, as the report, evaluate and CI each said on their own before
    assert beats_baseline(0.30, 0.31, 0) and not beats_baseline(0.31, 0.31, 0) and not beats_baseline(0.4, 0.3, 0)
    assert not beats_baseline(None, 0.3, 0) and not beats_baseline(0.3, None, 0)
    assert not beats_baseline(math.nan, 0.3, 0) and not beats_baseline(0.3, math.inf, 0)
    assert beats_baseline(0.30, 0.36, 0.05) and not beats_baseline(0.30, 0.35, 0.05)
    stricter = HealthPolicy.model_validate(
        policy().model_dump() | {"baseline": {"margin": 0.05, "min_share": policy().baseline.min_share}}
    )
    assert policy().beats_baseline(0.30, 0.33) and not stricter.beats_baseline(0.30, 0.33)
