"""The durable functions' names, in one place. The SDK schedules an activity or a
sub-orchestration by its Python function name (even where ``@function_name`` sets another), so
each name is that of the function it calls; the orchestrators' names are their starters' (in
``shared``, which starts them through a durable client)."""

from shared.mlops.start import ORCHESTRATOR as WEEKLY_BATCH
from shared.watch.routes import ORCHESTRATOR as WATCH

__all__ = ["BATCH_STEP", "CANCEL", "STATUS", "SUBMIT", "WATCH", "WEEKLY_BATCH"]

#: the watch's activities (:mod:`poll_aml_durable.pipeline_runs_watch`)
SUBMIT = "aml_submit_runs"
STATUS = "aml_runs_status"
CANCEL = "aml_cancel_run"
#: the weekly batch's activity (:mod:`poll_aml_durable.weekly_batch`)
BATCH_STEP = "batch_step"
