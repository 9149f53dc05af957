"""What a deploy registers and the pipelines name, as MFE serves it to ``MLClient``: environment versions
(PUT, GET), component versions (PUT; GET is the workspace's), code versions (the content-hash lookup, the pending
upload that hands out a SAS to the workspace's blob store, PUT, GET) and computes (GET; created by infra, so only
``add_compute`` makes one). An unregistered asset is a 404, as in AML.

The pending upload's SAS points at a real blob service (Azurite) when the fake is given one
(``FakeAML(blob_store=...)``): azure-ai-ml then uploads the code folder there with azure-storage-blob, as it
would to the workspace's storage account."""

from __future__ import annotations

import copy
import datetime as dt
import re
import uuid
from typing import Any

from tests.fakes.aml.contract import PROVIDER
from tests.fakes.aml.transport import RecordedRequest, Reply
from tests.fakes.aml.workspace import Workspace

__all__ = ["AssetsMixin", "BlobStore"]


class BlobStore:
    """The workspace's default blob store: an account on a blob service the tests run (Azurite)."""

    def __init__(self, connection_string: str, container: str = "azureml-blobstore-fake") -> None:
        from azure.storage.blob import BlobServiceClient

        self.service = BlobServiceClient.from_connection_string(connection_string)
        self.container = container
        self.account_key = self.service.credential.account_key
        with_container = self.service.get_container_client(container)
        if not with_container.exists():
            with_container.create_container()

    def sas_uri(self, prefix: str) -> tuple[str, str]:
        """(a container SAS URI that lets the holder write, the blob URI of ``prefix``)."""
        from azure.storage.blob import ContainerSasPermissions, generate_container_sas

        sas = generate_container_sas(
            self.service.account_name,
            self.container,
            account_key=self.account_key,
            permission=ContainerSasPermissions(read=True, write=True, create=True, list=True, add=True),
            expiry=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
        )
        base = f"{self.service.url.rstrip('/')}/{self.container}"
        return f"{base}?{sas}", f"{base}/{prefix}"

    def names(self, prefix: str = "") -> list[str]:
        return [b.name for b in self.service.get_container_client(self.container).list_blobs(name_starts_with=prefix)]


