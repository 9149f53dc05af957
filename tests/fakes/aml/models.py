"""The workspace's model registry as MFE serves it to ``MLClient.models``: model containers and versions (PUT a
version, GET one, list a name's versions with ``$orderBy``/``$top``/``stage``/``listViewType``, list containers).
A PUT creates the container on first use; a PUT of an existing version may change its tags, stage and
description but not its path (AML answers ``(UserError) Asset paths cannot be updated.``), which is what keeps
two registrations that picked the same version number from overwriting each other. ``MLClient.models.archive``
is a GET of the version and a PUT of it with ``isArchived: true`` (same path): answered by the same two
handlers, and the listings then leave the version out unless ``listViewType`` asks for archived ones.

An ``mlflow_model`` version must have an ``MLmodel`` file at the top of its path, as AML checks when it registers
one: the fake reads the path in the lake that stands for the workspace's datastores (``datastore_lake``, or the
executor's lake) and refuses the PUT otherwise (400 UserError), and refuses it when it cannot see the path at all."""

from __future__ import annotations

import copy
from typing import Any

from shared.aml.lakeuri import lake_path
from tests.fakes.aml.contract import PROVIDER
from tests.fakes.aml.transport import RecordedRequest, Reply
from tests.fakes.aml.workspace import Workspace

__all__ = ["ASSET_PATH_MESSAGE", "NO_MLMODEL_MESSAGE", "ModelsMixin"]

#: AML's message for a PUT that would move an existing model version to another path
ASSET_PATH_MESSAGE = "Asset paths cannot be updated."
#: AML's message for an mlflow_model whose path holds no MLmodel file
NO_MLMODEL_MESSAGE = "No MLmodel file found at the model path: an mlflow_model's path must hold its MLmodel file."


class ModelsMixin(Workspace):
    """Model containers (``self.models``: name -> version -> ``ModelVersion`` body), in creation order."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.models: dict[str, dict[str, dict[str, Any]]] = {}
        #: the lake the workspace's datastores stand for (None: the executor's, when there is one)
        self.datastore_lake: Any = None

    # ------------------------------------------------------------------ public helpers
    def model_versions(self, name: str) -> dict[str, dict[str, Any]]:
        return self.models.get(name, {})

    # ------------------------------------------------------------------ handlers
    def _put_model_version(self, name: str, version: str, rec: RecordedRequest) -> Reply:
        sent = copy.deepcopy((rec.json or {}).get("properties") or {})
        versions = self.models.setdefault(name, {})
        existing = versions.get(version)
        if existing is not None:
            if sent.get("modelUri") != existing["properties"].get("modelUri"):
                body = self._error_response("UserError", ASSET_PATH_MESSAGE)
                return Reply(400, body, {"x-ms-response-type": "error"})
            props = {**existing["properties"], **sent}
            existing["properties"] = {**props, "provisioningState": "Succeeded"}
            existing["systemData"] = {**existing["systemData"], "lastModifiedAt": self._system_data()["lastModifiedAt"]}
            return Reply(200, existing)
        if sent.get("modelType") == "mlflow_model" and not self._has_mlmodel(str(sent.get("modelUri") or "")):
            body = self._error_response("UserError", NO_MLMODEL_MESSAGE)
            return Reply(400, body, {"x-ms-response-type": "error"})
        body = {
            "id": self.arm_id("models", name, version),
            "name": version,
            "type": f"{PROVIDER}/workspaces/models/versions",
            "properties": {
                "description": None,
                "tags": {},
                "properties": {},
                "isAnonymous": False,
                "isArchived": False,
                "stage": None,
                # AML answers an object even for a model without flavors (azure-ai-ml iterates it)
                "flavors": {},
                "jobName": None,
                **sent,
                "provisioningState": "Succeeded",
            },
            "systemData": self._system_data(),
        }
        versions[version] = body
        return Reply(201, body)

    def _get_model_version(self, name: str, version: str, rec: RecordedRequest) -> Reply:
        body = self.models.get(name, {}).get(version)
        if body is None:
            return self._not_found(f"model {name}:{version} in workspace {self.workspace_name}")
        return Reply(200, body)

    def _list_model_versions(self, name: str, rec: RecordedRequest) -> Reply:
        return self._asset_versions(list(self.models.get(name, {}).values()), rec, stage="stage")

    def _get_model_container(self, name: str, rec: RecordedRequest) -> Reply:
        versions = self.models.get(name)
        if not versions:
            return self._not_found(f"model {name} in workspace {self.workspace_name}")
        return Reply(200, self._container_body(name, versions))

    def _list_model_containers(self, rec: RecordedRequest) -> Reply:
        values = [self._container_body(n, v) for n, v in self.models.items() if v]
        return Reply(200, {"value": values, "nextLink": None})

    def _has_mlmodel(self, uri: str) -> bool:
        """Whether the datastore path ``uri`` names holds an ``MLmodel`` file at its top."""
        lake = self.datastore_lake
        if lake is None:
            lake = getattr(getattr(self, "executor", None), "lake", None)
        try:
            folder = lake_path(uri) if lake is not None else None
        except ValueError:  # a ".." segment: no path of the lake
            return False
        return folder is not None and lake.exists(f"{folder.rstrip('/')}/MLmodel")

    # ------------------------------------------------------------------ bodies
    def _container_body(self, name: str, versions: dict[str, dict[str, Any]]) -> dict[str, Any]:
        return self._asset_container("models", name, versions, provisioningState="Succeeded")
