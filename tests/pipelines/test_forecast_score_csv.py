"""score.py's forecasts.csv, the file people open (issue 21, issue 24 item 20): a text cell that
a spreadsheet would run as a formula is written behind a single quote, numbers as they are,
by the rule the app applies to the CSV files it publishes (shared/ingestion/write.py); and a
run with no model for any group says so in one line."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from shared.ingestion.write import neutralise_formulas as app_rule
from tests.drivers import forecast_step_module
from tests.pipelines.test_forecast_real_lakes import run_steps, write_lake

forecast_lib = forecast_step_module("forecast_lib")
prepare = forecast_step_module("prepare")
score = forecast_step_module("score")

HOSTILE = "=cmd|' /C calc'!A0"
CELLS = [HOSTILE, "+1+2", "-x", "@SUM(A1)", "\tx", "\rx", "-5", "+3.25", "-1e5", ".5", "-", "+", "a=b", "",
         "S1", "12", "-5\n", " =x", "=", "-.5e-3", "1,5"]  # fmt: skip
QUOTED = {HOSTILE, "+1+2", "-x", "@SUM(A1)", "\tx", "\rx", "-", "+", "-5\n", "="}


def test_the_pipelines_rule_quotes_formulas_and_leaves_numbers() -> None:
    frame = pd.DataFrame({"text": CELLS, "number": range(len(CELLS))}).assign(negative=-1.5)
    out = forecast_lib.neutralise_formulas(frame)
    assert out["text"].tolist() == [("'" + c if c in QUOTED else c) for c in CELLS]
    pd.testing.assert_frame_equal(out[["number", "negative"]], frame[["number", "negative"]])
    assert forecast_lib.for_people(-5.0) == -5.0 and forecast_lib.for_people(None) is None


def test_the_pipelines_rule_is_the_apps() -> None:
    """The steps cannot import the app's ``shared`` on AML: forecast_lib holds the same rule."""
    theirs = app_rule(pa.table({"text": pa.array(CELLS, pa.string())})).column("text").to_pylist()
    ours = forecast_lib.neutralise_formulas(pd.DataFrame({"text": CELLS}))["text"].tolist()
    assert ours == theirs


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The pipeline's steps on a lake whose first store is named like a spreadsheet formula."""
    tmp = tmp_path_factory.mktemp("hostile")
    stores = [
        (HOSTILE, "00101", "r0", "large", 30000, 12000, 70000, 38.0),
        ("S2", "00101", "r0", "small", 30000, 12000, 70000, 38.0),
        ("S3", "00202", "r1", "large", 30000, 12000, 70000, 38.0),
    ]
    write_lake(tmp / "curated", stores=stores)
    return run_steps(tmp / "curated", tmp)


def test_a_store_id_like_a_formula_is_written_behind_a_quote(hostile: dict[str, Path]) -> None:
    text = (hostile["scores"] / "forecasts.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    mine = [r for r in rows if HOSTILE in r["store_id"]]
    assert mine and {r["store_id"] for r in mine} == {"'" + HOSTILE}
    assert all(r["series"].startswith("'" + HOSTILE + "|") for r in mine)
    assert not any(value.startswith(("=", "@")) for r in rows for value in r.values())
    for r in rows:  # numbers as they are
        float(r["forecast"]), float(r["baseline"])
    assert {r["store_id"] for r in rows} - {"'" + HOSTILE} == {"S2", "S3"}


def test_score_without_any_model_says_so_in_one_line(hostile: dict[str, Path], tmp_path: Path, capsys) -> None:
    empty = tmp_path / "models"
    empty.mkdir()
    code = score.main(["--features", str(hostile["features"]), "--models", str(empty), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    groups = sorted(pd.read_csv(hostile["features"] / "features.csv")["group"].unique())
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("score: nothing to score: no model") and ", ".join(groups) in err
    assert str(empty) in err
    assert not (tmp_path / "o").exists()
