"""The train step fanned out per group (issue 22): train_global.py (the LightGBM member, once),
the parallel step's entry script train_groups.py run by the local backend's process pool
(``shared.aml.local.parallel``, AML's contract: ``init()`` once per worker, ``run`` per
mini-batch), then train.py ``--fitted``: the same models folder as train.py's whole command,
and a group whose fit raises fails alone, listed in the manifest with a one-line reason. The
workers are never told where prepare's features are: each reads its group's data alone
(``<boosters>/groups/<group>.pkl``, train_global's), and fits exactly what the whole table fits."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shared import ROOT
from shared.aml.local.parallel import ROWS_FILE
from tests.drivers import FORECAST_SRC, forecast_step_module
from tests.pipelines.test_forecast_backtest import HORIZON, ORIGINS, write_lake

prepare = forecast_step_module("prepare")
train = forecast_step_module("train")
train_global = forecast_step_module("train_global")
backtest = forecast_step_module("backtest")
pergroup = forecast_step_module("pergroup")

BROKEN = "r1.large.fast"


def parallel(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """The local backend's parallel runner, as a step runs it (from the task's code folder)."""
    return subprocess.run(
        [sys.executable, "-m", "shared.aml.local.parallel", *args],
        cwd=cwd,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny lake whose group BROKEN has a feature its members cannot take (income "corrupt": the
    LASSO raises), trained both ways: the pipeline's three steps and train.py's whole command."""
    tmp = tmp_path_factory.mktemp("parallel_train")
    write_lake(tmp / "curated")
    features = tmp / "features"
    argv = ["--curated", str(tmp / "curated"), "--holdout-weeks", str(HORIZON), "--origins", str(ORIGINS)]
    assert prepare.main([*argv, "--out", str(features)]) == 0
    table = pd.read_csv(features / "features.csv", dtype=str, keep_default_na=False)
    assert BROKEN in set(table["group"])
    table.loc[table["group"] == BROKEN, "income_k"] = "corrupt"
    table.to_csv(features / "features.csv", index=False)
    paths = {k: tmp / k for k in ("boosters", "work", "fitted", "results", "models", "whole")}
    assert train_global.main(["--features", str(features), "--boosters", str(paths["boosters"]),
                              "--work", str(paths["work"])]) == 0  # fmt: skip
    done = parallel(
        FORECAST_SRC,
        *("--entry-script", "train_groups.py", "--input-data", str(paths["work"]), "--workers", "2"),
        *("--append-row-to", str(paths["results"]), "--"),
        *("--boosters", str(paths["boosters"]), "--out", str(paths["fitted"])),  # as the component: no features
    )
    assert done.returncode == 0, done.stderr
    assert train.main(["--features", str(features), "--boosters", str(paths["boosters"]),
                       "--fitted", str(paths["fitted"]), "--out", str(paths["models"])]) == 0  # fmt: skip
    assert train.main(["--features", str(features), "--out", str(paths["whole"])]) == 0
    return {**paths, "features": features}


def test_each_group_is_one_row_and_a_group_whose_fit_raises_fails_alone(run):
    rows = [json.loads(line) for line in (run["results"] / ROWS_FILE).read_text().splitlines()]
    groups = sorted(p.stem for p in run["work"].glob("*.json"))
    assert sorted(r["group"] for r in rows) == groups and len(groups) == 8
    [failed] = [r for r in rows if r["outcome"] == "failed"]
    assert failed["group"] == BROKEN and failed["reason"].startswith("ValueError: ")
    assert "\n" not in failed["reason"] and "corrupt" in failed["reason"]
    assert all(r["outcome"] == "ok" and r["reason"] == "" for r in rows if r["group"] != BROKEN)


def test_trains_lists_the_failed_groups_and_models_every_other(run):
    manifest = json.loads((run["models"] / "manifest.json").read_text())
    assert [f["group"] for f in manifest["failed"]] == [BROKEN]
    assert manifest["failed"][0]["reason"].startswith("ValueError: ")
    trained = {m["group"] for m in manifest["models"]}
    assert trained == {p.stem for p in run["work"].glob("*.json")} - {BROKEN}
    assert {p.stem for p in run["models"].glob("*.pkl")} == trained
    assert (run["models"] / "lgbm.txt").exists()
    backtest = pd.read_csv(run["models"] / "backtest.csv")
    assert BROKEN not in set(backtest["group"]) and set(backtest["group"]) == trained


