"""The forecast pipeline's metrics against hand-computed values on a tiny series, the backtest's
origins, and evaluate's tables (mean and spread over origins, the oracle, the targets)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from shared.health import policy
from tests.drivers import forecast_step_module

lib = forecast_step_module("forecast_lib")
evaluate = forecast_step_module("evaluate")
#: what the catalog passes the step (the health policy's)
MAX_MAPE, MARGIN = policy().gates.max_mape, policy().baseline.margin

ACTUAL = np.array([0.0, 2.0, 4.0, 10.0])
FORECAST = np.array([1.0, 1.0, 5.0, 8.0])


def test_metrics_on_a_tiny_series() -> None:
    # MAPE over actual > 0: |1-2|/2, |5-4|/4, |8-10|/10 = 0.5, 0.25, 0.2
    assert lib.mape(ACTUAL, FORECAST) == pytest.approx((0.5 + 0.25 + 0.2) / 3)
    # a floor keeps small actuals out (currency targets): only 4 and 10 are above 3
    assert lib.mape(ACTUAL, FORECAST, floor=3.0) == pytest.approx((0.25 + 0.2) / 2)
    assert math.isnan(lib.mape(ACTUAL, FORECAST, floor=10.0))
    # WAPE: (1 + 1 + 1 + 2) / 16; bias: 15 / 16
    assert lib.wape(ACTUAL, FORECAST) == pytest.approx(5 / 16)
    assert lib.bias(ACTUAL, FORECAST) == pytest.approx(15 / 16)
    # RMSE_0 over the zero actual only; RMSE_All over all four
    assert lib.rmse_0(ACTUAL, FORECAST) == pytest.approx(1.0)
    assert lib.rmse(ACTUAL, FORECAST) == pytest.approx(math.sqrt((1 + 1 + 1 + 4) / 4))
    # MASE: errors over each row's scale (a scale of 0 is left out)
    scale = np.array([2.0, 2.0, 0.0, 4.0])
    assert lib.mase(ACTUAL, FORECAST, scale) == pytest.approx((0.5 + 0.5 + 0.5) / 3)
    assert math.isnan(lib.wape(np.zeros(3), np.ones(3))) and math.isnan(lib.bias(np.zeros(3), np.ones(3)))


def test_backtest_origins_are_back_to_back_horizons_ending_at_the_lake_end() -> None:
    # 104 weeks, 8-week horizons, 4 origins: the holdout (week 96) and 3 before it, plus one
    # in front that only validates the first
    assert lib.origin_indices(104, 8, 4) == [64, 72, 80, 88, 96]
    assert lib.origin_indices(104, 8, 1) == [88, 96]
    # too little history for more: what fits, at least the holdout, and a validation-only
    # origin when it has 16 weeks before it
    assert lib.origin_indices(40, 8, 4) == [24, 32]
    assert lib.origin_indices(26, 8, 4) == [18]
    assert lib.origin_indices(20, 8, 4) == [12]


def _backtest() -> pd.DataFrame:
    """Two origins, one group of one series, two weeks each."""
    rows = []
    for origin, actual, blend, base in (
        ("2026-01-05", [2.0, 4.0], [2.5, 4.0], [2.0, 2.0]),
        ("2026-01-19", [10.0, 0.0], [8.0, 1.0], [5.0, 5.0]),
    ):
        for i in range(2):
            rows.append(
                {
                    "origin": origin,
                    "group": "r.large.fast",
                    "series": "S1|A",
                    "store_id": "S1",
                    "sku": "A",
                    "week_start": (pd.Timestamp(origin) + pd.Timedelta(days=7 * i)).strftime("%Y-%m-%d"),
                    "actual": actual[i],
                    "forecast": blend[i],
                    "old_blend": blend[i],
                    "lasso": blend[i],
                    "mlp": blend[i],
                    "lgbm": blend[i],
                    "seasonal": blend[i],
                    "baseline": base[i],
                    "snaive": base[i] * 1.2,
                    "oracle": actual[i],
                    "scale": 2.0,
                }
            )
    return pd.DataFrame(rows)


def test_evaluate_means_and_spreads_over_the_origins() -> None:
    long = evaluate.per_origin(_backtest(), 0.0)
    table = evaluate.model_table(long, 123.0, "2026-01-19", MARGIN)
    group = table.set_index("model").loc["r.large.fast"]
    # origin 1: MAPE (0.25 + 0) / 2 = 0.125, WAPE 0.5/6; origin 2: MAPE 0.2 (the zero actual out), WAPE 3/10
    assert group["mape"] == pytest.approx((0.125 + 0.2) / 2)
    assert group["mape_sd"] == pytest.approx(0.0375)
    assert group["mape_holdout"] == pytest.approx(0.2)
    assert group["wape"] == pytest.approx((0.5 / 6 + 3 / 10) / 2)
    assert group["bias"] == pytest.approx((6.5 / 6 + 9 / 10) / 2)
    assert group["rmse_0"] == pytest.approx(1.0)  # only the second origin has a zero actual
    # the baseline: origin 1 MAPE (0 + 0.5) / 2, origin 2 0.5
    assert group["baseline_mape"] == pytest.approx((0.25 + 0.5) / 2)
    assert group["mape_reduction"] == pytest.approx((0.375 - 0.1625) / 0.375)
    assert group["oracle_mape"] == 0 and group["oracle_wape"] == 0
    assert group["trained_at"] == 123.0 and group["n_origins"] == 2
    # the columns shared/tooling/report/ reads, and the old ones, are kept
    for col in ("model", "mape", "rmse_0", "rmse_all", "baseline_mape", "mape_reduction", "trained_at", "lasso_mape"):
        assert col in table.columns
    assert list(table["model"]) == ["r.large.fast", "overall"]


def test_evaluate_targets_against_the_oracle() -> None:
    long = evaluate.per_origin(_backtest(), 0.0)
    summary = evaluate.summarise(long, MAX_MAPE)
    goals = evaluate.targets(summary, evaluate.model_table(long, 0.0, "2026-01-19", MARGIN), MAX_MAPE)
    checks = {c["target"]: c for c in goals["checks"]}
    # the oracle here is the actual itself: nothing can be within 10% of a WAPE of 0
    assert not checks["wape"]["met"] and not goals["met"]
    assert checks["beats_baselines"]["value"] == 2 and checks["beats_baselines"]["met"]
    mean = summary[(summary["origin"] == "mean") & (summary["velocity"] == "all")].set_index("family")
    assert mean.loc["blend", "mape"] == pytest.approx(0.1625)
    assert mean.loc["blend", "models_le_045"] == 1


def test_evaluate_with_a_mape_floor() -> None:
    long = evaluate.per_origin(_backtest(), 3.0)
    table = evaluate.model_table(long, 0.0, "2026-01-19", MARGIN).set_index("model")
    # actuals above 3: 4 (origin 1: |4-4|/4 = 0) and 10 (origin 2: 0.2)
    assert table.loc["r.large.fast", "mape"] == pytest.approx(0.1)


def test_evaluate_judges_by_the_gate_and_the_baseline_rule_it_is_given() -> None:
    # the group: MAPE 0.1625 against the baseline's 0.375 (0.2125 better)
    long = evaluate.per_origin(_backtest(), 0.0)
    beats = {
        m: evaluate.model_table(long, 0.0, "2026-01-19", m).set_index("model").loc["r.large.fast"] for m in (0.2, 0.25)
    }
    assert bool(beats[0.2]["beats_baseline"]) and not bool(beats[0.25]["beats_baseline"])
    for gate, within in ((0.17, 1), (0.16, 0)):
        mean = evaluate.summarise(long, gate).query("origin == 'mean' and velocity == 'all'").set_index("family")
        assert mean.loc["blend", "models_le_045"] == within
    goals = evaluate.targets(evaluate.summarise(long, 0.17), evaluate.model_table(long, 0.0, "2026-01-19", 0.0), 0.17)
    assert "models at MAPE <= 0.17" in {c["target"]: c for c in goals["checks"]}["models_le_045"]["text"]
