"""In-process fake of the Azure ML REST surface that azure-ai-ml's ``MLClient`` talks to.

Usage::

    fake = FakeAML()
    fake.register_component("forecast_prepare", "1", "tests/data/aml/components/prepare.yml")
    ml_client = MLClient(
        credential=FakeCredential(),
        subscription_id=fake.subscription_id,
        resource_group_name=fake.resource_group,
        workspace_name=fake.workspace_name,
        transport=fake.transport(),
    )
    job = ml_client.jobs.create_or_update(load_job("tests/data/aml/pipeline.yml"))
    fake.script(job.name, ["Running", "Completed"])   # each GET of the job advances one step
    fake.fail(job.name, step="train", message="boom")   # pipeline + child 'train' Failed, error on the child run
    fake.set_metrics(child_run_id, {"mape": 0.3})       # answered on the MLflow REST endpoints
    fake.inject("GET", r"/jobs/nightly$", [429], headers={"Retry-After": "0"})
    fake.requests        # every request seen: RecordedRequest(method, url, path, query, json, headers)
    fake.unhandled       # requests that matched no route (they also raise AssertionError)

Response bodies follow the shapes of the real services (ARM/MFE ``JobBase`` / ``ComponentVersion`` /
``Workspace`` resources, Run History ``Run`` / ``PaginatedRunList`` / ``RunDetails``, the discovery document, and
MLflow's REST API ``runs/get`` / ``runs/search`` / ``metrics/get-history``). Responses are built with azure-core's
own ``RequestsTransportResponse`` / ``RestRequestsTransportResponse`` around an in-memory ``requests.Response``,
so ``stream=True``, ``read()``, ``stream_download()`` and ``iter_bytes()`` behave as with the real transport.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import yaml
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.pipeline.transport import HttpTransport, RequestsTransportResponse
from azure.core.rest import HttpRequest as RestHttpRequest
from azure.core.rest._requests_basic import RestRequestsTransportResponse
from requests.structures import CaseInsensitiveDict
from urllib3 import HTTPResponse as Urllib3Response

__all__ = ["FakeAML", "FakeCredential", "FakeTransport", "RecordedRequest", "make_jwt"]

ARM_HOST = "management.azure.com"
ML_RESOURCE = "https://ml.azure.com"
PROVIDER = "Microsoft.MachineLearningServices"
TERMINAL_STATUSES = ("Completed", "Failed", "Canceled", "NotResponding", "Paused")


# --------------------------------------------------------------------------------------------- credential
def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_jwt(claims: dict[str, Any]) -> str:
    """An unsigned (alg none-ish, RS256 header, dummy signature) JWT that PyJWT decodes with verify_signature=False."""
    header = {"typ": "JWT", "alg": "RS256", "kid": "fake-key"}
    return ".".join(
        [
            _b64url(json.dumps(header, separators=(",", ":")).encode()),
            _b64url(json.dumps(claims, separators=(",", ":")).encode()),
            _b64url(b"fake-signature"),
        ]
    )


class FakeCredential:
    """azure.core TokenCredential + SupportsTokenInfo. The token's ``aud`` is the requested scope's resource
    (``https://management.azure.com/.default`` -> ``https://management.azure.com``; ``https://ml.azure.com/.default``
    -> ``https://ml.azure.com``, which is what ``jobs.create_or_update`` checks for pipeline jobs)."""

    def __init__(
        self,
        tenant_id: str = "00000000-0000-0000-0000-0000000000aa",
        object_id: str = "00000000-0000-0000-0000-0000000000bb",
        upn: str = "forecastops@example.com",
    ) -> None:
        self.tenant_id = tenant_id
        self.object_id = object_id
        self.upn = upn
        self.scopes_requested: list[tuple[str, ...]] = []

    def _token(self, scopes: tuple[str, ...]) -> tuple[str, int]:
        self.scopes_requested.append(tuple(scopes))
        scope = scopes[0] if scopes else ML_RESOURCE + "/.default"
        aud = scope[: -len("/.default")] if scope.endswith("/.default") else scope
        aud = aud.rstrip("/")
        now = int(time.time())
        exp = now + 10 * 365 * 24 * 3600
        claims = {
            "aud": aud,
            "iss": f"https://sts.windows.net/{self.tenant_id}/",
            "iat": now,
            "nbf": now,
            "exp": exp,
            "oid": self.object_id,
            "tid": self.tenant_id,
            "sub": self.object_id,
            "upn": self.upn,
            "name": "ForecastOps Test",
            "appid": "00000000-0000-0000-0000-0000000000cc",
            "ver": "1.0",
        }
        return make_jwt(claims), exp

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        token, exp = self._token(scopes)
        return AccessToken(token, exp)

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        token, exp = self._token(scopes)
        return AccessTokenInfo(token, exp, token_type="Bearer", refresh_on=exp - 300)

    def close(self) -> None:
        pass

    def __enter__(self) -> FakeCredential:
        return self

    def __exit__(self, *args: Any) -> None:
        pass


# --------------------------------------------------------------------------------------------- records
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
class _Injection:
    method: str
    pattern: re.Pattern[str]
    statuses: list[int]
    headers: dict[str, str]
    body: Any
    forever: bool
    hits: int = 0


@dataclass
class _Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    content_type: str = "application/json; charset=utf-8"


_REASONS = {
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
_ERROR_CODES = {
    400: "UserError",
    401: "InvalidAuthenticationToken",
    403: "AuthorizationFailed",
    404: "ResourceNotFound",
    409: "Conflict",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def _now_ms() -> int:
    return int(time.time() * 1000)


# --------------------------------------------------------------------------------------------- transport
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
        headers = {"x-ms-request-id": str(uuid.uuid4()), "Date": _now(), **reply.headers}
        if data or reply.status not in (202, 204):
            headers.setdefault("Content-Type", reply.content_type)
        headers["Content-Length"] = str(len(data))

        raw = Urllib3Response(
            body=io.BytesIO(data),
            headers=headers,
            status=reply.status,
            reason=_REASONS.get(reply.status, ""),
            preload_content=False,
            decode_content=False,
        )
        resp = requests.Response()
        resp.status_code = reply.status
        resp.headers = CaseInsensitiveDict(headers)
        resp.raw = raw
        resp.reason = _REASONS.get(reply.status, "")
        resp.url = request.url
        resp.encoding = "utf-8"

        block_size = 4096
        if isinstance(request, RestHttpRequest):
            rest = RestRequestsTransportResponse(request=request, internal_response=resp, block_size=block_size)
            if not kwargs.get("stream"):
                rest.read()
            return rest
        return RequestsTransportResponse(request, resp, block_size)


# --------------------------------------------------------------------------------------------- the fake
class FakeAML:
    """Stateful fake of one AML workspace (ARM/MFE + discovery + Run History + MLflow)."""

    def __init__(
        self,
        subscription_id: str = "00000000-0000-0000-0000-000000000001",
        resource_group: str = "rg",
        workspace_name: str = "ws",
        location: str = "eastus",
    ) -> None:
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.workspace_name = workspace_name
        self.location = location
        self.workspace_id = str(uuid.UUID(int=0xF0F0))
        self.region_host = f"{location}.api.azureml.ms"
        self.api_url = f"https://{self.region_host}"
        self.discovery_url = f"{self.api_url}/discovery"
        self.ws_scope = (
            f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"
            f"/providers/{PROVIDER}/workspaces/{workspace_name}"
        )
        self.mlflow_tracking_uri = f"azureml://{self.region_host}/mlflow/v1.0{self.ws_scope}"
        self.components: dict[str, dict[str, dict[str, Any]]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.children: dict[str, list[dict[str, Any]]] = {}
        self.runs: dict[str, dict[str, Any]] = {}  # run history Run bodies for children (by run id)
        self.scripts: dict[str, list[str]] = {}
        self.mlflow_runs: dict[str, dict[str, Any]] = {}
        self.experiments: dict[str, str] = {}
        self.requests: list[RecordedRequest] = []
        self.unhandled: list[RecordedRequest] = []
        self._injections: list[_Injection] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ public helpers
    def transport(self) -> FakeTransport:
        return FakeTransport(self)

    @property
    def workspace(self) -> dict[str, Any]:
        return self._workspace_body()

    def arm_id(self, kind: str, name: str, version: str | None = None) -> str:
        rid = f"{self.ws_scope}/{kind}/{name}"
        return f"{rid}/versions/{version}" if version is not None else rid

    def register_component(self, name: str, version: str | int, spec: dict[str, Any] | str | Path) -> dict[str, Any]:
        if not isinstance(spec, dict):
            spec = yaml.safe_load(Path(spec).read_text())
        version = str(version)
        spec = {**copy.deepcopy(spec), "name": name, "version": version}
        body = {
            "id": self.arm_id("components", name, version),
            "name": version,
            "type": f"{PROVIDER}/workspaces/components/versions",
            "properties": {
                "description": spec.get("description"),
                "tags": spec.get("tags", {}),
                "properties": {},
                "isAnonymous": False,
                "isArchived": False,
                "componentSpec": spec,
                "provisioningState": "Succeeded",
                "stage": None,
            },
            "systemData": self._system_data(),
        }
        self.components.setdefault(name, {})[version] = body
        return body

    def script(self, job_name: str, statuses: list[str]) -> None:
        """Each MFE GET of the job consumes one status (pipeline children follow); the last one sticks."""
        self.scripts[job_name] = list(statuses)

    def set_status(self, job_name: str, status: str) -> None:
        self._set_status(job_name, status)

    def fail(
        self, job_name: str, step: str | None = None, message: str = "Step failed", code: str = "UserError"
    ) -> None:
        """Mark a job Failed. For a pipeline, ``step`` names the failing child: that child is Failed with ``error``
        (Run History ErrorResponse shape), earlier steps Completed, later ones Canceled."""
        self.scripts.pop(job_name, None)
        error = self._error_response(code, message, target=step)
        if job_name in self.children and step is not None:
            seen = False
            for child in self.children[job_name]:
                if child["name"] == step:
                    seen = True
                    child["status"] = "Failed"
                    child["error"] = error
                    child["endTimeUtc"] = _now()
                elif not seen:
                    child["status"] = "Completed"
                    child["endTimeUtc"] = _now()
                else:
                    child["status"] = "Canceled"
            if not seen:
                raise KeyError(f"pipeline {job_name} has no step {step!r}")
        elif job_name in self.runs:
            self.runs[job_name]["status"] = "Failed"
            self.runs[job_name]["error"] = error
        self._set_status(job_name, "Failed", propagate=False)
        job = self.jobs.get(job_name)
        if job is not None:
            if step is not None and job_name in self.children:
                # what AML puts on the pipeline (parent) run; the step's own error is on the child run
                error = self._error_response(
                    "UserError",
                    f"Pipeline has failed child jobs. Failed nodes: /{step}. For more details and logs, please go to "
                    "the job detail page and check the child jobs.",
                )
            job["_error"] = error
            if step is not None:
                job["_failed_step"] = step

    def child_runs(self, job_name: str) -> list[dict[str, Any]]:
        return self.children.get(job_name, [])

    def child_run(self, job_name: str, step: str) -> dict[str, Any]:
        for child in self.children.get(job_name, []):
            if child["name"] == step:
                return child
        raise KeyError(step)

    def set_metrics(
        self,
        run_id: str,
        metrics: dict[str, float],
        params: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        run = self._mlflow_run(run_id)
        ts = _now_ms()
        for key, value in metrics.items():
            run["metrics"][key] = {"key": key, "value": float(value), "timestamp": ts, "step": 0}
        run["params"].update(params or {})
        run["tags"].update(tags or {})

    def inject(
        self,
        method: str,
        path_regex: str,
        statuses: int | list[int],
        *,
        headers: dict[str, str] | None = None,
        body: Any = None,
        forever: bool = False,
    ) -> None:
        """Answer the next matching requests (``re.search`` on the URL path, method ``"*"`` for any) with
        ``statuses`` in order, then pass through (``forever=True``: keep answering the last status).
        ``body`` defaults to AML's error shape for the status."""
        if isinstance(statuses, int):
            statuses = [statuses]
        self._injections.append(
            _Injection(method.upper(), re.compile(path_regex), list(statuses), dict(headers or {}), body, forever)
        )

    def requests_to(self, method: str, path_regex: str) -> list[RecordedRequest]:
        rx = re.compile(path_regex)
        return [r for r in self.requests if r.method == method.upper() and rx.search(r.path)]

    # ------------------------------------------------------------------ dispatch
    def _handle(self, request: Any) -> _Reply:
        method = request.method.upper()
        url = request.url
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        raw_body = _request_body(request)
        parsed: Any = None
        if raw_body:
            try:
                parsed = json.loads(raw_body)
            except (ValueError, UnicodeDecodeError):
                parsed = None
        rec = RecordedRequest(method, url, parts.path, query, parsed, dict(request.headers), raw_body)
        with self._lock:
            self.requests.append(rec)
            injected = self._injected(rec)
            if injected is not None:
                return injected
            reply = self._route(rec, parts.netloc.lower())
            if reply is None:
                self.unhandled.append(rec)
                raise AssertionError(f"FakeAML: no route for {method} {url}")
            return reply

    def _injected(self, rec: RecordedRequest) -> _Reply | None:
        for inj in self._injections:
            if inj.method not in ("*", rec.method) or not inj.pattern.search(rec.path):
                continue
            if inj.hits >= len(inj.statuses) and not inj.forever:
                continue
            status = inj.statuses[min(inj.hits, len(inj.statuses) - 1)]
            inj.hits += 1
            body = inj.body
            if body is None and status >= 400:
                body = self._arm_error(status, rec)
            return _Reply(status, body, dict(inj.headers))
        return None

    def _route(self, rec: RecordedRequest, host: str) -> _Reply | None:
        path = rec.path
        m = rec.method
        ws = re.escape(self.ws_scope)
        if host == ARM_HOST or host == self.region_host:
            if m == "GET" and re.fullmatch(ws, path, re.I):
                return _Reply(200, self._workspace_body())
            if (mm := re.fullmatch(ws + r"/components/([^/]+)/versions/([^/]+)", path, re.I)) and m == "GET":
                return self._get_component(*mm.groups(), rec)
            if (mm := re.fullmatch(ws + r"/jobs/([^/]+)", path, re.I)) is not None:
                if m == "PUT":
                    return self._put_job(mm.group(1), rec)
                if m == "GET":
                    return self._get_job(mm.group(1), rec)
            if (mm := re.fullmatch(ws + r"/jobs/([^/]+)/cancel", path, re.I)) and m == "POST":
                return self._cancel_job(mm.group(1), rec)
            if re.fullmatch(ws + r"/jobs", path, re.I) and m == "GET":
                return self._list_jobs(rec)
            if (
                mm := re.fullmatch(
                    r"/subscriptions/[^/]+/providers/" + PROVIDER + r"/locations/[^/]+/mfeOperationResults/([^/]+)",
                    path,
                    re.I,
                )
            ) and m == "GET":
                return self._operation_result(mm.group(1), rec)
        if host == self.region_host:
            if path.rstrip("/") == "/discovery" and m == "GET":
                return _Reply(200, self._discovery_body())
            hist = r"/history/v1\.0" + ws
            if (mm := re.fullmatch(hist + r"/runs/([^/]+)/children", path, re.I)) and m in ("GET", "POST"):
                return self._run_children(mm.group(1), rec)
            if (mm := re.fullmatch(hist + r"/runs/([^/]+)/details", path, re.I)) and m == "GET":
                return self._run_details(mm.group(1), rec)
            if (mm := re.fullmatch(hist + r"/runs/([^/]+)", path, re.I)) and m == "GET":
                return self._get_run(mm.group(1), rec)
            mlf = r"/mlflow/v[12]\.0" + ws + r"/api/2\.0/mlflow"
            if re.fullmatch(mlf + r"/runs/get", path, re.I) and m == "GET":
                return self._mlflow_get_run(rec)
            if re.fullmatch(mlf + r"/runs/search", path, re.I) and m == "POST":
                return self._mlflow_search(rec)
            if re.fullmatch(mlf + r"/metrics/get-history", path, re.I) and m == "GET":
                return self._mlflow_metric_history(rec)
        return None

    # ------------------------------------------------------------------ bodies
    def _system_data(self) -> dict[str, Any]:
        return {
            "createdAt": _now(),
            "createdBy": "ForecastOps Test",
            "createdByType": "User",
            "lastModifiedAt": _now(),
            "lastModifiedBy": "ForecastOps Test",
            "lastModifiedByType": "User",
        }

    def _workspace_body(self) -> dict[str, Any]:
        rg = f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}/providers"
        return {
            "id": self.ws_scope,
            "name": self.workspace_name,
            "type": f"{PROVIDER}/workspaces",
            "location": self.location,
            "tags": {},
            "kind": "Default",
            "sku": {"name": "Basic", "tier": "Basic"},
            "identity": {
                "type": "SystemAssigned",
                "principalId": "00000000-0000-0000-0000-0000000000dd",
                "tenantId": "00000000-0000-0000-0000-0000000000aa",
            },
            "properties": {
                "friendlyName": self.workspace_name,
                "description": "",
                "storageAccount": f"{rg}/Microsoft.Storage/storageAccounts/wsstorage",
                "keyVault": f"{rg}/Microsoft.Keyvault/vaults/wskeyvault",
                "applicationInsights": f"{rg}/Microsoft.insights/components/wsinsights",
                "containerRegistry": None,
                "hbiWorkspace": False,
                "provisioningState": "Succeeded",
                "workspaceId": self.workspace_id,
                "discoveryUrl": self.discovery_url,
                "mlFlowTrackingUri": self.mlflow_tracking_uri,
                "publicNetworkAccess": "Enabled",
                "v1LegacyMode": False,
                "enableDataIsolation": False,
                "storageHnsEnabled": False,
            },
            "systemData": self._system_data(),
        }

    def _discovery_body(self) -> dict[str, str]:
        return {
            "api": self.api_url,
            "catalog": "https://catalog.cortanaanalytics.com",
            "experimentation": self.api_url,
            "gremlin": self.api_url,
            "history": self.api_url,
            "instance": self.api_url,
            "modelmanagement": self.api_url,
            "pipelines": self.api_url,
            "studiometadata": self.api_url,
        }

    def _error_response(self, code: str, message: str, target: str | None = None, inner: str | None = None) -> dict:
        return {
            "error": {
                "code": code,
                "severity": None,
                "message": message,
                "messageFormat": None,
                "messageParameters": {},
                "referenceCode": None,
                "detailsUri": None,
                "target": target,
                "details": [],
                "innerError": {"code": inner, "innerError": None} if inner else None,
                "additionalInfo": [],
            },
            "correlation": {"operation": uuid.uuid4().hex, "request": uuid.uuid4().hex[:16]},
            "environment": self.location,
            "location": self.location,
            "time": _now(),
            "componentName": "mfe",
        }

    def _arm_error(self, status: int, rec: RecordedRequest) -> dict[str, Any]:
        code = _ERROR_CODES.get(status, "UserError")
        if status == 403:
            action = {"GET": "read", "PUT": "write", "DELETE": "delete"}.get(rec.method, "action")
            scope = re.sub(r"^/(mlflow|history)/v[12]\.0", "", rec.path)
            msg = (
                f"The client 'forecastops@example.com' with object id '00000000-0000-0000-0000-0000000000bb' does not "
                f"have authorization to perform action '{PROVIDER}/workspaces/jobs/{action}' over scope '{scope}' "
                "or the scope is invalid. If access was recently granted, please refresh your credentials."
            )
            return {"error": {"code": code, "message": msg}}
        if status == 429:
            return {"error": {"code": code, "message": "Rate limit exceeded. Please retry after some time."}}
        if status == 404:
            return self._error_response("UserError", "The specified resource was not found.", inner="NotFoundError")
        return {"error": {"code": code, "message": f"Injected HTTP {status}."}}

    def _not_found(self, what: str) -> _Reply:
        body = self._error_response("UserError", f"Could not find {what}.", inner="NotFoundError")
        return _Reply(404, body, {"x-ms-response-type": "error"})

    # ------------------------------------------------------------------ components
    def _get_component(self, name: str, version: str, rec: RecordedRequest) -> _Reply:
        body = self.components.get(name, {}).get(version)
        if body is None:
            return self._not_found(f"component {name}:{version} in workspace {self.workspace_name}")
        return _Reply(200, body)

    # ------------------------------------------------------------------ jobs
    def _experiment_id(self, name: str) -> str:
        return self.experiments.setdefault(name, str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.ws_scope}/{name}")))

    def _services(self, name: str) -> dict[str, Any]:
        return {
            "Tracking": {
                "jobServiceType": "Tracking",
                "port": None,
                "endpoint": self.mlflow_tracking_uri,
                "status": None,
                "errorMessage": None,
                "properties": None,
                "nodes": None,
            },
            "Studio": {
                "jobServiceType": "Studio",
                "port": None,
                "endpoint": f"https://ml.azure.com/runs/{name}?wsid={self.ws_scope}",
                "status": None,
                "errorMessage": None,
                "properties": None,
                "nodes": None,
            },
        }

    def _put_job(self, name: str, rec: RecordedRequest) -> _Reply:
        sent = rec.json or {}
        props = copy.deepcopy(sent.get("properties", {}))
        created = name not in self.jobs
        experiment = props.get("experimentName") or "Default"
        props["experimentName"] = experiment
        props.setdefault("displayName", name)
        props.setdefault("isArchived", False)
        props["status"] = "NotStarted"
        props["services"] = self._services(name)
        server_props = dict(props.get("properties") or {})
        if props.get("jobType") == "Pipeline":
            server_props.update(
                {
                    "azureml.runsource": "azureml.PipelineRun",
                    "runSource": "MFE",
                    "runType": "HTTP",
                    "azureml.parameters": json.dumps(
                        {k: v.get("value") for k, v in (props.get("inputs") or {}).items() if "value" in v}
                    ),
                    "azureml.continue_on_step_failure": "False",
                    "azureml.continue_on_failed_optional_input": "True",
                    "azureml.pipelineComponent": "pipelinerun",
                    "azureml.pipelines.stages": '{"Initialization":null,"Execution":"NotStarted"}',
                }
            )
        props["properties"] = server_props
        body = {
            "id": self.arm_id("jobs", name),
            "name": name,
            "type": f"{PROVIDER}/workspaces/jobs",
            "properties": props,
            "systemData": self._system_data(),
        }
        self._experiment_id(experiment)
        self.jobs[name] = {"sent": copy.deepcopy(sent), "body": body}
        self._mlflow_run(name, experiment=experiment, run_name=props.get("displayName"))
        if props.get("jobType") == "Pipeline":
            self._create_children(name, props)
        return _Reply(201 if created else 200, body)

    def _create_children(self, parent: str, props: dict[str, Any]) -> None:
        experiment = props["experimentName"]
        children = []
        for i, (step, node) in enumerate((props.get("jobs") or {}).items()):
            run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{parent}/{step}"))
            component_id = node.get("componentId") or ""
            cm = re.search(r"/components/([^/]+)/versions/([^/]+)$", component_id)
            node_id = uuid.uuid5(uuid.NAMESPACE_OID, f"{parent}/{step}").hex[:8]
            run = {
                "runNumber": 1000 + i,
                "rootRunId": parent,
                "createdUtc": _now(),
                "createdBy": {
                    "userObjectId": "00000000-0000-0000-0000-0000000000bb",
                    "userTenantId": "00000000-0000-0000-0000-0000000000aa",
                    "userName": "ForecastOps Test",
                    "upn": "forecastops@example.com",
                },
                "userId": "00000000-0000-0000-0000-0000000000bb",
                "runUuid": str(uuid.uuid4()),
                "parentRunUuid": None,
                "rootRunUuid": None,
                "runId": run_id,
                "parentRunId": parent,
                "experimentId": self._experiment_id(experiment),
                "status": "NotStarted",
                "startTimeUtc": None,
                "endTimeUtc": None,
                "displayName": node.get("displayName") or step,
                "name": step,
                "description": node.get("description"),
                "hidden": False,
                "runType": "azureml.StepRun",
                "runTypeV2": {"orchestrator": None, "traits": [], "attribution": "Aether", "computeType": "AmlCompute"},
                "properties": {
                    "ContentSnapshotId": str(uuid.uuid4()),
                    "StepType": "CommandStep",
                    "azureml.moduleid": str(uuid.uuid4()),
                    "azureml.moduleName": cm.group(1) if cm else step,
                    "azureml.moduleVersion": cm.group(2) if cm else None,
                    "azureml.runsource": "azureml.StepRun",
                    "azureml.nodeid": node_id,
                    "azureml.pipelinerunid": parent,
                    "azureml.pipeline": parent,
                    "azureml.rootpipelinerunid": parent,
                    "azureml.pipelineComponent": "masterescloud",
                    "_azureml.ComputeTargetType": "amlctrain",
                },
                "parameters": {},
                "tags": {"azureml.nodeid": node_id, "azureml.pipeline": parent},
                "services": {},
                "target": (props.get("computeId") or "").rsplit("/", 1)[-1] or None,
                "compute": {"target": (props.get("computeId") or "").rsplit("/", 1)[-1], "targetType": "AmlCompute"},
                "error": None,
                "warnings": None,
                "createdFrom": None,
                "lastModifiedUtc": _now(),
            }
            children.append(run)
            self.runs[run_id] = run
            self._mlflow_run(
                run_id,
                experiment=experiment,
                run_name=run["displayName"],
                tags={"mlflow.parentRunId": parent, "mlflow.rootRunId": parent, "azureml.nodeid": node_id},
            )
        self.children[parent] = children

    def _set_status(self, name: str, status: str, propagate: bool = True) -> None:
        job = self.jobs.get(name)
        if job is not None:
            job["body"]["properties"]["status"] = status
            if propagate:
                self._propagate_to_children(name, status)
        elif name in self.runs:
            self.runs[name]["status"] = status
        mlflow_status = {"Completed": "FINISHED", "Failed": "FAILED", "Canceled": "KILLED"}.get(status, "RUNNING")
        if name in self.mlflow_runs:
            self.mlflow_runs[name]["status"] = mlflow_status

    def _propagate_to_children(self, parent: str, status: str) -> None:
        """Parent Running: first unfinished step Running, the rest NotStarted. Parent terminal: unfinished steps
        take the parent's status. Other parent statuses (Queued, Preparing, ...) leave the steps alone."""
        pending = [c for c in self.children.get(parent, []) if c["status"] not in TERMINAL_STATUSES]
        if status == "Running":
            for i, child in enumerate(pending):
                child["status"] = "Running" if i == 0 else "NotStarted"
                if i == 0:
                    child["startTimeUtc"] = child["startTimeUtc"] or _now()
        elif status in TERMINAL_STATUSES:
            for child in pending:
                child["status"] = status
                child["startTimeUtc"] = child["startTimeUtc"] or _now()
                child["endTimeUtc"] = _now()
        for child in self.children.get(parent, []):
            if child["runId"] in self.mlflow_runs:
                self.mlflow_runs[child["runId"]]["status"] = {
                    "Completed": "FINISHED",
                    "Failed": "FAILED",
                    "Canceled": "KILLED",
                }.get(child["status"], "RUNNING")

    def _advance(self, name: str) -> None:
        steps = self.scripts.get(name)
        if steps:
            status = steps.pop(0) if len(steps) > 1 else steps[0]
            self._set_status(name, status)

    def _get_job(self, name: str, rec: RecordedRequest) -> _Reply:
        job = self.jobs.get(name)
        if job is None:
            if name in self.runs:
                # pipeline child job: MFE answers with no "properties" (the SDK then falls back to Run History)
                return _Reply(
                    200, {"id": self.arm_id("jobs", name), "name": name, "type": f"{PROVIDER}/workspaces/jobs"}
                )
            return self._not_found(f"job {name} in workspace {self.workspace_name}")
        self._advance(name)
        return _Reply(200, job["body"])

    def _list_jobs(self, rec: RecordedRequest) -> _Reply:
        values = [j["body"] for j in self.jobs.values()]
        return _Reply(200, {"value": values, "nextLink": None})

    def _cancel_job(self, name: str, rec: RecordedRequest) -> _Reply:
        job = self.jobs.get(name)
        if job is None:
            return self._not_found(f"job {name} in workspace {self.workspace_name}")
        self.scripts.pop(name, None)
        status = job["body"]["properties"]["status"]
        if status not in TERMINAL_STATUSES:
            self._set_status(name, "CancelRequested", propagate=False)
            job["_cancel_pending"] = True
        op = f"jc:{uuid.uuid5(uuid.NAMESPACE_URL, name)}"
        job["_cancel_op"] = op
        api = rec.api_version or "2023-02-01-preview"
        loc = (
            f"https://{ARM_HOST}/subscriptions/{self.subscription_id}/providers/{PROVIDER}/locations/{self.location}"
            f"/mfeOperationResults/{op}?api-version={api}"
        )
        return _Reply(202, None, {"Location": loc, "Retry-After": "0", "x-ms-async-operation-timeout": "PT1H"})

    def _operation_result(self, op: str, rec: RecordedRequest) -> _Reply:
        for name, job in self.jobs.items():
            if job.get("_cancel_op") == op:
                if job.pop("_cancel_pending", False):
                    self._set_status(name, "Canceled")
                return _Reply(200, None)
        return self._not_found(f"operation {op}")

    # ------------------------------------------------------------------ run history
    def _run_children(self, run_id: str, rec: RecordedRequest) -> _Reply:
        if run_id not in self.children and run_id not in self.jobs and run_id not in self.runs:
            return self._not_found(f"run {run_id}")
        kids = self.children.get(run_id, [])
        top = rec.query.get("$top")
        if top:
            kids = kids[: int(top)]
        return _Reply(200, {"value": kids, "continuationToken": None, "nextLink": None})

    def _run_body(self, run_id: str) -> dict[str, Any] | None:
        if run_id in self.runs:
            return self.runs[run_id]
        job = self.jobs.get(run_id)
        if job is None:
            return None
        props = job["body"]["properties"]
        return {
            "runId": run_id,
            "rootRunId": run_id,
            "parentRunId": None,
            "experimentId": self._experiment_id(props["experimentName"]),
            "status": props["status"],
            "displayName": props.get("displayName"),
            "name": run_id,
            "runType": "azureml.PipelineRun" if props.get("jobType") == "Pipeline" else "azureml.scriptrun",
            "properties": props.get("properties", {}),
            "tags": props.get("tags", {}),
            "error": job.get("_error"),
            "target": (props.get("computeId") or "").rsplit("/", 1)[-1] or None,
        }

    def _get_run(self, run_id: str, rec: RecordedRequest) -> _Reply:
        body = self._run_body(run_id)
        return self._not_found(f"run {run_id}") if body is None else _Reply(200, body)

    def _run_details(self, run_id: str, rec: RecordedRequest) -> _Reply:
        run = self._run_body(run_id)
        if run is None:
            return self._not_found(f"run {run_id}")
        body = {
            "runId": run["runId"],
            "runUuid": run.get("runUuid"),
            "parentRunUuid": None,
            "rootRunUuid": None,
            "target": run.get("target"),
            "status": run["status"],
            "parentRunId": run.get("parentRunId"),
            "dataContainerId": f"dcid.{run['runId']}",
            "createdTimeUtc": _now(),
            "startTimeUtc": run.get("startTimeUtc"),
            "endTimeUtc": run.get("endTimeUtc"),
            "error": run.get("error"),
            "warnings": run.get("warnings"),
            "tags": run.get("tags", {}),
            "properties": run.get("properties", {}),
            "parameters": {},
            "services": {},
            "inputDatasets": [],
            "outputDatasets": [],
            "runDefinition": None,
            "logFiles": {},
            "jobCost": None,
            "revision": 1,
            "runTypeV2": None,
            "settings": {},
            "computeRequest": None,
            "compute": run.get("compute"),
            "createdBy": run.get("createdBy"),
            "computeDuration": None,
            "effectiveStartTimeUtc": None,
            "runNumber": run.get("runNumber"),
            "rootRunId": run.get("rootRunId"),
            "experimentId": run.get("experimentId"),
            "userId": run.get("userId"),
            "statusRevision": 1,
            "currentComputeTime": None,
            "lastStartTimeUtc": None,
            "lastModifiedBy": None,
            "lastModifiedUtc": None,
            "duration": None,
            "inputs": None,
            "outputs": None,
            "currentAttemptId": 1,
        }
        return _Reply(200, body)

    # ------------------------------------------------------------------ mlflow
    def _mlflow_run(
        self, run_id: str, experiment: str = "Default", run_name: str | None = None, tags: dict[str, str] | None = None
    ) -> dict[str, Any]:
        if run_id not in self.mlflow_runs:
            self.mlflow_runs[run_id] = {
                "run_id": run_id,
                "experiment_id": self._experiment_id(experiment),
                "run_name": run_name or run_id,
                "status": "RUNNING",
                "start_time": _now_ms(),
                "metrics": {},
                "params": {},
                "tags": {"mlflow.runName": run_name or run_id, "mlflow.user": "ForecastOps Test", **(tags or {})},
            }
        elif tags:
            self.mlflow_runs[run_id]["tags"].update(tags)
        return self.mlflow_runs[run_id]

    def _mlflow_run_json(self, run: dict[str, Any]) -> dict[str, Any]:
        info = {
            "run_id": run["run_id"],
            "run_uuid": run["run_id"],
            "run_name": run["run_name"],
            "experiment_id": run["experiment_id"],
            "user_id": "00000000-0000-0000-0000-0000000000bb",
            "status": run["status"],
            "start_time": run["start_time"],
            "artifact_uri": f"azureml://experiments/{run['experiment_id']}/runs/{run['run_id']}/artifacts",
            "lifecycle_stage": "active",
        }
        if run["status"] in ("FINISHED", "FAILED", "KILLED"):
            info["end_time"] = _now_ms()
        return {
            "info": info,
            "data": {
                "metrics": list(run["metrics"].values()),
                "params": [{"key": k, "value": str(v)} for k, v in run["params"].items()],
                "tags": [{"key": k, "value": str(v)} for k, v in run["tags"].items()],
            },
            "inputs": {},
        }

    def _mlflow_error(self, status: int, code: str, message: str) -> _Reply:
        return _Reply(status, {"error_code": code, "message": message})

    def _mlflow_get_run(self, rec: RecordedRequest) -> _Reply:
        run_id = rec.query.get("run_id") or rec.query.get("run_uuid")
        run = self.mlflow_runs.get(run_id or "")
        if run is None:
            return self._mlflow_error(404, "RESOURCE_DOES_NOT_EXIST", f"Run '{run_id}' not found.")
        return _Reply(200, {"run": self._mlflow_run_json(run)})

    def _mlflow_search(self, rec: RecordedRequest) -> _Reply:
        body = rec.json or {}
        exp_ids = set(body.get("experiment_ids") or [])
        runs = [r for r in self.mlflow_runs.values() if not exp_ids or r["experiment_id"] in exp_ids]
        flt = (body.get("filter") or "").strip()
        for clause in [c.strip() for c in re.split(r"\s+and\s+", flt, flags=re.I) if c.strip()]:
            cm = re.fullmatch(r"(?:tags\.)?[`\"]?([\w.]+)[`\"]?\s*(=|!=)\s*'([^']*)'", clause)
            if cm is None:
                return self._mlflow_error(400, "INVALID_PARAMETER_VALUE", f"Unsupported filter clause: {clause}")
            key, op, value = cm.groups()
            if key in ("attributes.run_id", "run_id", "attributes.run_name", "run_name", "attributes.status", "status"):
                field_name = key.split(".")[-1]

                def get(r: dict[str, Any], f: str = field_name) -> Any:
                    return r[f]
            else:

                def get(r: dict[str, Any], k: str = key) -> Any:
                    return r["tags"].get(k)

            runs = [r for r in runs if (get(r) == value) == (op == "=")]
        max_results = int(body.get("max_results") or 1000)
        start = int(body.get("page_token") or 0)
        page = runs[start : start + max_results]
        out: dict[str, Any] = {"runs": [self._mlflow_run_json(r) for r in page]}
        if start + max_results < len(runs):
            out["next_page_token"] = str(start + max_results)
        return _Reply(200, out)

    def _mlflow_metric_history(self, rec: RecordedRequest) -> _Reply:
        run = self.mlflow_runs.get(rec.query.get("run_id", ""))
        if run is None:
            return self._mlflow_error(404, "RESOURCE_DOES_NOT_EXIST", "Run not found.")
        metric = run["metrics"].get(rec.query.get("metric_key", ""))
        return _Reply(200, {"metrics": [metric] if metric else []})


def _request_body(request: Any) -> bytes:
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
