"""The ADF -> Azure ML bridge: submit, read and cancel AML pipeline runs over HTTP."""

import json

import azure.functions as func

from shared import runtime
from shared.aml import runs

bp = func.Blueprint()


def _respond(answer: runs.Answer) -> func.HttpResponse:
    status, body, headers = answer
    return func.HttpResponse(json.dumps(body), status_code=status, headers=headers, mimetype="application/json")


def _base_url(req: func.HttpRequest) -> str:
    return runs.origin(req.url)


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
            lambda: runs.submit(runtime.aml_backend(), runtime.catalog(), pipeline, req.get_body(), _base_url(req))
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
