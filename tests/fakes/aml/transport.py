"""The wire between ``MLClient`` and the fake: ``FakeTransport`` is an azure-core transport that hands each
request to the fake and wraps its ``Reply`` in azure-core's own response classes (so streaming behaves as with
the real transport); ``RecordedRequest`` is what the fake records of every request."""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import requests
from azure.core.pipeline.transport import HttpTransport, RequestsTransportResponse
from azure.core.rest import HttpRequest as RestHttpRequest
from azure.core.rest._requests_basic import RestRequestsTransportResponse
from requests.structures import CaseInsensitiveDict
from urllib3 import HTTPResponse as Urllib3Response

from tests.fakes.aml.contract import now_iso

if TYPE_CHECKING:
    from tests.fakes.aml.fake import FakeAML

__all__ = ["FakeTransport", "RecordedRequest", "Reply", "request_body"]

REASONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass
class RecordedRequest:
    method: str
    url: str
    path: str
    query: dict[str, str]
    json: Any
    headers: dict[str, str]
    body: bytes = b""

    @property
    def api_version(self) -> str | None:
        return self.query.get("api-version")


@dataclass
class Reply:
    """What the fake answers: a status, a JSON body (or raw bytes) and headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    content_type: str = "application/json; charset=utf-8"


def request_body(request: Any) -> bytes:
    """The body of an azure-core request, whichever request class it is."""
    for attr in ("content", "data", "body"):
        try:
            value = getattr(request, attr)
        except Exception:
            continue
        if value is None:
            continue
        if isinstance(value, bytes):
            return value
        if isinstance(value, str):
            return value.encode("utf-8")
    return b""


class FakeTransport(HttpTransport):
    """Synchronous azure.core transport answering from a FakeAML (no network)."""

    def __init__(self, fake: FakeAML) -> None:
        self._fake = fake

    def __enter__(self) -> FakeTransport:
        return self

    def __exit__(self, *args: Any) -> None:
        pass

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def send(self, request: Any, **kwargs: Any) -> Any:
        reply = self._fake._handle(request)
        if reply.raw is not None:
            data = reply.raw
        elif reply.body is None:
            data = b""
        else:
            data = json.dumps(reply.body).encode("utf-8")
        headers = {"x-ms-request-id": str(uuid.uuid4()), "Date": now_iso(), **reply.headers}
        if data or reply.status not in (202, 204):
            headers.setdefault("Content-Type", reply.content_type)
        headers["Content-Length"] = str(len(data))

        raw = Urllib3Response(
            body=io.BytesIO(data),
            headers=headers,
            status=reply.status,
            reason=REASONS.get(reply.status, ""),
            preload_content=False,
            decode_content=False,
        )
        resp = requests.Response()
        resp.status_code = reply.status
        resp.headers = CaseInsensitiveDict(headers)
        resp.raw = raw
        resp.reason = REASONS.get(reply.status, "")
        resp.url = request.url
        resp.encoding = "utf-8"

        block_size = 4096
        if isinstance(request, RestHttpRequest):
            rest = RestRequestsTransportResponse(request=request, internal_response=resp, block_size=block_size)
            if not kwargs.get("stream"):
                rest.read()
            return rest
        return RequestsTransportResponse(request, resp, block_size)
