"""Fixtures shared by every test: a clean environment, lakes (local folder and Azurite)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import clock, telemetry
from shared.lake import BlobLake, Lake, LocalLake
from shared.settings import get_settings
from tests.fakes.azurite import AzuriteInstance, start_azurite

ROOT = Path(__file__).resolve().parent.parent


def app_setting(name: str) -> bool:
    """An app setting a test must not inherit from the machine; the test clock's offset is kept,
    so that CI's run of the suite a year ahead (shared/clock.py) reaches every process."""
    prefixes = ("FORECASTOPS_", "LAKE_STORAGE", "APPLICATIONINSIGHTS_", "AzureWebJobs")
    return name.startswith(prefixes) and name != clock.OFFSET_SETTING


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No app setting leaks in from the machine (as pydantic-settings' own tests do)."""
    for name in list(os.environ):
        if app_setting(name):
            monkeypatch.delenv(name)
    # azure-ai-ml's MLClient sets AZUREML_CURRENT_CLOUD process-wide: put it back after each test
    cloud = os.environ.get("AZUREML_CURRENT_CLOUD")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
    telemetry.shutdown()  # each test configures telemetry afresh (the worker does it once)
    if cloud is None:
        os.environ.pop("AZUREML_CURRENT_CLOUD", None)
    else:
        os.environ["AZUREML_CURRENT_CLOUD"] = cloud


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that reaches Azurite, through any fixture, is marked ``azurite``:
    ``pytest -m "not azurite"`` is the offline loop that needs no emulator."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        params = getattr(getattr(item, "callspec", None), "params", {})
        # ``lake`` reaches Azurite through getfixturevalue, for its "blob" parameter
        if "azurite" in names or "blob_lake" in names or params.get("lake") == "blob":
            item.add_marker(pytest.mark.azurite)


@pytest.fixture(scope="session")
def azurite() -> Iterator[AzuriteInstance]:
    with start_azurite() as instance:
        yield instance


@pytest.fixture
def local_lake(tmp_path: Path) -> LocalLake:
    return LocalLake(tmp_path / "lake")


@pytest.fixture
def blob_lake(azurite: AzuriteInstance) -> Iterator[BlobLake]:
    lake = BlobLake.from_connection_string(azurite.connection_string, chunk_bytes=256 * 1024)
    yield lake
    for container in lake.service.list_containers():
        lake.service.delete_container(container.name)


@pytest.fixture(params=["local", "blob"])
def lake(request: pytest.FixtureRequest) -> Lake:
    """Each test that takes ``lake`` runs against the local folder and against Azurite."""
    return request.getfixturevalue(f"{request.param}_lake")


@pytest.fixture
def invocation_id() -> str:
    return str(uuid.uuid4())
