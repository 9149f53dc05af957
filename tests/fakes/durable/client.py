"""The worker's side of the durable client: ``call_http_function`` invokes an indexed DFApp HTTP starter with
a ``durable_client_input`` binding as the worker does, ``run_async`` runs the SDK's async code on a fresh
loop and closes the SDK's shared aiohttp session afterwards."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import azure.functions as func
from azure.durable_functions.models.utils import http_utils as _df_http_utils

from tests.fakes.durable.replay import find_function

__all__ = ["call_http_function", "run_async"]


def run_async(awaitable: Any) -> Any:
    """Run a coroutine on a fresh event loop, then close the SDK's shared aiohttp session.

    ``DurableOrchestrationClient`` keeps one module-level aiohttp ClientSession; it is tied to the loop that
    created it, and an unclosed session warns (ResourceWarning) when garbage-collected."""

    async def main() -> Any:
        try:
            return await awaitable
        finally:
            await _df_http_utils._close_session()

    return asyncio.run(main())


def call_http_function(
    function: Any, req: func.HttpRequest, client_binding_json: str, *, app: Any = None, **kwargs: Any
) -> func.HttpResponse:
    """Invoke an indexed DFApp HTTP function with a durable client binding the way the worker does.

    ``function`` is a FunctionBuilder, an azure.functions Function, or a function name (with ``app=``).
    ``durable_client_input`` replaced the user function with an ``async`` wrapper that takes the client
    binding as its JSON string and builds ``DurableOrchestrationClient`` itself; it is called with
    ``{<http trigger name>: req, <client name>: client_binding_json}`` and run with asyncio if it returns
    an awaitable (the SDK's aiohttp session is closed afterwards).
    """
    if isinstance(function, str):
        function = find_function(app, function)
    if hasattr(function, "_function") and hasattr(function._function, "get_user_function"):
        function = function._function
    trigger = function.get_trigger()
    client_names = [b.name for b in function.get_bindings() if b.type == "durableClient"]
    arguments = dict(kwargs)
    arguments[trigger.name if trigger is not None else "req"] = req
    arguments[client_names[0] if client_names else "client"] = client_binding_json
    result = function.get_user_function()(**arguments)
    if inspect.isawaitable(result):
        result = run_async(result)
    return result
