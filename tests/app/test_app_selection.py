"""One code base, several apps: ``FORECASTOPS_FUNCTIONS`` selects the function folders the app
registers (issue: independent function apps). Each selection is indexed as the worker does."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest
from pydantic import ValidationError

from shared.settings import FUNCTION_FOLDERS, Settings, get_settings
from tests.drivers import ROOT_DIR, binding_problems

ROOT = ROOT_DIR

#: the apps the deployment creates (infra/main.bicep), and what each must expose
APPS = {
    "ingest_weather": {"ingest_weather_blob", "ingest_weather_http", "ingest_weather_queue", "ingest_weather_request"},
    "ingest_shipments": {
        "ingest_shipments_blob",
        "ingest_shipments_http",
        "ingest_shipments_queue",
        "ingest_shipments_request",
    },
    "ingest_demographics": {
        "ingest_demographics_blob",
        "ingest_demographics_http",
        "ingest_demographics_queue",
        "ingest_demographics_request",
    },
    "trigger_aml,poll_aml_durable": {
        "pipelines_list",
        "models_staleness_check",
        "pipeline_runs_submit",
        "pipeline_runs_get",
        "pipeline_runs_cancel",
        "pipeline_runs_watch_start",
        "pipeline_runs_watch_status",
        "pipeline_runs_watch_cancel",
        "watch_pipeline_runs",
        "aml_submit_runs",
        "aml_runs_status",
        "aml_cancel_run",
        "aml_job_event",
        "weekly_batch_http",
        "lineage_http",
        "weekly_batch_queue",
        "weekly_batch_schedule",
        "weekly_batch",
        "batch_step",
    },
}


def _index(monkeypatch: pytest.MonkeyPatch, selection: str) -> dict[str, object]:
    monkeypatch.setenv("FORECASTOPS_FUNCTIONS", selection)
    get_settings.cache_clear()
    try:
        import function_app

        app = importlib.reload(function_app).app
        return {f.get_function_name(): f for f in app.get_functions()}
    finally:
        monkeypatch.delenv("FORECASTOPS_FUNCTIONS")
        get_settings.cache_clear()
        importlib.reload(function_app)


@pytest.mark.parametrize("selection", list(APPS))
def test_each_app_indexes_exactly_its_own_functions(monkeypatch, selection):
    functions = _index(monkeypatch, selection)
    assert set(functions) == APPS[selection]
    assert all(binding_problems(f) == [] for f in functions.values())


def test_no_selection_registers_every_folder(monkeypatch):
    functions = _index(monkeypatch, "")
    assert set(functions) == set().union(*APPS.values())
    # every folder belongs to one of the apps above
    assert {name for selection in APPS for name in selection.split(",")} == set(FUNCTION_FOLDERS)


def test_an_unknown_folder_is_refused_with_the_known_ones():
    with pytest.raises(ValidationError, match="unknown function folder.*ingest_wether.*known: ingest_weather"):
        Settings(functions="ingest_wether")
    assert Settings(functions=" trigger_aml , poll_aml_durable ").function_folders() == [
        "trigger_aml",
        "poll_aml_durable",
    ]


def test_an_ingestion_app_does_not_import_the_bridge():
    code = (
        "import json, sys; import function_app; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('trigger_aml', 'poll_aml_durable', 'ingest_shipments') or m.startswith(('shared.aml', 'shared.watch', 'azure.ai.ml')))))"
    )
    env = {"PATH": "/usr/bin:/bin", "FORECASTOPS_FUNCTIONS": "ingest_weather"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_the_bridge_does_not_import_pyarrow_or_azure_ai_ml_at_start():
    """Cold start: the bridge reads the week index (readiness) but never counts rows, and builds
    its MLClient on first use; neither pyarrow nor azure-ai-ml is loaded when it indexes."""
    code = (
        "import json, sys; import function_app; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('pyarrow', 'pandas') "
        "or m.startswith('azure.ai.ml'))))"
    )
    env = {"PATH": "/usr/bin:/bin", "FORECASTOPS_FUNCTIONS": "trigger_aml,poll_aml_durable"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
