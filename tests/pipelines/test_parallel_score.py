"""The score pipeline's scoring fanned out per group (issue 22): score_plan.py (production.json
checked, the work per group), the parallel step's entry script score_groups.py run by the local
backend's process pool (the same runner as training's), then score_production.py ``--served``:
the same forecast files and summary as score_production.py's whole command, and a group
without a result (its mini-batch died) served by its baseline and listed failed. With
score_plan's ``--parts`` each worker reads its group's data alone, never the whole features."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from shared.aml.local.parallel import ROWS_FILE
from tests.drivers import FORECAST_SRC, ROOT_DIR, forecast_step_module
from tests.pipelines.test_forecast_backtest import HORIZON, ORIGINS, write_lake
from tests.pipelines.test_parallel_train import parallel

prepare = forecast_step_module("prepare")
train = forecast_step_module("train")
score_plan = forecast_step_module("score_plan")
score_production = forecast_step_module("score_production")

WEEK = "2026-03-02"


def _production(models: Path, folder: Path, groups: list[str], corrupt: str) -> None:
    """Every trained group's model and booster, version 1; ``corrupt``'s pickle unreadable."""
    for group in groups:
        (folder / group).mkdir(parents=True)
        shutil.copy(models / f"{group}.pkl", folder / group / "model.pkl")
        for name in ("lgbm.txt", "lgbm.json"):
            shutil.copy(models / name, folder / group / name)
    (folder / corrupt / "model.pkl").write_bytes(b"not a pickle")
    listed = {g: {"name": g, "version": 1} for g in groups}
    (folder / "production.json").write_text(json.dumps({"week": WEEK, "models": listed}))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny lake trained once; production holds every group's model but one (served by its
    baseline as missing) and one corrupt (served by its baseline with the reason); scored both
    ways: the three steps of the pipeline (2 workers) and score_production.py's whole command."""
    tmp = tmp_path_factory.mktemp("parallel_score")
    write_lake(tmp / "curated")
    features = tmp / "features"
    argv = ["--curated", str(tmp / "curated"), "--holdout-weeks", str(HORIZON), "--origins", str(ORIGINS)]
    assert prepare.main([*argv, "--out", str(features)]) == 0
    assert train.main(["--features", str(features), "--out", str(tmp / "models")]) == 0
    groups = sorted(p.stem for p in (tmp / "models").glob("*.pkl"))
    assert len(groups) == 8
    paths = {k: tmp / k for k in ("production", "work", "parts", "served", "results", "scores", "whole")}
    _production(tmp / "models", paths["production"], groups[1:], corrupt=groups[2])
    common = ["--features", str(features), "--production", str(paths["production"])]
    assert score_plan.main([*common, "--work", str(paths["work"]), "--parts", str(paths["parts"])]) == 0
    # the workers' features folder does not exist: with --parts they read their group's data alone
    done = parallel(
        FORECAST_SRC,
        *("--entry-script", "score_groups.py", "--input-data", str(paths["work"]), "--workers", "2"),
        *("--append-row-to", str(paths["results"]), "--", "--features", str(tmp / "nowhere")),
        *("--production", str(paths["production"]), "--out", str(paths["served"]), "--parts", str(paths["parts"])),
    )
    assert done.returncode == 0, done.stderr
    assert score_production.main([*common, "--work", str(paths["work"]), "--served", str(paths["served"]),
                                  "--results", str(paths["results"]), "--out", str(paths["scores"])]) == 0  # fmt: skip
    assert score_production.main([*common, "--out", str(paths["whole"])]) == 0
    return {**paths, "features": features, "groups": groups}  # type: ignore[dict-item]


def test_each_group_is_one_work_file_and_one_row(run) -> None:
    work = {p.stem: json.loads(p.read_text()) for p in run["work"].glob("*.json")}
    assert sorted(work) == run["groups"]
    assert all(doc["baseline"] in ("baseline", "snaive") and doc["group"] == g for g, doc in work.items())
    rows = [json.loads(line) for line in (run["results"] / ROWS_FILE).read_text().splitlines()]
    assert sorted(r["group"] for r in rows) == run["groups"] and {r["outcome"] for r in rows} == {"ok"}
    served = {r["group"]: r["served"] for r in rows}
    assert served[run["groups"][0]]["reasons"] == ["no production model"]
    assert served[run["groups"][2]]["source"] == "baseline"
    assert "model.pkl cannot be read" in served[run["groups"][2]]["reasons"][0]
    assert all(served[g]["source"] == "production" for g in [run["groups"][1], *run["groups"][3:]])


