"""Ingestion of raw/weather/: a blob-arrival trigger, the re-ingest route, the queue trigger that
runs a queued re-ingest, and the route that answers a queued request's state. The logic is
`shared.ingestion.entrypoints.blueprint`'s, the same for every source.

The blob trigger binds an SDK-type `BlobClient` so that the worker never loads the blob into
memory; the ingestion service streams it from the lake in chunks.
"""

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob

from shared import http, runtime
from shared.ingestion import entrypoints as ingestion

bp = func.Blueprint()
ingest = ingestion.blueprint("weather", runtime.ingestion)


@bp.function_name("ingest_weather_blob")
@bp.blob_trigger(
    arg_name="client",
    path="raw/weather/{name}",
    connection="LAKE_STORAGE",
    source=func.BlobSource(runtime.blob_trigger_source()),
)
def ingest_weather_blob(client: blob.BlobClient, context: func.Context) -> None:
    ingest.blob(f"{client.container_name}/{client.blob_name}", context.invocation_id)


@bp.function_name("ingest_weather_http")
@bp.route(route=ingest.route, methods=["POST"])
def ingest_weather_http(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    answer = ingest.post(req.get_body(), context.invocation_id, req.url, req.params.get("code"))
    return func.HttpResponse(**http.response_fields(answer))


@bp.function_name("ingest_weather_queue")
@bp.queue_trigger(arg_name="msg", queue_name=ingest.queue_binding, connection="LAKE_STORAGE")
def ingest_weather_queue(msg: func.QueueMessage, context: func.Context) -> None:
    ingest.queued(msg.get_body(), msg.dequeue_count, context.invocation_id)


@bp.function_name("ingest_weather_request")
@bp.route(route=ingest.status_route, methods=["GET"])
def ingest_weather_request(req: func.HttpRequest) -> func.HttpResponse:
    answer = ingest.status(req.route_params.get("request_id", ""), req.url, req.params.get("code"))
    return func.HttpResponse(**http.response_fields(answer))