def test_the_parallel_steps_give_the_models_of_the_whole_command(run):
    """The same per-group function in both: the same forecasts at every origin, the same weights."""
    fanned = pd.read_csv(run["models"] / "backtest.csv")
    whole = pd.read_csv(run["whole"] / "backtest.csv")
    pd.testing.assert_frame_equal(fanned, whole)
    a = json.loads((run["models"] / "manifest.json").read_text())
    b = json.loads((run["whole"] / "manifest.json").read_text())
    assert [(m["group"], m["weights"], m["lasso_weight"]) for m in a["models"]] == [
        (m["group"], m["weights"], m["lasso_weight"]) for m in b["models"]
    ]
    assert a["failed"] == b["failed"]


def test_train_global_writes_each_groups_data_and_only_its_rows(run):
    parts = run["boosters"] / pergroup.PARTS
    work = sorted(p.stem for p in run["work"].glob("*.json"))
    assert sorted(p.stem for p in parts.glob("*.pkl")) == work
    assert not list(run["work"].glob("*.pkl"))  # every file of the work folder is a mini-batch
    with open(parts / f"{work[0]}.pkl", "rb") as f:
        part = pickle.load(f)
    assert set(part["table"]["group"]) == {work[0]} and len(part["units"]) == part["table"]["series"].nunique()
    assert set(part["known"]["zip_code"]) <= set(part["table"]["zip_code"])


def test_a_groups_data_answers_as_the_whole_tables_bit_for_bit(run):
    """Every statistic a group's fit and forecast read, and the fit itself (same seed), from its
    part alone and from the whole table: exactly equal."""
    whole = backtest.Data(run["features"])
    boosters = pergroup.load_boosters(run["boosters"])[0]
    for group in sorted(set(whole.table["group"]))[:3]:
        part = pergroup.read_part(run["boosters"] / pergroup.PARTS, group)
        for origin in whole.origins:
            a, b = whole.train_rows(origin, group), part.train_rows(origin, group)
            pd.testing.assert_frame_equal(a, b, check_exact=True)
            a, b = whole.horizon_rows(origin, group=group), part.horizon_rows(origin, group=group)
            pd.testing.assert_frame_equal(a, b, check_exact=True)
            pd.testing.assert_frame_equal(whole.baselines(a, origin), part.baselines(b, origin), check_exact=True)
            for x, y in zip(whole.lgbm_features(a, origin), part.lgbm_features(b, origin), strict=True):
                np.testing.assert_array_equal(np.asarray(x, float), np.asarray(y, float))
            np.testing.assert_array_equal(whole.upper_bound(a, origin), part.upper_bound(b, origin))
        fa = pergroup.fit_one(whole, group, boosters, 7, 1.0)
        fb = pergroup.fit_one(part, group, boosters, 7, 1.0)
        assert (fa.outcome, fa.reason) == (fb.outcome, fb.reason)
        pd.testing.assert_frame_equal(fa.members, fb.members, check_exact=True)


def test_a_groups_missing_or_unreadable_data_fails_that_group_alone(run, tmp_path):
    groups = sorted(p.stem for p in run["work"].glob("*.json") if p.stem != BROKEN)
    missing, corrupt, foreign, fine = groups[:4]
    boosters = tmp_path / "boosters"
    shutil.copytree(run["boosters"], boosters)
    parts = boosters / pergroup.PARTS
    (parts / f"{missing}.pkl").unlink()
    (parts / f"{corrupt}.pkl").write_bytes((parts / f"{corrupt}.pkl").read_bytes()[:100])  # truncated
    shutil.copy(parts / f"{fine}.pkl", parts / f"{foreign}.pkl")  # another group's file under its name
    work = tmp_path / "work"
    pergroup.write_work(work, [missing, corrupt, foreign, fine])
    done = parallel(
        FORECAST_SRC,
        *("--entry-script", "train_groups.py", "--input-data", str(work), "--workers", "2"),
        *(
            "--append-row-to",
            str(tmp_path / "results"),
            "--",
            "--boosters",
            str(boosters),
            "--out",
            str(tmp_path / "fit"),
        ),
    )
    assert done.returncode == 0, done.stderr
    rows = {r["group"]: r for r in map(json.loads, (tmp_path / "results" / ROWS_FILE).read_text().splitlines())}
    assert rows[fine]["outcome"] == "ok" and (tmp_path / "fit" / f"{fine}.pkl").is_file()
    assert rows[missing]["reason"] == f"no data: {missing}.pkl is missing from the batch's group files"
    assert rows[corrupt]["reason"].startswith(f"unreadable data: {corrupt}.pkl: ")
    assert rows[foreign]["reason"] == f"{foreign}.pkl is not the data of {foreign}"
    for g in (missing, corrupt, foreign):
        assert rows[g]["outcome"] == "failed" and "\n" not in rows[g]["reason"]
        assert pergroup.load_fits(tmp_path / "fit", [g])[g].outcome == "failed"  # train lists it failed


