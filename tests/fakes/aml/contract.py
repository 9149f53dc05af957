"""What AML promises, as the fake needs it: the hosts and resource provider, which job statuses end a job
(and so which ones a cancel still applies to and which ones end a pipeline's unfinished steps), how a job
status shows in MLflow, and timestamps in the format AML writes them."""

from __future__ import annotations

import time
from datetime import UTC, datetime

__all__ = [
    "ARM_HOST",
    "ML_RESOURCE",
    "PROVIDER",
    "TERMINAL_STATUSES",
    "mlflow_status",
    "now_iso",
    "now_ms",
]

ARM_HOST = "management.azure.com"
ML_RESOURCE = "https://ml.azure.com"
PROVIDER = "Microsoft.MachineLearningServices"
#: the only statuses that end a job: a cancel no longer applies, a pipeline's unfinished steps end with it.
#: NotResponding, Paused and Unknown are not among them: the job may go on, and a cancel still applies.
TERMINAL_STATUSES = ("Completed", "Failed", "Canceled")

_MLFLOW_STATUS = {"Completed": "FINISHED", "Failed": "FAILED", "Canceled": "KILLED"}


def mlflow_status(aml_status: str) -> str:
    """The MLflow run status a job in ``aml_status`` shows (every other status is RUNNING)."""
    return _MLFLOW_STATUS.get(aml_status, "RUNNING")


def now_iso() -> str:
    """Now, as AML writes timestamps (microseconds, Z)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def now_ms() -> int:
    """Now in milliseconds since the epoch, as MLflow writes timestamps."""
    return int(time.time() * 1000)
