"""The ``local`` AML backend: the pipeline's steps run on this machine, in the background.

``submit`` records the run in the lake (``runs/<run_id>/run.json``, created atomically, so
that two identical submits start one run) and starts a detached runner process, then returns
at once. The runner (``python -m shared.aml.local.runner <run_id>``) resolves the pipeline job YAML
and its component YAMLs the way AML does (``${{parent.inputs.x}}``,
``${{parent.jobs.<step>.outputs.<o>}}``, ``${{inputs.x}}``, ``$[[optional]]``; an input naming a
registered data asset version, ``azureml:<name>:<version>``, is the lake folder its record in the
lake's data catalog names, and ``submit`` refuses one the catalog does not hold), runs each
step's command as a subprocess, and keeps ``runs/<run_id>/status.json`` current (with a
heartbeat), step logs under ``runs/<run_id>/logs/`` and outputs under
``runs/<run_id>/outputs/``. Any process that sees the same lake reads the status; cancel is
a marker file the runner watches, so it works from another process too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from shared import ROOT, clock
from shared.aml.backend import Backend, BackendError, RunNotFound
from shared.aml.catalog import Pipeline
from shared.aml.datarefs import DataCatalogError
from shared.aml.local.plan import resolve_input
from shared.aml.local.runner import run_paths
from shared.aml.request import RunRequest
from shared.aml.status import TERMINAL, RunError, RunStatus, StepStatus
from shared.lake import Lake, NotFoundError
from shared.settings import Settings, settings_env

#: a runner silent for this long is reported NotResponding (AML's word for it)
STALE_S = 30.0


class LocalBackend(Backend):
    """The backend that runs pipelines on this machine, a detached runner per run, its state in the lake."""

    name = "local"

    def __init__(self, lake: Lake, settings: Settings) -> None:
        self.lake = lake
        self.settings = settings

    def submit(self, pipeline: Pipeline, request: RunRequest, run_id: str) -> tuple[RunStatus, bool]:
        if pipeline.local is None:
            raise BackendError(f"pipeline {pipeline.name} has no local definition", status=501, code="not_local")
        if self.lake.exists(run_paths(run_id)["run"]):
            return self.get(run_id), False
        self._check_assets(request)
        record = {
            "run_id": run_id,
            "pipeline": pipeline.name,
            "request": request.model_dump(mode="json"),
            "created_at": clock.now_iso(),
        }
        if not self.lake.create(run_paths(run_id)["run"], json.dumps(record, indent=2).encode()):
            return self.get(run_id), False
        env = {**os.environ, **settings_env(self.settings), "PYTHONPATH": str(ROOT)}
        log = Path(tempfile.gettempdir()) / f"forecastops-runner-{run_id}.log"
        # detached through a shell that exits at once: the runner is re-parented (no zombie
        # left to this long-lived worker) and outlives this request and this process
        try:
            subprocess.run(
                ["/bin/sh", "-c", '"$0" "$@" </dev/null >>"$FORECASTOPS_RUNNER_LOG" 2>&1 &']
                + [sys.executable, "-m", "shared.aml.local.runner", run_id],
                cwd=ROOT,
                env={**env, "FORECASTOPS_RUNNER_LOG": str(log)},
                check=True,
                timeout=30,
            )
        except (OSError, subprocess.SubprocessError) as e:
            # the run is recorded: end it, or the same key would re-attach to a run that never starts
            error = {"step": None, "message": f"the local runner could not start: {e}", "code": "runner_not_started"}
            status = {
                "aml_status": "Failed",
                "steps": [],
                "ended_at": clock.now_iso(),
                "heartbeat_at": clock.now_iso(),
                "error": error,
            }
            self.lake.write_bytes(run_paths(run_id)["status"], json.dumps(status).encode())
        return self.get(run_id), True

    def _check_assets(self, request: RunRequest) -> None:
        """Refuse, before anything starts, an input naming a data asset version
        (``azureml:<name>:<version>``) the lake's catalog does not hold."""
        for name, value in request.inputs.items():
            try:
                resolve_input(value, self.lake)
            except DataCatalogError as e:
                raise BackendError(
                    f"input {name}: {value} is not a data asset registered in the lake ({e})",
                    status=400,
                    code="missing_asset",
                ) from e

    def get(self, run_id: str, known_status: str | None = None) -> RunStatus:
        paths = run_paths(run_id)
        try:
            record = json.loads(self.lake.read_bytes(paths["run"]))
        except (NotFoundError, ValueError):
            raise RunNotFound(run_id) from None
        try:
            status = json.loads(self.lake.read_bytes(paths["status"]))
        except NotFoundError:
            status = {"aml_status": "NotStarted", "steps": []}
        aml_status = status["aml_status"]
        if aml_status not in TERMINAL:
            if self.lake.exists(paths["cancel"]):
                aml_status = "CancelRequested"
            beat = status.get("heartbeat_at") or record["created_at"]
            age = (clock.now() - clock.parse_iso(beat)).total_seconds()
            if age > STALE_S:
                aml_status = "NotResponding"
        req = record["request"]
        return RunStatus.of(
            run_id,
            aml_status,
            pipeline=record["pipeline"],
            backend=self.name,
            experiment=req.get("experiment"),
            created_at=record["created_at"],
            started_at=status.get("started_at"),
            ended_at=status.get("ended_at"),
            steps=[StepStatus(**s) for s in status.get("steps", [])],
            error=RunError(**status["error"]) if status.get("error") else None,
            portal_url=self.lake.describe(f"runs/{run_id}/status.json").removesuffix("/status.json"),
            metrics=status.get("metrics", {}),
            tags=req.get("tags", {}),
        )

    def cancel(self, run_id: str) -> RunStatus:
        self.get(run_id)  # 404 for an unknown run
        self.lake.create(run_paths(run_id)["cancel"], json.dumps({"requested_at": clock.now_iso()}).encode())
        return self.get(run_id)
