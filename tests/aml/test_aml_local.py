"""The local backend: real steps as real subprocesses, watched from another process."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from shared.aml.backend import RunNotFound
from shared.aml.catalog import load_catalog
from shared.aml.local.backend import LocalBackend
from shared.aml.request import validate_request
from shared.settings import Settings, settings_env
from tests.drivers import ROOT_DIR


@pytest.fixture(params=["local", "blob"])
def backend(request, tmp_path):
    """A local backend over each lake: the folder, and Azurite (steps' work folder in tmp)."""
    if request.param == "local":
        lake = request.getfixturevalue("local_lake")
        return LocalBackend(lake, Settings(lake_backend="local", lake_root=lake.root))
    conn = request.getfixturevalue("azurite").connection_string
    lake = request.getfixturevalue("blob_lake")
    return LocalBackend(lake, Settings(lake_backend="blob", lake_storage=conn, local_runs_root=tmp_path / "work"))


def start(backend, key=None, **params):
    pipeline = load_catalog()["smoke"]
    body = {"parameters": {"seconds": 0.05, **params}}
    if key:
        body["idempotency_key"] = key
    request, problems = validate_request(pipeline, body)
    assert problems == []
    status, created = backend.submit(pipeline, request, request.job_name())
    return status, created


def wait(backend, run_id, timeout=60):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        status = backend.get(run_id)
        if not seen or seen[-1] != status.aml_status:
            seen.append(status.aml_status)
        if status.terminal:
            return status, seen
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not end: {seen}")


def test_a_run_completes_with_its_steps_outputs_and_metrics(backend):
    status, created = start(backend)
    assert created and status.aml_status == "NotStarted" and status.status == "queued"
    final, seen = wait(backend, status.run_id)
    assert final.aml_status == "Completed" and final.status == "completed" and final.terminal
    assert [(s.name, s.aml_status) for s in final.steps] == [
        ("prepare", "Completed"),
        ("train", "Completed"),
        ("evaluate", "Completed"),
    ]
    assert final.metrics == {
        "prepare": {"prepare_seconds": 0.05},
        "train": {"train_seconds": 0.05},
        "evaluate": {"evaluate_seconds": 0.05},
    }
    assert final.started_at and final.ended_at and final.error is None
    assert "Running" in seen
    lake = backend.lake
    assert json.loads(lake.read_bytes(f"runs/{status.run_id}/outputs/evaluate/out/done.json")) == {
        "step": "evaluate",
        "region": "all",
    }
    assert "evaluate: region all" in lake.read_bytes(f"runs/{status.run_id}/logs/evaluate.txt").decode()


def test_a_failing_step_fails_the_run_with_the_step_and_its_message(backend):
    status, _ = start(backend, fail_step="train")
    final, _ = wait(backend, status.run_id)
    assert final.aml_status == "Failed" and final.status == "failed"
    assert final.error.step == "train" and "failing as asked" in final.error.message
    assert [s.aml_status for s in final.steps] == ["Completed", "Failed", "NotStarted"]


def test_cancel_stops_the_running_step_and_ends_canceled(backend):
    status, _ = start(backend, seconds=30)
    deadline = time.monotonic() + 30
    while backend.get(status.run_id).aml_status != "Running" and time.monotonic() < deadline:
        time.sleep(0.05)
    asked = backend.cancel(status.run_id)
    assert asked.aml_status in ("CancelRequested", "Canceled")
    assert backend.cancel(status.run_id).run_id == status.run_id  # asking twice is fine
    t0 = time.monotonic()
    final, _ = wait(backend, status.run_id, timeout=20)
    assert final.aml_status == "Canceled" and final.status == "canceled"
    assert time.monotonic() - t0 < 15  # the 30 s step did not run to its end
    assert final.steps[0].aml_status == "Canceled"


def test_the_same_key_reattaches_and_racing_submits_start_one_run(backend):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: start(backend, key="adf-run-7"), range(8)))
    assert sum(created for _, created in results) == 1
    assert len({s.run_id for s, _ in results}) == 1
    final, _ = wait(backend, results[0][0].run_id)
    assert final.aml_status == "Completed"
    _, created = start(backend, key="adf-run-7")
    assert created is False


def test_status_is_read_from_another_process(backend, tmp_path):
    status, _ = start(backend)
    wait(backend, status.run_id)
    script = (
        "import json, sys\n"
        "from shared.lake import make_lake\n"
        "from shared.settings import get_settings\n"
        "from shared.aml.local.backend import LocalBackend\n"
        "s = get_settings()\n"
        "print(LocalBackend(make_lake(s), s).get(sys.argv[1]).model_dump_json())\n"
    )
    env = {"PATH": "/usr/bin:/bin", **settings_env(backend.settings)}
    out = subprocess.run(
        [sys.executable, "-c", script, status.run_id], cwd=ROOT_DIR, env=env, capture_output=True, text=True, check=True
    )
    other = json.loads(out.stdout)
    assert other["aml_status"] == "Completed" and [s["name"] for s in other["steps"]] == [
        "prepare",
        "train",
        "evaluate",
    ]


def test_unknown_runs_are_not_found(backend):
    with pytest.raises(RunNotFound):
        backend.get("no-such-run")
    with pytest.raises(RunNotFound):
        backend.cancel("no-such-run")


def test_a_silent_runner_is_reported_not_responding(local_lake, monkeypatch):
    import shared.aml.local.backend as mod

    backend = LocalBackend(local_lake, Settings(lake_root=local_lake.root))
    local_lake.write_bytes(
        "runs/r1/run.json",
        json.dumps(
            {"run_id": "r1", "pipeline": "smoke", "request": {}, "created_at": "2026-01-01T00:00:00.000Z"}
        ).encode(),
    )
    local_lake.write_bytes(
        "runs/r1/status.json",
        json.dumps({"aml_status": "Running", "steps": [], "heartbeat_at": "2026-01-01T00:00:00.000Z"}).encode(),
    )
    status = backend.get("r1")
    assert status.aml_status == "NotResponding" and status.status == "running" and not status.terminal
    monkeypatch.setattr(mod, "STALE_S", 1e12)
    assert backend.get("r1").aml_status == "Running"


def test_a_failed_steps_answer_carries_no_traceback_and_no_path_of_this_machine():
    from shared.aml.local.runner import step_failure

    log = (
        "train: origin 2025-01-01\n"
        "Traceback (most recent call last):\n"
        '  File "/work/main/pipelines/forecast/src/train.py", line 12, in <module>\n'
        "    main()\n"
        "    ^^^^^^\n"
        "ValueError: could not read /tmp/forecastops-abc/features/features.csv: no rows\n"
    )
    message = step_failure(1, log, "train")
    assert message == "exit code 1: ValueError: could not read features.csv: no rows; the step's log: logs/train.txt"
    assert step_failure(2, "", "score") == "exit code 2; the step's log: logs/score.txt"
    assert len(step_failure(1, "x" * 100_000, "train")) < 600
