"""The ForecastOps function app: composition only.

``FORECASTOPS_FUNCTIONS`` selects the function folders (blueprints) this app registers: all of
them by default (local development); in Azure one app per ingestion source and one for the
bridge (``trigger_aml,poll_aml_durable``), from this one code base. A folder not selected is
not even imported, so an ingestion app does not pay for the bridge's cold start.
"""

import importlib

import azure.durable_functions as df
import azure.functions as func

from shared.settings import get_settings

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
for folder in get_settings().function_folders():
    app.register_functions(importlib.import_module(folder).bp)
