"""score.py's forecasts.csv, the file people open (issue 21, issue 24 item 20): a text cell that
a spreadsheet would run as a formula is written behind a single quote, numbers as they are,
by the rule the app applies to the CSV files it publishes (shared/ingestion/write.py); and a
run with no model for any group says so in one line."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.drivers import forecast_step_module
from tests.pipelines.test_forecast_real_lakes import run_steps, write_lake

prepare = forecast_step_module("prepare")
score = forecast_step_module("score")

HOSTILE = "=cmd|' /C calc'!A0"


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
