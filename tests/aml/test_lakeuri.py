"""Lake paths as AML data URIs (one datastore per lake container) and back."""

from __future__ import annotations

import pytest

from shared.aml.lakeuri import LAKE_CONTAINERS, aml_path, canonical, datastore_names, lake_path, lake_uri


@pytest.mark.parametrize(
    ("path", "uri"),
    [
        ("curated", "azureml://datastores/lake_curated/paths/"),
        ("curated/", "azureml://datastores/lake_curated/paths/"),
        ("runs/r1/outputs/train/models", "azureml://datastores/lake_runs/paths/r1/outputs/train/models"),
        (
            "batches/week=2026-01-05/production/20260105",
            "azureml://datastores/lake_batches/paths/week=2026-01-05/production/20260105",
        ),
        ("models/northeast/files/abc", "azureml://datastores/lake_models/paths/northeast/files/abc"),
        ("oracle", "azureml://datastores/lake_oracle/paths/"),
    ],
)
def test_a_lake_path_is_its_containers_datastore_and_reads_back(path, uri):
    assert lake_uri(path) == uri
    assert lake_path(uri) == path.strip("/")
    assert lake_path(uri + "/") == path.strip("/")


@pytest.mark.parametrize("container", LAKE_CONTAINERS)
def test_every_container_round_trips(container):
    assert lake_path(lake_uri(f"{container}/a/b")) == f"{container}/a/b"
    assert lake_uri(container).startswith(f"azureml://datastores/lake_{container}/paths/")


def test_the_legacy_single_datastore_still_reads():
    assert lake_path("azureml://datastores/lake/paths/curated") == "curated"
    assert lake_path("azureml://datastores/lake/paths/models/n/files/1/") == "models/n/files/1"
    # a workspace-qualified URI, as AML answers a model's path
    full = "azureml://subscriptions/s/resourcegroups/rg/workspaces/ws/datastores/lake/paths/models/n/files/1/"
    assert lake_path(full) == "models/n/files/1"
    full = "azureml://subscriptions/s/resourceGroups/rg/workspaces/ws/datastores/lake_models/paths/n/files/1/"
    assert lake_path(full) == "models/n/files/1"
    assert canonical("azureml://datastores/lake/paths/curated/") == "azureml://datastores/lake_curated/paths/"
    # a legacy path whose first segment is no container reads back but is not rewritten
    assert lake_path("azureml://datastores/lake/paths/elsewhere/x") == "elsewhere/x"
    assert canonical("azureml://datastores/lake/paths/elsewhere/x") == "azureml://datastores/lake/paths/elsewhere/x"
    assert lake_path("azureml://datastores/lake/paths/") is None


@pytest.mark.parametrize(
    "uri",
    [
        "azureml://datastores/workspaceblobstore/paths/curated",
        "azureml://datastores/lake_unknown/paths/x",
        "azureml://datastores/lakehouse/paths/curated",
        "azureml:curated-data:2026-01-05",
        "curated/weather_daily",
        "https://account.blob.core.windows.net/curated/x",
    ],
)
def test_another_datastore_or_no_datastore_uri_is_not_the_lake(uri):
    assert lake_path(uri) is None
    assert canonical(uri) == uri


@pytest.mark.parametrize(
    "uri",
    [
        "azureml://datastores/lake_curated/paths/../raw",
        "azureml://datastores/lake_curated/paths/a/../../x",
        "azureml://datastores/lake/paths/curated/../../etc",
        "azureml://datastores/lake_runs/paths/./x",
    ],
)
def test_dot_segments_are_refused_when_reading(uri):
    with pytest.raises(ValueError, match=r"'\.\.'"):
        lake_path(uri)


@pytest.mark.parametrize("path", ["curated/../raw", "../curated", "runs/a/./b", "curated\\x"])
def test_dot_segments_are_refused_when_building(path):
    with pytest.raises(ValueError, match=r"'\.\.'"):
        lake_uri(path)


@pytest.mark.parametrize("path", ["", "/", "elsewhere/x", "production/2026"])
def test_a_path_outside_the_containers_has_no_uri(path):
    with pytest.raises(ValueError):
        lake_uri(path)


def test_the_datastore_names_are_one_per_container():
    assert datastore_names() == [f"lake_{c}" for c in LAKE_CONTAINERS]
    assert len(set(datastore_names())) == len(LAKE_CONTAINERS)


def test_the_scheme_is_case_insensitive():
    assert lake_path("AZUREML://datastores/lake_curated/paths/x") == "curated/x"
    assert lake_path("AzureML://datastores/lake/paths/curated/x") == "curated/x"
    with pytest.raises(ValueError, match=r"'\.\.'"):
        lake_path("AZUREML://datastores/lake_curated/paths/../raw")
    assert canonical("AZUREML://datastores/lake/paths/curated/") == "azureml://datastores/lake_curated/paths/"
    assert aml_path("AZUREML://datastores/lake/paths/curated/x") == "azureml://datastores/lake_curated/paths/x"
    assert aml_path("AZUREML:curated-data:2026-01-05") == "azureml:curated-data:2026-01-05"
