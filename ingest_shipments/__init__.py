"""Ingestion of raw/shipments/: a blob-arrival trigger and an HTTP route to (re)ingest a file.

The trigger binds an SDK-type `BlobClient` so that the worker never loads the blob into
memory; the ingestion service streams it from the lake in chunks.
"""

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob

from shared import http, runtime
from shared.ingestion import http as ingestion

bp = func.Blueprint()


@bp.function_name("ingest_shipments_blob")
@bp.blob_trigger(
    arg_name="client",
    path="raw/shipments/{name}",
    connection="LAKE_STORAGE",
    source=func.BlobSource(runtime.blob_trigger_source()),
)
def ingest_shipments_blob(client: blob.BlobClient, context: func.Context) -> None:
    ingestion.ingest_blob(
        f"{client.container_name}/{client.blob_name}", context.invocation_id, runtime.lake(), runtime.batch_signal()
    )


@bp.function_name("ingest_shipments_http")
@bp.route(route="ingest/shipments", methods=["POST"])
def ingest_shipments_http(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    answer = ingestion.reingest_request(
        "shipments", req.get_body(), context.invocation_id, runtime.lake(), runtime.batch_signal()
    )
    return func.HttpResponse(**http.response_fields(answer))