def test_the_fanned_out_steps_give_the_whole_commands_files(run) -> None:
    fanned, whole = run["scores"] / "forecasts", run["whole"] / "forecasts"
    assert sorted(p.name for p in fanned.iterdir()) == sorted(p.name for p in whole.iterdir())
    for group in run["groups"]:
        assert (fanned / f"{group}.csv").read_bytes() == (whole / f"{group}.csv").read_bytes()
    a, b = (json.loads((f / "summary.json").read_text()) for f in (fanned, whole))
    assert a == b and a["failed"] == [] and a["counts"] == {"production": 6, "previous": 0, "baseline": 2}


def test_a_group_without_a_result_is_served_by_its_baseline_and_listed_failed(run, tmp_path, capsys) -> None:
    lost = run["groups"][4]  # a production group whose mini-batch died past its retries
    results = tmp_path / "results"
    results.mkdir()
    lines = (run["results"] / ROWS_FILE).read_text().splitlines()
    (results / ROWS_FILE).write_text("".join(f"{ln}\n" for ln in lines if json.loads(ln)["group"] != lost))
    served = tmp_path / "served"
    shutil.copytree(run["served"], served)
    (served / f"{lost}.csv").unlink()
    out = tmp_path / "out"
    assert score_production.main(["--features", str(run["features"]), "--production", str(run["production"]),
                                  "--work", str(run["work"]), "--served", str(served), "--results", str(results),
                                  "--out", str(out)]) == 0  # fmt: skip
    summary = json.loads((out / "forecasts" / "summary.json").read_text())
    assert summary["failed"] == [{"group": lost, "reason": "no result"}]
    assert summary["sources"][lost]["source"] == "baseline"
    table = pd.read_csv(out / "forecasts" / f"{lost}.csv")
    assert len(table) and set(table["source"]) == {"baseline"} and (table["forecast"] >= 0).all()
    assert summary["groups"] == json.loads((run["whole"] / "forecasts" / "summary.json").read_text())["groups"]
    assert f"scoring failed for 1 group(s): {lost}: no result" in capsys.readouterr().err


def test_bad_results_lines_are_skipped_and_a_row_missing_a_field_is_no_result(run, tmp_path, capsys) -> None:
    bad = run["groups"][5]  # a production group whose row lacks ``served``
    results = tmp_path / "results"
    results.mkdir()
    rows = [json.loads(ln) for ln in (run["results"] / ROWS_FILE).read_text().splitlines()]
    for row in rows:
        if row["group"] == bad:
            del row["served"]
    lines = ["not json {", json.dumps(["a", "list"]), *(json.dumps(r) for r in rows)]
    (results / ROWS_FILE).write_text("".join(f"{ln}\n" for ln in lines))
    out = tmp_path / "out"
    assert score_production.main(["--features", str(run["features"]), "--production", str(run["production"]),
                                  "--work", str(run["work"]), "--served", str(run["served"]), "--results",
                                  str(results), "--out", str(out)]) == 0  # fmt: skip
    summary = json.loads((out / "forecasts" / "summary.json").read_text())
    assert summary["failed"] == [{"group": bad, "reason": "no result"}]
    assert sorted(summary["groups"]) == run["groups"] and summary["sources"][bad]["source"] == "baseline"
    assert all((out / "forecasts" / f"{g}.csv").is_file() for g in run["groups"])
    err = capsys.readouterr().err
    assert f"skipped 2 results line(s) that are not a JSON object with a string group: {ROWS_FILE}:1, " in err


def test_the_plan_writes_each_groups_data_apart_from_the_work_files(run) -> None:
    assert sorted(p.stem for p in run["parts"].glob("*.pkl")) == run["groups"]
    assert sorted(p.name for p in run["work"].iterdir()) == [f"{g}.json" for g in run["groups"]]