ENTRY = """
import os, sys, time
from pathlib import Path

def init():
    out = Path(sys.argv[sys.argv.index("--log") + 1])
    with open(out / "init.txt", "a") as f:
        f.write(f"{os.getpid()}\\n")

def run(mini_batch, mini_batch_context):
    rows = []
    for path in mini_batch:
        name = Path(path).stem
        if name == "crash":
            raise RuntimeError("boom")
        if name == "slow":
            time.sleep(30)
        rows.append(f"{name} ok {mini_batch_context.minibatch_index}")
    return rows
"""


def test_the_pool_runs_init_once_per_worker_retries_then_counts_failed_mini_batches(tmp_path):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "entry.py").write_text(ENTRY)
    data = tmp_path / "data"
    data.mkdir()
    for name in ("a", "b", "c", "crash", "slow"):
        (data / f"{name}.txt").write_text(name)
    common = ("--entry-script", "entry.py", "--input-data", str(data), "--workers", "2", "--timeout", "2")
    done = parallel(
        tmp_path / "code",
        *common,
        "--max-retries",
        "1",
        "--append-row-to",
        str(tmp_path / "out"),
        "--",
        "--log",
        str(tmp_path),
    )
    assert done.returncode == 0, done.stderr  # -1: failed mini-batches never fail the step
    rows = (tmp_path / "out" / ROWS_FILE).read_text().splitlines()
    assert sorted(r.split()[0] for r in rows) == ["a", "b", "c"]
    assert done.stderr.count("mini-batch 3 failed (attempt") == 2  # crash: once, then its one retry
    assert "RuntimeError: boom" in done.stderr and "MiniBatchTimeout" in done.stderr
    assert "5 mini-batches, 2 failed, 3 rows" in done.stdout
    inits = (tmp_path / "init.txt").read_text().split()
    assert len(inits) == len(set(inits))  # once per worker process, never per mini-batch

    strict = parallel(
        tmp_path / "code", *common, "--max-retries", "0", "--error-threshold", "1", "--", "--log", str(tmp_path)
    )
    assert strict.returncode == 1 and "more than the threshold 1" in strict.stderr


DYING = """
import os, time
from pathlib import Path

def run(mini_batch, mini_batch_context):
    rows = []
    for path in mini_batch:
        name = Path(path).stem
        if name == "0dies":
            os._exit(1)  # its process dies, every time (a segfault, the OOM killer)
        time.sleep(0.5)  # the others are still running or queued when it dies
        rows.append(f"{name} ok")
    return rows
"""


def test_a_mini_batch_that_kills_its_process_fails_alone_and_the_others_keep_their_retries(tmp_path):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "entry.py").write_text(DYING)
    data = tmp_path / "data"
    data.mkdir()
    for name in ("0dies", "a", "b", "c", "d", "e"):
        (data / f"{name}.txt").write_text(name)
    done = parallel(
        tmp_path / "code",
        *("--entry-script", "entry.py", "--input-data", str(data), "--workers", "2", "--max-retries", "1"),
        *("--append-row-to", str(tmp_path / "out")),
    )
    assert done.returncode == 0, done.stderr
    rows = (tmp_path / "out" / ROWS_FILE).read_text().splitlines()
    assert sorted(r.split()[0] for r in rows) == ["a", "b", "c", "d", "e"]
    assert "6 mini-batches, 1 failed, 5 rows" in done.stdout
    charged = [ln for ln in done.stderr.splitlines() if "failed (attempt" in ln]
    assert charged and all("mini-batch 0 failed" in ln for ln in charged)  # no other is charged
    assert done.stderr.count("mini-batch 0 failed (attempt") == 2  # its run, then its one retry
