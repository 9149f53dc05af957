"""One AML workspace as the fake holds it: its identity and URLs, the state the other parts of the fake share
(jobs, runs, MLflow runs, components, experiments), the resource bodies (workspace, discovery document,
component versions) and AML's error bodies."""

from __future__ import annotations

import copy
import re
import uuid
from pathlib import Path
from typing import Any

import yaml

from tests.fakes.aml.contract import PROVIDER, now_iso
from tests.fakes.aml.transport import RecordedRequest, Reply

__all__ = ["Workspace"]

ERROR_CODES = {
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


class Workspace:
    """The workspace's identity, shared state, resource and error bodies; components."""

    def __init__(self, subscription_id: str, resource_group: str, workspace_name: str, location: str) -> None:
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

    # ------------------------------------------------------------------ public helpers
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
        code = spec.get("code")
        if isinstance(code, str) and not re.match(r"^(azureml:|[a-z+]+://)", code):
            # AML uploads a local code folder as a code asset and the component names it by ARM id
            code_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{self.ws_scope}/components/{name}/{version}")
            spec["code"] = f"azureml:{self.arm_id('codes', str(code_id), '1')}"
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

    # ------------------------------------------------------------------ handlers
    def _get_workspace(self, rec: RecordedRequest) -> Reply:
        return Reply(200, self._workspace_body())

    def _get_discovery(self, rec: RecordedRequest) -> Reply:
        return Reply(200, self._discovery_body())

    def _get_component(self, name: str, version: str, rec: RecordedRequest) -> Reply:
        body = self.components.get(name, {}).get(version)
        if body is None:
            return self._not_found(f"component {name}:{version} in workspace {self.workspace_name}")
        return Reply(200, body)

    # ------------------------------------------------------------------ bodies
    def _experiment_id(self, name: str) -> str:
        return self.experiments.setdefault(name, str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.ws_scope}/{name}")))

    def _system_data(self) -> dict[str, Any]:
        return {
            "createdAt": now_iso(),
            "createdBy": "ForecastOps Test",
            "createdByType": "User",
            "lastModifiedAt": now_iso(),
            "lastModifiedBy": "ForecastOps Test",
            "lastModifiedByType": "User",
        }

    def _asset_versions(self, values: list[dict[str, Any]], rec: RecordedRequest, **equal: str) -> Reply:
        """A list of asset versions (models, data) as MFE pages them: ``listViewType``, then
        the properties ``equal`` asks to match (a query value given), ``$orderBy`` createdtime
        desc, ``$top``."""
        view = rec.query.get("listViewType", "ActiveOnly")
        if view == "ActiveOnly":
            values = [v for v in values if not v["properties"].get("isArchived")]
        elif view == "ArchivedOnly":
            values = [v for v in values if v["properties"].get("isArchived")]
        for prop, query in equal.items():
            if rec.query.get(query):
                values = [v for v in values if v["properties"].get(prop) == rec.query[query]]
        if rec.query.get("$orderBy", "").lower() == "createdtime desc":
            values = values[::-1]
        top = rec.query.get("$top")
        if top:
            values = values[: int(top)]
        return Reply(200, {"value": values, "nextLink": None})

    def _asset_container(
        self, kind: str, name: str, versions: dict[str, dict[str, Any]], **more: Any
    ) -> dict[str, Any]:
        """An asset container (``kind``: models, data): its latest and next version."""
        latest = list(versions)[-1]
        numbers = [int(v) for v in versions if v.isdigit()]
        return {
            "id": self.arm_id(kind, name),
            "name": name,
            "type": f"{PROVIDER}/workspaces/{kind}",
            "properties": {
                "description": None,
                "tags": {},
                "properties": {},
                "isArchived": False,
                **more,
                "latestVersion": latest,
                "nextVersion": str(max(numbers, default=0) + 1),
            },
            "systemData": self._system_data(),
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

    # ------------------------------------------------------------------ errors
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
            "time": now_iso(),
            "componentName": "mfe",
        }

    def _arm_error(self, status: int, rec: RecordedRequest) -> dict[str, Any]:
        code = ERROR_CODES.get(status, "UserError")
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

    def _not_found(self, what: str) -> Reply:
        body = self._error_response("UserError", f"Could not find {what}.", inner="NotFoundError")
        return Reply(404, body, {"x-ms-response-type": "error"})
