"""The workspace's data assets as MFE serves them to ``MLClient.data``: data containers and versions (PUT a
version, GET one, list a name's versions with ``$orderBy``/``$top``/``listViewType``, GET and list containers),
shaped as AML's ``DataVersionBase`` (``dataType``, ``dataUri``, ``description``, ``tags``, ``properties``,
``isAnonymous``, ``isArchived``) and ``DataContainer`` (``dataType``, ``latestVersion``, ``nextVersion``). A PUT
creates the container on first use; a PUT of an existing version may change its tags and description but not its
``dataUri`` (AML answers ``(UserError) Asset paths cannot be updated.``) nor its ``dataType``."""

from __future__ import annotations

import copy
from typing import Any

from tests.fakes.aml.contract import PROVIDER
from tests.fakes.aml.models import ASSET_PATH_MESSAGE
from tests.fakes.aml.transport import RecordedRequest, Reply
from tests.fakes.aml.workspace import Workspace

__all__ = ["DataMixin"]


class DataMixin(Workspace):
    """Data containers (``self.data``: name -> version -> ``DataVersionBase`` body), in creation order."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.data: dict[str, dict[str, dict[str, Any]]] = {}

    # ------------------------------------------------------------------ public helpers
    def data_versions(self, name: str) -> dict[str, dict[str, Any]]:
        return self.data.get(name, {})

    # ------------------------------------------------------------------ handlers
    def _put_data_version(self, name: str, version: str, rec: RecordedRequest) -> Reply:
        sent = copy.deepcopy((rec.json or {}).get("properties") or {})
        if not sent.get("dataUri") or sent.get("dataType") not in ("uri_file", "uri_folder", "mltable"):
            body = self._error_response("UserError", "A data version needs a dataUri and a dataType.")
            return Reply(400, body, {"x-ms-response-type": "error"})
        versions = self.data.setdefault(name, {})
        existing = versions.get(version)
        if existing is not None:
            if sent["dataUri"] != existing["properties"]["dataUri"]:
                body = self._error_response("UserError", ASSET_PATH_MESSAGE)
                return Reply(400, body, {"x-ms-response-type": "error"})
            if sent["dataType"] != existing["properties"]["dataType"]:
                body = self._error_response("UserError", "The data type of an existing version cannot be changed.")
                return Reply(400, body, {"x-ms-response-type": "error"})
            existing["properties"] = {**existing["properties"], **sent}
            existing["systemData"] = {**existing["systemData"], "lastModifiedAt": self._system_data()["lastModifiedAt"]}
            return Reply(200, existing)
        body = {
            "id": self.arm_id("data", name, version),
            "name": version,
            "type": f"{PROVIDER}/workspaces/data/versions",
            "properties": {
                "description": None,
                "tags": {},
                "properties": {},
                "isAnonymous": False,
                "isArchived": False,
                **sent,
            },
            "systemData": self._system_data(),
        }
        versions[version] = body
        return Reply(201, body)

    def _get_data_version(self, name: str, version: str, rec: RecordedRequest) -> Reply:
        body = self.data.get(name, {}).get(version)
        if body is None:
            return self._not_found(f"data {name}:{version} in workspace {self.workspace_name}")
        return Reply(200, body)

    def _list_data_versions(self, name: str, rec: RecordedRequest) -> Reply:
        return self._asset_versions(list(self.data.get(name, {}).values()), rec)

    def _get_data_container(self, name: str, rec: RecordedRequest) -> Reply:
        versions = self.data.get(name)
        if not versions:
            return self._not_found(f"data {name} in workspace {self.workspace_name}")
        return Reply(200, self._data_container_body(name, versions))

    def _list_data_containers(self, rec: RecordedRequest) -> Reply:
        values = [self._data_container_body(n, v) for n, v in self.data.items() if v]
        return Reply(200, {"value": values, "nextLink": None})

    # ------------------------------------------------------------------ bodies
    def _data_container_body(self, name: str, versions: dict[str, dict[str, Any]]) -> dict[str, Any]:
        latest = list(versions)[-1]
        return self._asset_container("data", name, versions, dataType=versions[latest]["properties"]["dataType"])
