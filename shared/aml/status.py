"""AML run statuses: AML's own job states, the normalised ones, which end a run and which
are waited out, and the :class:`RunStatus` every backend reports, so that the HTTP API, the
durable watch and the command line never care which backend ran the pipeline.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

#: AML job states -> the normalised status
NORMALISED: dict[str, str] = {
    "NotStarted": "queued",
    "Starting": "queued",
    "Provisioning": "queued",
    "Preparing": "queued",
    "Queued": "queued",
    "Running": "running",
    "Finalizing": "running",
    "CancelRequested": "running",
    "Completed": "completed",
    "Failed": "failed",
    "Canceled": "canceled",
    # not terminal: reported as such and waited out up to a limit by the watchers
    "NotResponding": "running",
    "Paused": "running",
    "Unknown": "running",
}
#: the only states that end a run
TERMINAL = frozenset({"Completed", "Failed", "Canceled"})
#: not terminal, but no progress: waited out up to a limit, then the run counts as failed
STUCK = frozenset({"NotResponding", "Paused", "Unknown"})
Normalised = Literal["queued", "running", "completed", "failed", "canceled"]


def normalise(aml_status: str) -> str:
    """The normalised status of an AML status; running if unknown."""
    return NORMALISED.get(aml_status, "running")


class StepStatus(BaseModel):
    """One step of a run: its AML and normalised status, times, error and child run."""

    name: str
    aml_status: str
    status: str
    started_at: str | None = None
    ended_at: str | None = None
    error: str | None = None
    #: the step's own run (AML's child job), where its metrics and logs are
    run_id: str | None = None


class RunError(BaseModel):
    """Why a run failed: the step, if one, a message and a code."""

    step: str | None = None
    message: str
    code: str | None = None


class RunStatus(BaseModel):
    """One run as the routes answer it: status, times, steps, error, metrics and portal link."""

    run_id: str
    pipeline: str | None
    backend: str
    aml_status: str
    status: str
    terminal: bool
    experiment: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    steps: list[StepStatus] = Field(default_factory=list)
    error: RunError | None = None
    portal_url: str | None = None
    #: per step, metric -> value; a value that is not a finite number is null (and fails a gate)
    metrics: dict[str, dict[str, float | None]] = Field(default_factory=dict)
    #: set when a finished step's metrics could not be read (the gates then fail, not pass)
    metrics_error: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("metrics", mode="before")
    @classmethod
    def _finite(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {
            step: {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in metrics.items()}
            if isinstance(metrics, dict)
            else metrics
            for step, metrics in value.items()
        }

    @classmethod
    def of(cls, run_id: str, aml_status: str, **kw: Any) -> RunStatus:
        return cls(
            run_id=run_id, aml_status=aml_status, status=normalise(aml_status), terminal=aml_status in TERMINAL, **kw
        )
