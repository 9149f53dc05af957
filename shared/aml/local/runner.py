"""The local backend's runner, a process of its own (``python -m shared.aml.local.runner
<run_id>``): it runs each planned step as a subprocess, keeps ``runs/<run_id>/status.json``
current with a heartbeat, publishes logs, outputs and metrics, and stops a step when the
cancel marker appears."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from shared import ROOT, clock
from shared.aml.catalog import load_catalog
from shared.aml.datarefs import DataCatalogError
from shared.aml.local.plan import Step, plan
from shared.aml.request import RunRequest
from shared.aml.status import normalise
from shared.lake import Lake, LocalLake, make_lake
from shared.settings import Settings, get_settings

HEARTBEAT_S = 2.0
POLL_S = 0.1


def run_paths(run_id: str) -> dict[str, str]:
    """The run's records in the lake: what was asked, its status, the cancel marker."""
    base = f"runs/{run_id}"
    return {"run": f"{base}/run.json", "status": f"{base}/status.json", "cancel": f"{base}/cancel.json"}


class Runner:
    """One local run: runs its steps in order, keeping its status in the lake."""

    def __init__(self, lake: Lake, run_id: str, work: Path) -> None:
        self.lake = lake
        self.run_id = run_id
        self.work = work
        self.paths = run_paths(run_id)
        self.status: dict[str, Any] = {"aml_status": "Starting", "steps": [], "metrics": {}}

    def save(self) -> None:
        self.status["heartbeat_at"] = clock.now_iso()
        self.lake.write_bytes(self.paths["status"], json.dumps(self.status, indent=2).encode())

    def cancel_requested(self) -> bool:
        return self.lake.exists(self.paths["cancel"])

    def finish(self, aml_status: str, error: dict[str, Any] | None = None) -> None:
        self.status.update(aml_status=aml_status, ended_at=clock.now_iso(), error=error)
        self.save()

    def run(self) -> None:
        record = json.loads(self.lake.read_bytes(self.paths["run"]))
        request = RunRequest(**record["request"])
        pipeline = load_catalog()[record["pipeline"]]
        self.status["started_at"] = clock.now_iso()
        try:
            steps = plan(pipeline, request, self.lake, self.work)
        except (ValueError, KeyError, OSError, DataCatalogError) as e:
            self.finish("Failed", {"step": None, "message": f"the pipeline could not be prepared: {e}", "code": "plan"})
            return
        self.status["steps"] = [
            {"name": s.name, "aml_status": "NotStarted", "status": "queued", "started_at": None, "ended_at": None}
            for s in steps
        ]
        self.status["aml_status"] = "Running"
        self.save()
        failed: dict[str, Any] | None = None
        for i, step in enumerate(steps):
            if self.cancel_requested():
                self.finish("Canceled")
                return
            outcome = self._run_step(i, step)
            if outcome == "Canceled":
                self.finish("Canceled")
                return
            if outcome == "Failed" and failed is None:
                failed = {"step": step.name, "message": self.status["steps"][i]["error"], "code": "step_failed"}
                if not request.continue_on_step_failure:
                    break
        self.finish("Failed" if failed else "Completed", failed)

    def _set_step(self, i: int, aml_status: str, **kw: Any) -> None:
        self.status["steps"][i].update(aml_status=aml_status, status=normalise(aml_status), **kw)
        self.save()

    def _run_step(self, i: int, step: Step) -> str:
        for out in step.outputs.values():
            out.mkdir(parents=True, exist_ok=True)
        log_file = self.work / "logs" / f"{step.name}.txt"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        metrics_file = self.work / "metrics" / f"{step.name}.jsonl"
        metrics_file.parent.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "FORECASTOPS_RUN_ID": self.run_id,
            "FORECASTOPS_STEP": step.name,
            "FORECASTOPS_METRICS_FILE": str(metrics_file),
            "MLFLOW_TRACKING_URI": (self.work / "mlruns").as_uri(),
            # MLflow 3 keeps its file store in maintenance mode and refuses it unless allowed;
            # a database store would need SQLAlchemy, which the light install leaves out
            "MLFLOW_ALLOW_FILE_STORE": "true",
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        self._set_step(i, "Running", started_at=clock.now_iso())
        with open(log_file, "ab") as log:
            proc = subprocess.Popen(
                step.argv, cwd=step.cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            last_beat = time.monotonic()
            while proc.poll() is None:
                time.sleep(POLL_S)
                if self.cancel_requested():
                    os.killpg(proc.pid, signal.SIGTERM)
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        os.killpg(proc.pid, signal.SIGKILL)
                        proc.wait()
                    self._set_step(i, "Canceled", ended_at=clock.now_iso())
                    return "Canceled"
                if time.monotonic() - last_beat > HEARTBEAT_S:
                    self.save()
                    last_beat = time.monotonic()
        self._publish(step, log_file)
        self.status["metrics"][step.name] = _read_metrics(metrics_file)
        if proc.returncode != 0:
            message = step_failure(proc.returncode, log_file.read_text(errors="replace"), step.name)
            self._set_step(i, "Failed", ended_at=clock.now_iso(), error=message)
            return "Failed"
        self._set_step(i, "Completed", ended_at=clock.now_iso())
        return "Completed"

    def _publish(self, step: Step, log_file: Path) -> None:
        """Step logs and outputs into the lake, unless the work folder already is the lake."""
        if isinstance(self.lake, LocalLake) and self.work.is_relative_to(self.lake.root):
            return
        base = f"runs/{self.run_id}"
        with open(log_file, "rb") as f:
            self.lake.upload(f"{base}/logs/{step.name}.txt", f)
        for name, folder in step.outputs.items():
            for file in sorted(p for p in folder.rglob("*") if p.is_file()):
                with open(file, "rb") as f:
                    self.lake.upload(f"{base}/outputs/{step.name}/{name}/{file.relative_to(folder).as_posix()}", f)


_TRACE_LINE = re.compile(r'^\s*(Traceback \(most recent call last\)|File "|\^+$|~+$)')
_PATH = re.compile(r"(?<![\w.])(/[^\s'\":,]+)+")


def step_failure(code: int, log: str, step: str) -> str:
    """What a failed step's answer says: its exit code and the last line of its log that is
    not part of a stack trace, with file paths cut to their last part (the whole log stays in
    ``runs/<id>/logs/<step>.txt``): an answer never carries a traceback or a path of this
    machine."""
    lines = [ln.strip() for ln in log.strip().splitlines() if ln.strip() and not _TRACE_LINE.match(ln)]
    last = _PATH.sub(lambda m: m.group(0).rsplit("/", 1)[-1], lines[-1]) if lines else ""
    where = f"; the step's log: logs/{step}.txt"
    return (f"exit code {code}: {last}"[:500] + where) if last else f"exit code {code}{where}"


def _read_metrics(path: Path) -> dict[str, float]:
    metrics: dict[str, float] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                item = json.loads(line)
                metrics[item["name"]] = float(item["value"])
    return metrics


def work_folder(lake: Lake, settings: Settings, run_id: str) -> Path:
    """The folder a local run's steps work in: the runs root's, the local lake's, or a temporary one."""
    if settings.local_runs_root is not None:
        return Path(settings.local_runs_root).absolute() / run_id
    if isinstance(lake, LocalLake):
        return lake.root / "runs" / run_id
    return Path(tempfile.gettempdir()) / "forecastops-runs" / run_id


def main(argv: list[str] | None = None) -> int:
    """Run one local run (its id the only argument) to the end; its status says how it ended."""
    (run_id,) = argv if argv is not None else sys.argv[1:]
    if argv is None and os.getpgid(0) != os.getpid():
        os.setsid()  # a session of its own: a cancel signal to its steps never reaches the caller
    settings = get_settings()
    lake = make_lake(settings)
    runner = Runner(lake, run_id, work_folder(lake, settings, run_id))
    try:
        runner.run()
    except Exception as e:  # the run must end in a status, whatever happened
        runner.finish("Failed", {"step": None, "message": f"the local runner crashed: {e!r}", "code": "runner"})
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
