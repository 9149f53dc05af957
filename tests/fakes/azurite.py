"""Run a throw-away Azurite (Azure Storage emulator) for integration tests.

Azurite is pinned as an npm devDependency in ``package.json`` at the repository
root; install it once with::

    npm ci

This module is deliberately pytest-agnostic.  Typical use from a conftest::

    import pytest
    from tests.fakes.azurite import start_azurite

    @pytest.fixture(scope="session")
    def azurite():
        with start_azurite() as instance:
            yield instance

    def test_something(azurite, monkeypatch):
        monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
        ...

What :func:`start_azurite` does:

* starts ``./node_modules/.bin/azurite`` (blob, queue and table services) in
  its own process group, with a fresh temporary workspace folder
  (``--location``) that is deleted afterwards;
* binds every service to port 0 on 127.0.0.1, so the OS picks free ports
  without any race, and reads the real ports from Azurite's start-up lines
  (``... successfully listening at http://127.0.0.1:PORT``);
* passes ``--silent --loose --skipApiVersionCheck --disableTelemetry`` so the
  emulator stays quiet, accepts any SDK API version, and makes no outbound
  telemetry calls;
* waits (bounded by ``timeout`` seconds) until the blob endpoint answers an
  HTTP request, raising :class:`AzuriteError` with Azurite's own output if it
  does not;
* yields an :class:`AzuriteInstance` holding the ports and a connection
  string for the well-known ``devstoreaccount1`` development account with
  explicit ``BlobEndpoint``/``QueueEndpoint``/``TableEndpoint``;
* on exit sends SIGTERM to the whole process group (SIGKILL after a grace
  period) and removes the workspace.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ACCOUNT_KEY",
    "ACCOUNT_NAME",
    "AzuriteError",
    "AzuriteInstance",
    "azurite_executable",
    "start_azurite",
]

#: Repository root (this file lives in ``<root>/tests/``).
REPO_ROOT = Path(__file__).resolve().parents[2]

#: Well-known Azurite / Storage Emulator development account and key.  This is
#: a public, documented constant, not a secret.
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

_SERVICES = ("blob", "queue", "table")
_LISTENING_RE = re.compile(
    r"Azurite (Blob|Queue|Table) service is successfully listening at "
    r"https?://[^\s:]+:(\d+)"
)


class AzuriteError(RuntimeError):
    """Azurite could not be found or did not start in time."""


@dataclass(frozen=True)
class AzuriteInstance:
    """A running Azurite process, as yielded by :func:`start_azurite`."""

    host: str
    blob_port: int
    queue_port: int
    table_port: int
    workspace: Path
    pid: int

    @property
    def blob_endpoint(self) -> str:
        return f"http://{self.host}:{self.blob_port}/{ACCOUNT_NAME}"

    @property
    def queue_endpoint(self) -> str:
        return f"http://{self.host}:{self.queue_port}/{ACCOUNT_NAME}"

    @property
    def table_endpoint(self) -> str:
        return f"http://{self.host}:{self.table_port}/{ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        """Connection string usable by azure-storage-* SDKs and the Functions host."""
        return (
            "DefaultEndpointsProtocol=http;"
            f"AccountName={ACCOUNT_NAME};"
            f"AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_endpoint};"
            f"QueueEndpoint={self.queue_endpoint};"
            f"TableEndpoint={self.table_endpoint};"
        )


def azurite_executable(repo_root: Path = REPO_ROOT) -> Path:
    """Return the path of the locally installed Azurite CLI.

    Raises :class:`AzuriteError` (telling you to run ``npm ci``) if it is
    missing, or if Node.js itself is not on ``PATH``.
    """
    name = "azurite.cmd" if os.name == "nt" else "azurite"
    exe = repo_root / "node_modules" / ".bin" / name
    if not exe.exists():
        raise AzuriteError(f"Azurite is not installed ({exe} does not exist). Run `npm ci` in {repo_root} first.")
    if shutil.which("node") is None:
        raise AzuriteError("Node.js (`node`) is not on PATH; it is needed to run Azurite.")
    return exe


class _OutputCollector:
    """Drain Azurite's merged stdout/stderr in a background thread.

    Keeps every line (for error messages) and records the ports reported in
    the ``successfully listening`` lines.
    """

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self.ports: dict[str, int] = {}
        self.all_listening = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, args=(stream,), name="azurite-output", daemon=True)
        self._thread.start()

    def _run(self, stream) -> None:
        for raw in iter(stream.readline, ""):
            line = raw.rstrip("\r\n")
            with self._lock:
                self.lines.append(line)
                match = _LISTENING_RE.search(line)
                if match:
                    self.ports[match.group(1).lower()] = int(match.group(2))
                    if all(service in self.ports for service in _SERVICES):
                        self.all_listening.set()
        stream.close()

    def text(self) -> str:
        with self._lock:
            return "\n".join(self.lines) or "<no output>"

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


def _blob_endpoint_answers(host: str, port: int) -> bool:
    """True once the blob service answers HTTP at all (any status code)."""
    url = f"http://{host}:{port}/{ACCOUNT_NAME}?comp=properties&restype=service"
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # e.g. 403 for an unauthenticated request: the server is up.
    except OSError:
        return False


def _stop(proc: subprocess.Popen, grace: float) -> None:
    """Terminate Azurite's whole process group, escalating to SIGKILL."""
    if proc.poll() is not None:
        return
    if os.name == "nt":
        proc.terminate()
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        if os.name == "nt":
            proc.kill()
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace)


