"""The registry of sources and datasets (shared/sources.json) is the one statement of them: the
app reads it (function folders, raw folders, dataset facts), Bicep loads it, and what cannot read
it (azure.yaml, the ADF pipeline, pyproject's lists, the design card's folders) agrees with it."""

from __future__ import annotations

import json
import tomllib

import yaml
from azure.mgmt.datafactory import models

from shared import sources
from shared.ingestion import datasets
from shared.settings import FUNCTION_FOLDERS
from tests.drivers import ROOT_DIR

ROOT = ROOT_DIR


def test_every_source_feeds_a_dataset_with_a_schema_and_every_dataset_has_facts():
    assert set(sources.DATASETS) == set(datasets.MODELS)
    assert {s.name: s.dataset for s in sources.SOURCES} == datasets.SOURCES
    for d in sources.DATASETS.values():
        columns = datasets.spec(d.name).column_names
        assert d.key_column in columns
        assert d.date_column is None or d.date_column in columns
        assert d.region_key is None or d.region_key in columns


def test_the_app_registers_an_ingest_folder_per_source_and_each_folder_exists():
    assert FUNCTION_FOLDERS[: len(sources.SOURCES)] == sources.ingest_folders()
    for s in sources.SOURCES:
        assert (ROOT / s.folder / "__init__.py").is_file(), s.folder


def test_bicep_loads_the_registry_itself():
    assert "loadJsonContent('../shared/sources.json')" in (ROOT / "infra" / "main.bicep").read_text()
    assert "for s in registry.sources" in (ROOT / "infra" / "main.bicep").read_text()


def test_azure_yaml_has_a_service_per_source_and_the_bridge():
    services = list(yaml.safe_load((ROOT / "azure.yaml").read_text())["services"])
    assert services == [*(s.service for s in sources.SOURCES), "bridge"]


def test_the_adf_replay_routes_every_source_and_only_them():
    doc = json.loads((ROOT / "adf" / "pipeline" / "pl_weekly_forecast.json").read_text())
    pipeline = models.PipelineResource.deserialize(doc)
    (foreach,) = [a for a in pipeline.activities if isinstance(a, models.ForEachActivity)]
    (switch,) = foreach.activities
    assert [c.value for c in switch.cases] == [s.name for s in sources.SOURCES]


def test_pyproject_names_every_function_folder():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
    for listed in (
        tool["ruff"]["lint"]["isort"]["known-first-party"],
        tool["coverage"]["run"]["source"],
        tool["mypy"]["files"],
    ):
        assert set(FUNCTION_FOLDERS) <= set(listed)
