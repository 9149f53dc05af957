"""The daily staleness check of the production models (``models_staleness_check``): a model
older than the gates' max age is reported and, with ``FORECASTOPS_STALE_RETRAIN=at_once``, its
group's retrain is asked for on the batch queue at once."""

import logging

import azure.functions as func

from shared import clock, runtime
from shared.settings import get_settings

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("models_staleness_check")
@bp.timer_trigger(arg_name="timer", schedule="%FORECASTOPS_STALENESS_SCHEDULE%")
def models_staleness_check(timer: func.TimerRequest) -> None:
    from shared.aml.catalog import load_catalog
    from shared.mlops import staleness

    limit = staleness.limit(load_catalog()["forecast"].gates)
    now = clock.now()
    stale = staleness.check(runtime.registry(), now, limit)
    settings = get_settings()
    if stale and settings.stale_retrain == "at_once":
        from shared.weeks import last_finished_week, latest_week

        signal = runtime.batch_signal()
        if signal is None:
            log.warning("staleness check: FORECASTOPS_BATCH_QUEUE is empty: the stale groups wait for the next batch")
            return
        week = latest_week(runtime.lake()) or last_finished_week(now)
        staleness.retrain_at_once(stale, week, signal)
