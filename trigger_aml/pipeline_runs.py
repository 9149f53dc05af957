"""The pipeline run routes: list the catalog, and submit, read and cancel AML pipeline runs
(``shared.aml.runs``), answering within seconds as ADF's Azure Function activity needs."""

import azure.functions as func

from shared import http, runtime
from shared.aml import runs

bp = func.Blueprint()


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
