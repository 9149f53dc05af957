"""The durable extension's HTTP API as a loopback stub: ``DurableRpcStub`` serves the calls
``df.DurableOrchestrationClient`` makes (start, status, list, purge, raise event, terminate) from a
``DurableHost``, through a route table, and builds the client binding JSON that points the SDK at it."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fakes.durable.host import DurableHost
from tests.fakes.durable.instance import TERMINAL, InstanceState

__all__ = ["DurableRpcStub"]

API_PREFIXES = ("/durabletask/", "/runtime/webhooks/durabletask/")


@dataclass(frozen=True)
class _Call:
    """One API call as the handlers see it: the path's captured parts (unquoted), the query, the JSON body."""

    args: tuple[str | None, ...]  # None: an optional part the path left out
    query: dict[str, str]
    body: Any


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]  # full match on the path after the API prefix
    handler: Callable[[_Call], tuple[int, Any]]


class DurableRpcStub:
    """ThreadingHTTPServer on 127.0.0.1 answering the extension's HTTP API from a DurableHost.

    Every instance the host holds is visible (sub-orchestrations included: status, raise event, terminate);
    start_new accepts any orchestrator the host knows (``host.orchestrators``).

    ``on_start`` / ``on_event`` say what happens after start_new / raise_event: "run" (run the instance until
    it completes or only waits for an event), "advance" (until it waits on a timer), "none" (leave it Pending /
    just queue the event). Requests are recorded in ``requests`` as (method, path-with-query).
    """

    TASK_HUB = "TestHubName"
    CODE = "stub-code"

    def __init__(
        self, host: DurableHost, *, on_start: str = "run", on_event: str = "run", overridable: str | None = None
    ) -> None:
        self.host = host
        # the app's host.json setting: NonRunningStates refuses a second start of a live instance
        self.overridable = overridable or _host_setting("overridableExistingInstanceStates", "AnyState")
        self.on_start = on_start
        self.on_event = on_event
        self.requests: list[tuple[str, str]] = []
        self.routes = [
            _Route("POST", re.compile(r"orchestrators/([^/]*)(?:/([^/]*))?"), self._start_new),
            _Route("GET", re.compile(r"instances/([^/]*)"), self._get_status),
            _Route("DELETE", re.compile(r"instances/([^/]*)"), self._purge),
            _Route("POST", re.compile(r"instances/([^/]*)/raiseEvent/([^/]*)"), self._raise_event),
            _Route("POST", re.compile(r"instances/([^/]*)/terminate"), self._terminate),
        ]
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stub._handle(self, "GET")

            def do_POST(self) -> None:
                stub._handle(self, "POST")

            def do_DELETE(self) -> None:
                stub._handle(self, "DELETE")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, name="durable-rpc-stub", daemon=True
        )
        self.thread.start()

    # -- lifecycle --------------------------------------------------------------------------------
    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> DurableRpcStub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the client binding -----------------------------------------------------------------------
    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def rpc_base_url(self) -> str:
        return f"{self.origin}/durabletask/"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/runtime/webhooks/durabletask"

    def client_binding(self) -> dict[str, Any]:
        base, hub, code = self.base_url, self.TASK_HUB, self.CODE
        common = f"taskHub={hub}&connection=Storage&code={code}"
        return {
            "taskHubName": hub,
            "creationUrls": {
                "createNewInstancePostUri": f"{base}/orchestrators/{{functionName}}[/{{instanceId}}]?code={code}",
                "createAndWaitOnNewInstancePostUri": f"{base}/orchestrators/{{functionName}}[/{{instanceId}}]"
                f"?timeout={{timeoutInSeconds}}&pollingInterval="
                f"{{intervalInSeconds}}&code={code}",
            },
            "managementUrls": {
                "id": "INSTANCEID",
                "statusQueryGetUri": f"{base}/instances/INSTANCEID?{common}",
                "sendEventPostUri": f"{base}/instances/INSTANCEID/raiseEvent/{{eventName}}?{common}",
                "terminatePostUri": f"{base}/instances/INSTANCEID/terminate?reason={{text}}&{common}",
                "rewindPostUri": f"{base}/instances/INSTANCEID/rewind?reason={{text}}&{common}",
                "purgeHistoryDeleteUri": f"{base}/instances/INSTANCEID?{common}",
                "restartPostUri": f"{base}/instances/INSTANCEID/restart?{common}",
                "suspendPostUri": f"{base}/instances/INSTANCEID/suspend?reason={{text}}&{common}",
                "resumePostUri": f"{base}/instances/INSTANCEID/resume?reason={{text}}&{common}",
            },
            "baseUrl": base,
            "requiredQueryStringParameters": f"code={code}",
            "rpcBaseUrl": self.rpc_base_url,
            "httpBaseUrl": "",
            "maxGrpcMessageSizeInBytes": 0,
            "grpcHttpClientTimeout": "00:01:40",
        }

    def client_binding_json(self) -> str:
        """The string the Functions host passes to a ``durable_client_input`` binding."""
        return json.dumps(self.client_binding())

    def management_payload(self, instance_id: str) -> dict[str, str]:
        payload = {"id": instance_id}
        for key, url in self.client_binding()["managementUrls"].items():
            if key != "id":
                payload[key] = url.replace("INSTANCEID", instance_id)
        return payload

    # -- request handling -------------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        self.requests.append((method, handler.path))
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        try:
            status, payload = self._route(method, handler.path, body)
        except Exception as exc:  # report harness bugs as 500s instead of hanging the client
            status, payload = 500, {"Message": "stub error", "ExceptionMessage": f"{type(exc).__name__}: {exc}"}
        data = b"" if payload is None else json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _route(self, method: str, raw_path: str, body: bytes) -> tuple[int, Any]:
        url = urlsplit(raw_path)
        prefix = next((p for p in API_PREFIXES if url.path.startswith(p)), None)
        if prefix is None:
            return 404, {"Message": f"not a durable API path: {url.path}"}
        path = url.path[len(prefix) :]
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        # a JSON body; the SDK sends its already-serialized payload as a JSON string
        parsed = json.loads(body) if body.strip() else None
        for route in self.routes:
            match = route.pattern.fullmatch(path) if route.method == method else None
            if match is not None:
                args = tuple(unquote(g) if g is not None else None for g in match.groups())
                return route.handler(_Call(args, query, parsed))
        return 501, {"Message": f"DurableRpcStub does not implement {method} {url.path}"}

    def _start_new(self, call: _Call) -> tuple[int, Any]:
        name, instance_id = call.args
        if name not in self.host.orchestrators:
            return 400, {
                "Message": "One or more of the arguments submitted is incorrect",
                "ExceptionMessage": f"The function '{name}' doesn't exist, is disabled, or is not an "
                "orchestrator function. Additional info: No orchestrator functions "
                "are currently registered!",
                "ExceptionType": "System.ArgumentException",
            }
        existing = self._instance(instance_id) if instance_id else None
        if existing is not None and self.overridable == "NonRunningStates" and existing.runtime_status not in TERMINAL:
            return 500, {
                "Message": "An error has occurred.",
                "ExceptionMessage": f"An Orchestration instance with the status {existing.runtime_status} already exists.",
                "ExceptionType": "System.InvalidOperationException",
            }
        body = call.body
        input_json = body if isinstance(body, str) or body is None else json.dumps(body)
        instance_id = self.host.start(instance_id=instance_id or None, input_json=input_json, run=False, name=name)
        self._after(instance_id, self.on_start)
        return 202, self.management_payload(instance_id)

    def _instance(self, instance_id: str) -> InstanceState | None:
        return self.host.instances.get(instance_id)

    def _get_status(self, call: _Call) -> tuple[int, Any]:
        (instance_id,) = call.args
        if not instance_id:
            return 200, [s.to_status_json() for s in self.host.instances.values()]
        state = self._instance(instance_id)
        if state is None:
            return 404, None
        return (202 if state.runtime_status in ("Pending", "Running") else 200), state.to_status_json()

    def _purge(self, call: _Call) -> tuple[int, Any]:
        (instance_id,) = call.args
        if self._instance(instance_id) is None:
            return 404, None
        del self.host.instances[instance_id]
        return 200, {"instancesDeleted": 1}

    def _raise_event(self, call: _Call) -> tuple[int, Any]:
        instance_id, event_name = call.args
        state = self._instance(instance_id)
        if state is None:
            return 404, None
        if state.runtime_status in TERMINAL:
            return 410, None
        data_json = call.body if isinstance(call.body, str) else json.dumps(call.body)
        self.host.raise_event(instance_id, event_name, data_json=data_json)
        self._after(instance_id, self.on_event)
        return 202, None

    def _terminate(self, call: _Call) -> tuple[int, Any]:
        (instance_id,) = call.args
        state = self._instance(instance_id)
        if state is None:
            return 404, None
        if state.runtime_status in TERMINAL:
            return 410, None
        self.host.terminate(instance_id, call.query.get("reason", ""))
        return 202, None

    def _after(self, instance_id: str, mode: str) -> None:
        if mode == "run":
            self.host.run(instance_id)
        elif mode == "advance":
            self.host.advance(instance_id)
        elif mode != "none":
            raise ValueError(f"unknown mode {mode!r}")


def _host_setting(name: str, default: str) -> str:
    host = json.loads((Path(__file__).resolve().parents[3] / "host.json").read_text())
    return str(host.get("extensions", {}).get("durableTask", {}).get(name, default))