@contextlib.contextmanager
def start_azurite(
    *,
    timeout: float = 30.0,
    host: str = "127.0.0.1",
    blob_port: int = 0,
    queue_port: int = 0,
    table_port: int = 0,
    repo_root: Path = REPO_ROOT,
    extra_args: tuple[str, ...] = (),
) -> Iterator[AzuriteInstance]:
    """Start Azurite (blob, queue, table) and yield an :class:`AzuriteInstance`.

    Ports default to 0 (the OS picks free ones; the real ports are read from
    Azurite's output).  ``timeout`` bounds the start-up wait in seconds.
    Raises :class:`AzuriteError`, including Azurite's output, if the CLI is
    missing, exits early, or the blob endpoint does not answer in time.
    """
    exe = azurite_executable(repo_root)
    workspace = Path(tempfile.mkdtemp(prefix="azurite-"))
    cmd = [
        str(exe),
        "--location",
        str(workspace),
        "--blobHost",
        host,
        "--blobPort",
        str(blob_port),
        "--queueHost",
        host,
        "--queuePort",
        str(queue_port),
        "--tableHost",
        host,
        "--tablePort",
        str(table_port),
        "--silent",  # no per-request access log
        "--loose",  # ignore unsupported headers/parameters
        "--skipApiVersionCheck",  # accept whatever API version the SDK sends
        "--disableTelemetry",  # no outbound telemetry calls
        *extra_args,
    ]
    popen_kwargs: dict = {}
    if os.name == "nt":
        popen_kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
    else:
        popen_kwargs["start_new_session"] = True  # own process group for killpg
    proc = subprocess.Popen(
        cmd,
        cwd=workspace,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
        **popen_kwargs,
    )
    output = _OutputCollector(proc.stdout)
    try:
        instance = _wait_until_ready(proc, output, host, workspace, timeout)
        yield instance
    finally:
        _stop(proc, grace=10.0)
        output.join(timeout=5.0)
        shutil.rmtree(workspace, ignore_errors=True)


def _wait_until_ready(
    proc: subprocess.Popen,
    output: _OutputCollector,
    host: str,
    workspace: Path,
    timeout: float,
) -> AzuriteInstance:
    deadline = time.monotonic() + timeout

    def fail(reason: str) -> AzuriteError:
        return AzuriteError(
            f"Azurite {reason}.\nCommand: {' '.join(proc.args)}\n"
            f"--- Azurite output ---\n{output.text()}\n--- end of Azurite output ---"
        )

    # 1. Wait for the three "successfully listening at ...:PORT" lines.
    while not output.all_listening.wait(0.1):
        if proc.poll() is not None:
            raise fail(f"exited with code {proc.returncode} during start-up")
        if time.monotonic() > deadline:
            raise fail(f"did not report listening ports within {timeout:.0f}s")

    ports = dict(output.ports)
    # 2. Wait until the blob endpoint actually answers HTTP.
    while not _blob_endpoint_answers(host, ports["blob"]):
        if proc.poll() is not None:
            raise fail(f"exited with code {proc.returncode} during start-up")
        if time.monotonic() > deadline:
            raise fail(f"blob endpoint did not answer within {timeout:.0f}s")
        time.sleep(0.1)

    return AzuriteInstance(
        host=host,
        blob_port=ports["blob"],
        queue_port=ports["queue"],
        table_port=ports["table"],
        workspace=workspace,
        pid=proc.pid,
    )


if __name__ == "__main__":  # Manual smoke test: python tests/fakes/azurite.py
    with start_azurite() as _azurite:
        print(_azurite.connection_string)
        print("Azurite is running; press Ctrl+C to stop.", file=sys.stderr)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(1)
