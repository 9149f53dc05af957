"""The ForecastOps function app: composition only."""

import azure.durable_functions as df
import azure.functions as func

import ingest_demographics
import ingest_shipments
import ingest_weather
import poll_aml_durable
import trigger_aml

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
for blueprint in (ingest_weather.bp, ingest_shipments.bp, ingest_demographics.bp, trigger_aml.bp, poll_aml_durable.bp):
    app.register_functions(blueprint)
