"""What tests use to drive the product the way its users do: raw files into a lake, the
function app's indexed functions with the objects the Python worker would build, and a
re-implementation of the worker's load-time binding checks."""

from __future__ import annotations

import contextlib
import csv
import gzip
import inspect
import io
import json
import os
import re
import typing
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import azure.functions as func
from azure.functions import meta as func_meta
from azurefunctions.extensions.base import Datum
from azurefunctions.extensions.base import meta as ext_meta

from shared.lake import Lake

ROOT_DIR = Path(__file__).resolve().parent.parent

# raw layouts used across the tests (the vendor formats the mappings describe) ------------------
US_OBS_HEADER = "Zip,Obs Date,High (F),Low (F),Rain (in),Snow (in)"
DELIVERIES_HEADER = "store,sku,delivery_date,qty,returned_qty"
ERP_HEADER = "Store Nbr,Item Nbr,Week Ending,Cases Shipped,Units Per Case,Units Returned"
STORE_MASTER_HEADER = "StoreID,Zip,Region,Format,Population,Households,Median HH Income,Median Age"


def put(lake: Lake, path: str, content: str | bytes, *, gz: bool = False) -> str:
    data = content.encode() if isinstance(content, str) else content
    lake.write_bytes(path, gzip.compress(data, mtime=0) if gz else data)
    return path


def read_csv(lake: Lake, path: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(lake.read_bytes(path).decode())))


def read_json(lake: Lake, path: str) -> dict[str, Any]:
    return json.loads(lake.read_bytes(path))


def lines(*rows: str) -> str:
    return "\n".join(rows) + "\n"


# the function app --------------------------------------------------------------------------
#: a small generated world for the tests that run the whole main job: 8 groups, 40 weeks and one more
SMALL_WORLD = ("--regions", "2", "--stores-per-region", "2", "--skus", "4", "--weeks", "40")


def main_job(root: Path, *args: str) -> str:
    """The main job (``python -m shared run``) on the local lake ``root`` with ``args``, in the
    clean environment of conftest's ``clean_env`` (no app setting of the shell leaks in); asserts
    it succeeded and answers its output."""
    import pytest

    from shared.settings import get_settings
    from shared.tooling.cli import main
    from tests.conftest import app_setting

    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if app_setting(name):
                mp.delenv(name)
        get_settings.cache_clear()
        try:
            code = main(["--lake", str(root), "run", *args], out=out)
        finally:
            get_settings.cache_clear()
    assert code == 0, out.getvalue()
    return out.getvalue()


def indexed_functions() -> dict[str, Any]:
    """The app's functions by name, as the worker indexes them."""
    import function_app

    function_app.app.functions_bindings = {}  # get_functions() may be called once per app object
    return {f.get_function_name(): f for f in function_app.app.get_functions()}


def http_request(
    method: str,
    route: str,
    body: Any = None,
    params: dict[str, str] | None = None,
    route_params: dict[str, str] | None = None,
) -> func.HttpRequest:
    raw = body if isinstance(body, bytes) else (b"" if body is None else json.dumps(body).encode())
    return func.HttpRequest(
        method=method,
        url=f"http://localhost:7071/api/{route}",
        headers={"Content-Type": "application/json"},
        params=params or {},
        route_params=route_params or {},
        body=raw,
    )


def context(invocation_id: str) -> Any:
    return SimpleNamespace(invocation_id=invocation_id, function_name="test", function_directory=".")


def sdk_blob_client(connection_setting: str, container: str, blob_name: str) -> Any:
    """The BlobClient the worker builds for an SDK-type blob binding (via the extension's
    own converter, from the model binding data the host sends)."""
    from azurefunctions.extensions.bindings.blob import BlobClient, BlobClientConverter

    content = json.dumps({"Connection": connection_setting, "ContainerName": container, "BlobName": blob_name})
    mbd = SimpleNamespace(version="1.0", source="AzureStorageBlobs", content_type="application/json", content=content)
    return BlobClientConverter.decode(
        Datum(value=mbd, type="model_binding_data"), trigger_metadata={}, pytype=BlobClient
    )