class AssetsMixin(Workspace):
    """``self.environments`` / ``self.codes``: name -> version -> body; ``self.computes``: name -> body."""

    def __init__(self, *args: Any, blob_store: BlobStore | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.blob_store = blob_store
        self.environments: dict[str, dict[str, dict[str, Any]]] = {}
        self.codes: dict[str, dict[str, dict[str, Any]]] = {}
        self.computes: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ public helpers
    def add_compute(self, name: str, *, identity: str | None = "SystemAssigned", max_nodes: int = 4) -> dict[str, Any]:
        """A compute cluster, as infra declares it (AmlCompute, 0 minimum nodes)."""
        body = {
            "id": self.arm_id("computes", name),
            "name": name,
            "type": f"{PROVIDER}/workspaces/computes",
            "location": self.location,
            "identity": {"type": identity, "principalId": str(uuid.uuid4()), "tenantId": str(uuid.UUID(int=0xAA))}
            if identity
            else None,
            "properties": {
                "computeType": "AmlCompute",
                "provisioningState": "Succeeded",
                "properties": {
                    "vmSize": "STANDARD_DS3_V2",
                    "vmPriority": "Dedicated",
                    "scaleSettings": {
                        "minNodeCount": 0,
                        "maxNodeCount": max_nodes,
                        "nodeIdleTimeBeforeScaleDown": "PT120S",
                    },
                    "osType": "Linux",
                },
            },
        }
        self.computes[name] = body
        return body

    # ------------------------------------------------------------------ handlers
    def _put_environment_version(self, name: str, version: str, rec: RecordedRequest) -> Reply:
        sent = copy.deepcopy((rec.json or {}).get("properties") or {})
        body = self._versioned("environments", name, version, {"isAnonymous": False, **sent})
        created = version not in self.environments.get(name, {})
        self.environments.setdefault(name, {})[version] = body
        return Reply(201 if created else 200, body)

    def _get_environment_version(self, name: str, version: str, rec: RecordedRequest) -> Reply:
        body = self.environments.get(name, {}).get(version)
        if body is None:
            return self._not_found(f"environment {name}:{version} in workspace {self.workspace_name}")
        return Reply(200, body)

    def _put_component_version(self, name: str, version: str, rec: RecordedRequest) -> Reply:
        sent = copy.deepcopy((rec.json or {}).get("properties") or {})
        spec = sent.get("componentSpec") or {}
        created = version not in self.components.get(name, {})
        if not created and self.components[name][version]["properties"].get("componentSpec") != spec:
            # AML keeps a component version immutable
            return Reply(
                400,
                self._error_response("UserError", f"component {name}:{version} exists with other content"),
                {"x-ms-response-type": "error"},
            )
        for ref in (spec.get("environment"), spec.get("code")):
            missing = self._missing_asset(ref)
            if missing:
                return self._not_found(missing)
        body = self.register_component(name, version, spec)
        return Reply(201 if created else 200, body)

    def _missing_asset(self, ref: Any) -> str | None:
        """The asset an ARM id in a component names, if the workspace does not have it."""
        m = re.search(r"/(environments|codes)/([^/]+)/versions/([^/]+)$", ref) if isinstance(ref, str) else None
        if m is None:
            return None
        kind, name, version = m.groups()
        store = self.environments if kind == "environments" else self.codes
        if version not in store.get(name, {}):
            return f"{kind[:-1]} {name}:{version} in workspace {self.workspace_name}"
        return None

    def _list_code_versions(self, name: str, rec: RecordedRequest) -> Reply:
        values = list(self.codes.get(name, {}).values())
        if rec.query.get("hash"):
            values = [v for v in values if v["properties"].get("_hash") == rec.query["hash"]]
        return Reply(200, {"value": values, "nextLink": None})

    def _pending_upload(self, name: str, version: str, rec: RecordedRequest) -> Reply:
        if self.blob_store is None:
            raise AssertionError("FakeAML: a code upload needs a blob store (FakeAML(blob_store=BlobStore(...)))")
        prefix = f"LocalUpload/{uuid.uuid4().hex}"
        sas, blob = self.blob_store.sas_uri(prefix)
        return Reply(
            200,
            {
                "blobReferenceForConsumption": {
                    "blobUri": blob,
                    "storageAccountArmId": None,
                    "credential": {"credentialType": "SAS", "sasUri": sas},
                },
                "pendingUploadId": prefix,
                "pendingUploadType": "TemporaryBlobReference",
            },
        )

    def _put_code_version(self, name: str, version: str, rec: RecordedRequest) -> Reply:
        sent = copy.deepcopy((rec.json or {}).get("properties") or {})
        body = self._versioned("codes", name, version, sent)
        # what the content-hash lookup matches on (azure-ai-ml sends the hash as a property)
        body["properties"]["_hash"] = (sent.get("properties") or {}).get("hash_sha256")
        self.codes.setdefault(name, {})[version] = body
        return Reply(201, body)

    def _get_code_version(self, name: str, version: str, rec: RecordedRequest) -> Reply:
        body = self.codes.get(name, {}).get(version)
        if body is None:
            return self._not_found(f"code {name}:{version} in workspace {self.workspace_name}")
        return Reply(200, body)

    def _get_compute(self, name: str, rec: RecordedRequest) -> Reply:
        body = self.computes.get(name)
        if body is None:
            return self._not_found(f"compute {name} in workspace {self.workspace_name}")
        return Reply(200, body)

    # ------------------------------------------------------------------ bodies
    def _versioned(self, kind: str, name: str, version: str, props: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": self.arm_id(kind, name, version),
            "name": version,
            "type": f"{PROVIDER}/workspaces/{kind}/versions",
            "properties": {"description": None, "tags": {}, "properties": {}, "isArchived": False, **props},
            "systemData": self._system_data(),
        }
