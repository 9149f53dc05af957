"""The durable bridge's blueprint: the watch of AML pipeline runs
(:mod:`poll_aml_durable.pipeline_runs_watch`) and the weekly batch over it
(:mod:`poll_aml_durable.weekly_batch`); their functions' names are in
:mod:`poll_aml_durable.names`."""

import azure.durable_functions as df

from poll_aml_durable import pipeline_runs_watch, weekly_batch

bp = df.Blueprint()
# what the app's register_functions does with a blueprint (a Blueprint has no such method)
for part in (pipeline_runs_watch.bp, weekly_batch.bp):
    bp._function_builders.extend(part._function_builders)