class HostQueue:
    """A storage queue (Azurite's) as the Functions host reads it for a queue trigger: each
    visible message is received (its dequeue count rising each time), handed over as the
    ``QueueMessage`` the worker's own converter builds (base64 text, the trigger's default
    encoding), deleted once the function returns, left for its next attempt when it raises (it
    is visible again after ``retry_s``), and moved to ``<queue>-poison`` after ``max_dequeue``
    attempts."""

    def __init__(self, connection_string: str, name: str, max_dequeue: int = 5, retry_s: int = 1) -> None:
        from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

        def client(queue: str) -> Any:
            return QueueClient.from_connection_string(
                connection_string,
                queue,
                message_encode_policy=TextBase64EncodePolicy(),
                message_decode_policy=TextBase64DecodePolicy(),
            )

        self.name, self.max_dequeue, self.retry_s = name, max_dequeue, retry_s
        self.queue, self.poison = client(name), client(f"{name}-poison")

    def _receive(self, queue: Any) -> list[Any]:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return list(queue.receive_messages(max_messages=32, visibility_timeout=self.retry_s))
        except ResourceNotFoundError:
            return []

    def bodies(self, poison: bool = False) -> list[str]:
        """The texts of the messages waiting (visible ones), without taking them."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return [m.content for m in (self.poison if poison else self.queue).peek_messages(max_messages=32)]
        except ResourceNotFoundError:
            return []

    def deliver(self, function: Any, **arguments: Any) -> list[BaseException | None]:
        """One round: every visible message to ``function(msg=..., **arguments)``; what each
        call raised (None when it returned)."""
        from azure.core.exceptions import ResourceExistsError
        from azure.functions import meta
        from azure.functions.queue import QueueMessageInConverter

        outcomes: list[BaseException | None] = []
        for m in self._receive(self.queue):
            metadata = {
                "Id": meta.Datum(type="string", value=m.id),
                "DequeueCount": meta.Datum(type="json", value=str(m.dequeue_count)),
                "PopReceipt": meta.Datum(type="string", value=m.pop_receipt),
            }
            msg = QueueMessageInConverter.decode(meta.Datum(type="string", value=m.content), trigger_metadata=metadata)
            try:
                function(msg=msg, **arguments)
            except Exception as e:
                outcomes.append(e)
                if m.dequeue_count >= self.max_dequeue:
                    with contextlib.suppress(ResourceExistsError):
                        self.poison.create_queue()
                    self.poison.send_message(m.content)
                    self.queue.delete_message(m)
                continue
            outcomes.append(None)
            self.queue.delete_message(m)
        return outcomes


# the worker's load-time checks --------------------------------------------------------------
# Re-implemented from azure_functions_worker/functions.py (Registry.add_indexed_function,
# validate_function_params, get_function_return_type): the worker package on PyPI is a 2020
# release without indexing, and its successor needs Python 3.13.
_REGISTRY = func_meta.get_binding_registry()
_DEFERRED = ext_meta.get_binding_registry()
_OUT, _INOUT = 1, 2


class _Generic:
    @staticmethod
    def check_input_type_annotation(pytype: type) -> bool:
        return issubclass(pytype, (str, bytes))

    @staticmethod
    def check_output_type_annotation(pytype: type) -> bool:
        return issubclass(pytype, (str, bytes, bytearray))


def _converter(binding_type: str, deferred: bool = False) -> Any:
    conv = _DEFERRED.get(binding_type) if deferred else _REGISTRY.get(binding_type)
    return conv or _Generic


def _implicit_output(binding_type: str) -> bool:
    conv = _REGISTRY.get(binding_type)
    if conv is None:
        return binding_type != "durableClient"
    return getattr(conv, "has_implicit_output", lambda: False)()


def _is_out(annotation: Any) -> bool:
    origin = typing.get_origin(annotation) or annotation
    return isinstance(origin, type) and origin.__name__ == "Out"


def binding_problems(fn: Any) -> list[str]:
    """What the Python worker would refuse when loading ``fn``; empty when it loads."""
    name = fn.get_function_name()
    user = fn.get_user_function()
    params = dict(inspect.signature(user).parameters)
    hints = typing.get_type_hints(user)
    bound, explicit_return, return_type, errors = _read_bindings(name, fn.get_bindings())
    errors += _context_problems(name, params, bound, hints)
    if set(params) - set(bound):
        errors.append(f"{name}: parameters without a binding: {sorted(set(params) - set(bound))}")
    if set(bound) - set(params):
        errors.append(f"{name}: bindings without a parameter: {sorted(set(bound) - set(params))}")
    for pname in sorted(set(params) & set(bound)):
        annotation = hints.get(pname)
        if annotation is not None:
            errors += _parameter_problems(name, pname, bound[pname], annotation)
    if explicit_return and "return" in hints:
        errors += _return_problems(name, hints["return"], return_type)
    return errors


def _read_bindings(name: str, bindings: Any) -> tuple[dict[str, Any], bool, str | None, list[str]]:
    """(bindings by parameter name, whether '$return' is bound, the return binding's type, problems)."""
    errors = []
    bound: dict[str, Any] = {}
    explicit_return, return_type = False, None
    for b in bindings:
        if b.direction == _INOUT:
            errors.append(f"{name}: binding {b.name!r}: 'inout' is not supported")
        if b.name == "$return":
            if b.direction != _OUT:
                errors.append(f"{name}: '$return' must be an output binding")
            explicit_return, return_type = True, b.type
        else:
            bound[b.name] = b
            if _implicit_output(b.type) and not explicit_return:
                return_type = b.type
    return bound, explicit_return, return_type, errors


def _context_problems(name: str, params: dict[str, Any], bound: dict[str, Any], hints: dict[str, Any]) -> list[str]:
    """An unbound ``context`` parameter is the invocation context: taken out of ``params``, checked for its type."""
    if "context" not in params or "context" in bound:
        return []
    params.pop("context")
    ctx = hints.get("context")
    if ctx is not None and not (isinstance(ctx, type) and ctx.__name__ == "Context"):
        return [f"{name}: 'context' must be annotated azure.functions.Context"]
    return []


def _parameter_problems(name: str, pname: str, b: Any, annotation: Any) -> list[str]:
    deferred = bool(_DEFERRED.check_supported_type(annotation))
    is_out = _is_out(annotation)
    pytype = typing.get_args(annotation)[0] if is_out else annotation
    if not isinstance(pytype, type) and typing.get_origin(pytype) is None:
        return [f"{name}: {pname}: {annotation!r} is not a type"]
    if (b.direction == _OUT) != is_out:
        return [f"{name}: {pname}: direction and func.Out[...] annotation disagree"]
    btype = "generic" if pytype in (str, bytes) and not _implicit_output(b.type) else b.type
    conv = _converter(btype, deferred)
    try:
        ok = conv.check_output_type_annotation(pytype) if is_out else conv.check_input_type_annotation(pytype)
    except TypeError:
        ok = False
    return [] if ok else [f"{name}: {pname}: binding {b.type!r} does not accept {annotation!r}"]


def _return_problems(name: str, ret: Any, return_type: str | None) -> list[str]:
    if _is_out(ret) or not isinstance(ret, type):
        return [f"{name}: return annotation {ret!r} is not a type"]
    if not _converter(return_type).check_output_type_annotation(ret):
        return [f"{name}: return annotation {ret.__name__} does not fit {return_type!r}"]
    return []


# the forecast pipeline's step modules -------------------------------------------------------
FORECAST_SRC = ROOT_DIR / "pipelines" / "forecast" / "src"


def forecast_step_module(name: str) -> Any:
    """A module of the forecast pipeline's ``src/`` (the steps import each other by plain name,
    as they run on AML), imported the way the component's command line finds it."""
    import importlib
    import sys

    sys.path.insert(0, str(FORECAST_SRC))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(FORECAST_SRC))


def docs_text() -> str:
    """The README and the reference pages it links (docs/), in its order: the examples the
    tests run may stand on any of them."""
    readme = (ROOT_DIR / "README.md").read_text()
    pages = re.findall(r"^- \[[^\]]+\]\((docs/[^)]+\.md)\)", readme, re.M)
    return "\n".join([readme, *((ROOT_DIR / page).read_text() for page in pages)])
