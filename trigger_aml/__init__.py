"""The ADF -> Azure ML bridge: submit, read and cancel AML pipeline runs over HTTP; and the
daily check of the production models' age."""

import logging

import azure.functions as func

from shared import clock, http, runtime
from shared.aml import runs
from shared.settings import get_settings

bp = func.Blueprint()
log = logging.getLogger(__name__)


def _respond(answer: http.Answer) -> func.HttpResponse:
    return func.HttpResponse(**http.response_fields(answer))


@bp.function_name("pipelines_list")
@bp.route(route="pipelines", methods=["GET"])
def pipelines_list(req: func.HttpRequest) -> func.HttpResponse:
    return _respond(runs.answer(lambda: runs.list_pipelines(runtime.catalog())))


@bp.function_name("pipeline_runs_submit")
@bp.route(route="pipelines/{pipeline}/runs", methods=["POST"])
def pipeline_runs_submit(req: func.HttpRequest) -> func.HttpResponse:
    pipeline = req.route_params["pipeline"]
    return _respond(
        runs.answer(
            lambda: runs.submit(
                runtime.aml_backend(), runtime.catalog(), pipeline, req.get_body(), http.origin(req.url)
            )
        )
    )


@bp.function_name("pipeline_runs_get")
@bp.route(route="pipelines/runs/{run_id}", methods=["GET"])
def pipeline_runs_get(req: func.HttpRequest) -> func.HttpResponse:
    return _respond(runs.answer(lambda: runs.get(runtime.aml_backend(), req.route_params["run_id"])))


@bp.function_name("pipeline_runs_cancel")
@bp.route(route="pipelines/runs/{run_id}/cancel", methods=["POST"])
def pipeline_runs_cancel(req: func.HttpRequest) -> func.HttpResponse:
    return _respond(runs.answer(lambda: runs.cancel(runtime.aml_backend(), req.route_params["run_id"])))


@bp.function_name("models_staleness_check")
@bp.timer_trigger(arg_name="timer", schedule="%FORECASTOPS_STALENESS_SCHEDULE%")
def models_staleness_check(timer: func.TimerRequest) -> None:
    from shared.aml.catalog import load_catalog
    from shared.mlops import staleness

    limit = load_catalog()["forecast"].gates.max_age_days or staleness.DEFAULT_STALE_DAYS
    now = clock.now()
    stale = staleness.check(runtime.registry(), now, limit)
    settings = get_settings()
    if stale and settings.stale_retrain == "at_once":
        from shared.ingestion.weeks import last_finished_week, latest_week

        signal = runtime.batch_signal()
        if signal is None:
            log.warning("staleness check: FORECASTOPS_BATCH_QUEUE is empty: the stale groups wait for the next batch")
            return
        week = latest_week(runtime.lake()) or last_finished_week(now)
        staleness.retrain_at_once(stale, week, signal)
