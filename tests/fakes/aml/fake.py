"""``FakeAML``: one stateful fake AML workspace (ARM/MFE, discovery, Run History, MLflow) composed of the
jobs / Run History / tracking / model registry / data asset parts, with what every request goes through:
recording, injected faults, and a route table (hosts, method, compiled path regex, handler) that dispatches the
rest."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.aml.assets import AssetsMixin, BlobStore
from tests.fakes.aml.contract import ARM_HOST, PROVIDER
from tests.fakes.aml.data import DataMixin
from tests.fakes.aml.jobs import JobsMixin
from tests.fakes.aml.models import ModelsMixin
from tests.fakes.aml.runhistory import RunHistoryMixin
from tests.fakes.aml.transport import FakeTransport, RecordedRequest, Reply, request_body

if TYPE_CHECKING:
    from tests.fakes.aml.executor import Executor

__all__ = ["FakeAML"]


@dataclass
class _Injection:
    method: str
    pattern: re.Pattern[str]
    statuses: list[int]
    headers: dict[str, str]
    body: Any
    forever: bool
    hits: int = 0


@dataclass(frozen=True)
class _Route:
    hosts: frozenset[str]
    methods: frozenset[str]
    pattern: re.Pattern[str]  # full match on the URL path
    handler: Callable[..., Reply]  # called with the pattern's groups, then the RecordedRequest


class FakeAML(JobsMixin, RunHistoryMixin, ModelsMixin, DataMixin, AssetsMixin):
    """Stateful fake of one AML workspace (ARM/MFE + discovery + Run History + MLflow + model registry + data
    assets)."""

    def __init__(
        self,
        subscription_id: str = "00000000-0000-0000-0000-000000000001",
        resource_group: str = "rg",
        workspace_name: str = "ws",
        location: str = "eastus",
        blob_store: BlobStore | None = None,
        executor: Executor | None = None,
    ) -> None:
        super().__init__(subscription_id, resource_group, workspace_name, location, blob_store=blob_store)
        #: runs the pipeline jobs submitted, as AML would (tests.fakes.aml.executor); None: jobs move only as tests say
        self.executor = executor
        self.requests: list[RecordedRequest] = []
        self.unhandled: list[RecordedRequest] = []
        self._injections: list[_Injection] = []
        self._lock = threading.Lock()
        self._routes = self._route_table()

    # ------------------------------------------------------------------ public helpers
    def transport(self) -> FakeTransport:
        return FakeTransport(self)

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

    def backend(self, retries: int = 2) -> Any:
        """The azureml backend as the worker builds it: the real ``MLClient``, its transport this
        fake, with short bounded retries (``backend.client`` is the client)."""
        from azure.ai.ml import MLClient

        from shared.aml.azureml import AzureMLBackend, Retry
        from tests.fakes.aml.credential import FakeCredential

        credential, transport = FakeCredential(), self.transport()
        retry = Retry(total=retries, backoff_factor=0.01, backoff_max=0.05)
        client = MLClient(
            credential, self.subscription_id, self.resource_group, self.workspace_name, transport=transport,
            **retry.kwargs(),
        )  # fmt: skip
        return AzureMLBackend(client, credential, transport, retry)

    def register_repo_components(self) -> None:
        """Every component of the repo at the version the app submits (``shared.aml.assets``), as
        ``python -m shared aml-assets`` leaves the workspace, with the compute infra declares."""
        from shared.aml.assets import components

        for c in components().values():
            self.register_component(c.name, c.version, c.file)
        for name in ("cpu-cluster",):
            self.add_compute(name)

    def requests_to(self, method: str, path_regex: str) -> list[RecordedRequest]:
        rx = re.compile(path_regex)
        return [r for r in self.requests if r.method == method.upper() and rx.search(r.path)]

    # ------------------------------------------------------------------ dispatch
    def _route_table(self) -> list[_Route]:
        """Every REST call the fake answers. ARM routes are also answered on the regional host (as AML does);
        discovery, Run History and MLflow only there."""
        arm = frozenset({ARM_HOST, self.region_host})
        regional = frozenset({self.region_host})
        ws = re.escape(self.ws_scope)
        hist = r"/history/v1\.0" + ws
        mlf = r"/mlflow/v[12]\.0" + ws + r"/api/2\.0/mlflow"
        operations = r"/subscriptions/[^/]+/providers/" + re.escape(PROVIDER) + r"/locations/[^/]+/mfeOperationResults"
        table: list[tuple[frozenset[str], str, str, Callable[..., Reply]]] = [
            (arm, "GET", ws, self._get_workspace),
            (arm, "GET", ws + r"/components/([^/]+)/versions/([^/]+)", self._get_component),
            (arm, "PUT", ws + r"/components/([^/]+)/versions/([^/]+)", self._put_component_version),
            (arm, "GET", ws + r"/environments/([^/]+)/versions/([^/]+)", self._get_environment_version),
            (arm, "PUT", ws + r"/environments/([^/]+)/versions/([^/]+)", self._put_environment_version),
            (arm, "GET", ws + r"/codes/([^/]+)/versions", self._list_code_versions),
            (arm, "POST", ws + r"/codes/([^/]+)/versions/([^/]+)/startPendingUpload", self._pending_upload),
            (arm, "GET", ws + r"/codes/([^/]+)/versions/([^/]+)", self._get_code_version),
            (arm, "PUT", ws + r"/codes/([^/]+)/versions/([^/]+)", self._put_code_version),
            (arm, "GET", ws + r"/computes/([^/]+)", self._get_compute),
            (arm, "PUT", ws + r"/jobs/([^/]+)", self._put_job),
            (arm, "GET", ws + r"/jobs/([^/]+)", self._get_job),
            (arm, "POST", ws + r"/jobs/([^/]+)/cancel", self._cancel_job),
            (arm, "GET", ws + r"/jobs", self._list_jobs),
            (arm, "PUT", ws + r"/models/([^/]+)/versions/([^/]+)", self._put_model_version),
            (arm, "GET", ws + r"/models/([^/]+)/versions/([^/]+)", self._get_model_version),
            (arm, "GET", ws + r"/models/([^/]+)/versions", self._list_model_versions),
            (arm, "GET", ws + r"/models/([^/]+)", self._get_model_container),
            (arm, "GET", ws + r"/models", self._list_model_containers),
            (arm, "PUT", ws + r"/data/([^/]+)/versions/([^/]+)", self._put_data_version),
            (arm, "GET", ws + r"/data/([^/]+)/versions/([^/]+)", self._get_data_version),
            (arm, "GET", ws + r"/data/([^/]+)/versions", self._list_data_versions),
            (arm, "GET", ws + r"/data/([^/]+)", self._get_data_container),
            (arm, "GET", ws + r"/data", self._list_data_containers),
            (arm, "GET", operations + r"/([^/]+)", self._operation_result),
            (regional, "GET", r"/(?-i:discovery)/*", self._get_discovery),
            (regional, "GET POST", hist + r"/runs/([^/]+)/children", self._run_children),
            (regional, "GET", hist + r"/runs/([^/]+)/details", self._run_details),
            (regional, "GET", hist + r"/runs/([^/]+)", self._get_run),
            (regional, "GET", mlf + r"/runs/get", self._mlflow_get_run),
            (regional, "POST", mlf + r"/runs/search", self._mlflow_search),
            (regional, "GET", mlf + r"/metrics/get-history", self._mlflow_metric_history),
        ]
        return [
            _Route(hosts, frozenset(methods.split()), re.compile(pattern, re.I), handler)
            for hosts, methods, pattern, handler in table
        ]

    def _handle(self, request: Any) -> Reply:
        method = request.method.upper()
        url = request.url
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        raw_body = request_body(request)
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

    def _injected(self, rec: RecordedRequest) -> Reply | None:
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
            return Reply(status, body, dict(inj.headers))
        return None

    def _route(self, rec: RecordedRequest, host: str) -> Reply | None:
        for route in self._routes:
            if host not in route.hosts or rec.method not in route.methods:
                continue
            match = route.pattern.fullmatch(rec.path)
            if match is not None:
                return route.handler(*match.groups(), rec)
        return None
