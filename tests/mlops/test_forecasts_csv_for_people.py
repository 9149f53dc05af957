"""The published forecasts (``curated/forecasts/v1/week=<W>/<group>.csv``) are for people: a
planner opens them in a spreadsheet or Power BI. A store id or SKU starting with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return is written behind a single quote (OWASP's
CSV-injection advice), so that opening the file never runs a formula; numbers are written as
numbers (issue 24, item 20)."""

from __future__ import annotations

import csv

import pandas as pd

from tests.drivers import forecast_step_module


def test_the_forecast_csv_neutralises_formula_prefixes(tmp_path):
    score_production = forecast_step_module("score_production")
    out = pd.DataFrame(
        {
            "store_id": ["=cmd|' /C calc'!A0", "S1", "@x", "-2+3"],
            "sku": ["+SKU", "SKU-1", "SKU-2", "\tSKU"],
            "week_start": ["2026-12-28"] * 4,
            "forecast": [-1.5, 2.0, 3.0, 4.0],
            "model": ["m"] * 4,
            "model_version": [1, 1, 1, 1],
            "source": ["production"] * 4,
            "new_sku": [False] * 4,
        }
    )
    path = tmp_path / "g.csv"
    score_production.write_forecasts(out, path)
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["store_id"] for r in rows] == ["'=cmd|' /C calc'!A0", "S1", "'@x", "'-2+3"]
    assert [r["sku"] for r in rows] == ["'+SKU", "SKU-1", "SKU-2", "'\tSKU"]
    assert rows[0]["forecast"] == "-1.5" and rows[0]["model_version"] == "1"
    assert list(out["store_id"])[0] == "=cmd|' /C calc'!A0"  # the frame itself is not changed
