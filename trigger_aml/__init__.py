"""The ADF -> Azure ML bridge's blueprint: the pipeline run routes
(:mod:`trigger_aml.pipeline_runs`) and the daily staleness check of the production models
(:mod:`trigger_aml.models_staleness`)."""

import azure.functions as func

from trigger_aml import models_staleness, pipeline_runs

bp = func.Blueprint()
# what the app's register_functions does with a blueprint (a Blueprint has no such method)
for part in (pipeline_runs.bp, models_staleness.bp):
    bp._function_builders.extend(part._function_builders)
