"""The AML backend interface: one interface, two implementations (``azureml`` in
:mod:`shared.aml.azureml`, ``local`` in :mod:`shared.aml.local`), and the errors a backend
raises for the run API to answer."""

from __future__ import annotations

from abc import ABC, abstractmethod

from shared.aml.catalog import Pipeline
from shared.aml.request import RunRequest
from shared.aml.status import RunStatus


class RunNotFound(LookupError):
    """No run of that id."""


class BackendError(Exception):
    """AML refused or failed in a way the caller should see (not worth a retry here)."""

    def __init__(self, message: str, *, status: int = 502, code: str = "aml_error") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class TransientBackendError(BackendError):
    """AML is throttling or unavailable; retry later."""

    def __init__(self, message: str, retry_after: int = 30) -> None:
        super().__init__(message, status=503, code="aml_unavailable")
        self.retry_after = retry_after


class Backend(ABC):
    """Where pipeline runs happen: submit, get and cancel a run by its id."""

    name: str

    @abstractmethod
    def submit(self, pipeline: Pipeline, request: RunRequest, run_id: str) -> tuple[RunStatus, bool]:
        """Start ``pipeline`` as run ``run_id``; ``(status, False)`` if that run already
        exists (the same idempotency key), ``(status, True)`` if this call started it."""

    @abstractmethod
    def get(self, run_id: str, known_status: str | None = None) -> RunStatus:
        """The run's status, steps, error and metrics; :class:`RunNotFound` if none."""

    @abstractmethod
    def cancel(self, run_id: str) -> RunStatus:
        """Ask the run to stop (idempotent); the status as it stands after asking."""
