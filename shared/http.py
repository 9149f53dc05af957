"""HTTP answers as plain data, in one place: ``(status, JSON object, headers)``.

Every route answers a JSON object (ADF's Azure Function activity rejects anything else):
400 ``invalid_request`` with every problem as ``{field, message}``, other errors as
``{error, message}``, and never a stack trace. The function folders map an :data:`Answer`
onto ``func.HttpResponse``; the command line prints it.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

#: status code, JSON body, headers
Answer = tuple[int, dict[str, Any], dict[str, str]]
Problem = dict[str, str]

INTERNAL_MESSAGE = "an unexpected error; the app's logs have the details"


def problem(field: str, message: str) -> Problem:
    """A problem with one field of a request."""
    return {"field": field, "message": message}


def invalid_request(problems: list[Problem]) -> Answer:
    """400 listing every problem of the request."""
    return 400, {"error": "invalid_request", "problems": problems}, {}


def error(status: int, code: str, message: str, **extra: Any) -> Answer:
    """``{error, message, ...}``; ``retry_after_s`` also becomes the ``Retry-After`` header."""
    headers = {"Retry-After": str(extra["retry_after_s"])} if "retry_after_s" in extra else {}
    return status, {"error": code, "message": message, **extra}, headers


def internal_error() -> Answer:
    """The 500 answer, telling nothing of the cause."""
    return error(500, "internal_error", INTERNAL_MESSAGE)


#: how deeply a request body may nest arrays and objects (no route needs more than a few)
MAX_JSON_DEPTH = 64


def json_body(body: bytes | None) -> tuple[Any, list[Problem]]:
    """The request body as JSON (an empty body is ``{}``), or the problem with it: not JSON,
    or nested deeper than :data:`MAX_JSON_DEPTH` (which would exhaust the stack of whatever
    reads it next)."""
    too_deep = [problem("(body)", f"arrays and objects nested deeper than {MAX_JSON_DEPTH} levels")]
    try:
        data = json.loads(body) if body and body.strip() else {}
    except RecursionError:
        return None, too_deep
    except ValueError as e:
        return None, [problem("(body)", f"not JSON: {e}")]
    level, depth = [data], 0
    while level := [x for x in level if isinstance(x, dict | list)]:
        depth += 1
        if depth > MAX_JSON_DEPTH:
            return None, too_deep
        level = [v for x in level for v in (x.values() if isinstance(x, dict) else x)]
    return data, []


def origin(url: str) -> str:
    """``scheme://host[:port]`` of a request URL: where the status routes are served."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def guarded(call: Callable[[], Answer], on_error: Callable[[Exception], Answer | None] | None = None) -> Answer:
    """One API call, always as a JSON answer: ``on_error`` may turn a known exception into an
    answer; anything else is logged and answered 500, never with a stack trace."""
    try:
        return call()
    except Exception as e:
        return _failed(e, on_error)


async def guarded_async(
    call: Awaitable[Answer], on_error: Callable[[Exception], Answer | None] | None = None
) -> Answer:
    """:func:`guarded` for coroutines (the durable client's)."""
    try:
        return await call
    except Exception as e:
        return _failed(e, on_error)


def _failed(e: Exception, on_error: Callable[[Exception], Answer | None] | None) -> Answer:
    known = on_error(e) if on_error else None
    if known is not None:
        return known
    log.error("unexpected error", exc_info=e)
    return internal_error()


def response_fields(answer: Answer) -> dict[str, Any]:
    """The keyword arguments of ``azure.functions.HttpResponse`` for an answer, so that a
    function folder maps one with ``func.HttpResponse(**http.response_fields(answer))``. The
    body is strict JSON: NaN and infinities are null (Python would write ``NaN``)."""
    status, body, headers = answer
    text = json.dumps(json_safe(body), allow_nan=False)
    return {"body": text, "status_code": status, "headers": headers, "mimetype": "application/json"}


def json_safe(value: Any) -> Any:
    """``value`` with every float that JSON cannot carry (NaN, infinities) as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