def test_the_workers_without_parts_read_the_whole_features_and_serve_the_same(run, tmp_path) -> None:
    """The component's parts are optional (until the pipeline binds them): the same rows."""
    done = parallel(
        FORECAST_SRC,
        *("--entry-script", "score_groups.py", "--input-data", str(run["work"]), "--workers", "2"),
        *("--append-row-to", str(tmp_path / "results"), "--", "--features", str(run["features"])),
        *("--production", str(run["production"]), "--out", str(tmp_path / "served")),
    )
    assert done.returncode == 0, done.stderr
    rows = sorted((tmp_path / "results" / ROWS_FILE).read_text().splitlines())
    assert rows == sorted((run["results"] / ROWS_FILE).read_text().splitlines())
    for group in run["groups"]:
        assert (tmp_path / "served" / f"{group}.csv").read_bytes() == (run["served"] / f"{group}.csv").read_bytes()


def test_a_groups_missing_or_unreadable_data_fails_it_alone_and_it_is_served_by_its_baseline(run, tmp_path) -> None:
    missing, corrupt = run["groups"][3], run["groups"][5]
    parts = tmp_path / "parts"
    shutil.copytree(run["parts"], parts)
    (parts / f"{missing}.pkl").unlink()
    (parts / f"{corrupt}.pkl").write_bytes(b"\x80\x05 not a pickle")
    common = ["--features", str(run["features"]), "--production", str(run["production"])]
    done = parallel(
        FORECAST_SRC,
        *("--entry-script", "score_groups.py", "--input-data", str(run["work"]), "--workers", "2"),
        *("--append-row-to", str(tmp_path / "results"), "--", *common),
        *("--out", str(tmp_path / "served"), "--parts", str(parts)),
    )
    assert done.returncode == 0, done.stderr
    rows = {r["group"]: r for r in map(json.loads, (tmp_path / "results" / ROWS_FILE).read_text().splitlines())}
    assert rows[missing] == {"group": missing, "outcome": "failed",
                             "reason": f"no data: {missing}.pkl is missing from the batch's group files"}  # fmt: skip
    assert rows[corrupt]["outcome"] == "failed" and rows[corrupt]["reason"].startswith(f"unreadable data: {corrupt}")
    assert all(r["outcome"] == "ok" for g, r in rows.items() if g not in (missing, corrupt))
    out = tmp_path / "out"
    assert score_production.main([*common, "--work", str(run["work"]), "--served", str(tmp_path / "served"),
                                  "--results", str(tmp_path / "results"), "--out", str(out)]) == 0  # fmt: skip
    summary = json.loads((out / "forecasts" / "summary.json").read_text())
    assert [f["group"] for f in summary["failed"]] == [missing, corrupt]
    assert {summary["sources"][g]["source"] for g in (missing, corrupt)} == {"baseline"}


def test_the_plan_refuses_a_production_folder_it_cannot_score_with(run, tmp_path, capsys) -> None:
    bad = tmp_path / "production"
    bad.mkdir()
    (bad / "production.json").write_text("{")
    work = tmp_path / "work"
    assert score_plan.main(["--features", str(run["features"]), "--production", str(bad), "--work", str(work)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "production.json is not valid JSON" in err
    assert not work.exists()


def test_the_parallel_score_benchmark_runs_on_a_kept_run(run, tmp_path) -> None:
    """bench/bench_parallel_score.py at this tiny size, as a person runs it (a subprocess, numbers
    printed), so that it cannot rot unseen; its numbers are not judged here."""
    out = tmp_path / "runs" / "score-x" / "outputs"
    shutil.copytree(run["features"], out / "prepare" / "features")
    shutil.copytree(run["work"], out / "score_plan" / "work")
    shutil.copytree(run["parts"], out / "score_plan" / "parts")
    proc = subprocess.run(
        [sys.executable, str(ROOT_DIR / "bench" / "bench_parallel_score.py"), "--run", str(out.parent)]
        + ["--production", str(run["production"]), "--workers", "2"],
        cwd=ROOT_DIR, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^8 groups, 2 workers$", proc.stdout, re.M), proc.stdout
    for label in ("whole features", "the group's part"):
        assert re.search(rf"^{label}: score_groups [\d.]+ s, worker peak RSS \d+ MiB$", proc.stdout, re.M), proc.stdout
