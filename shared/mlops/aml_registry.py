"""The model registry in Azure ML, through azure-ai-ml's ``MLClient.models``.

A version whose files are an MLflow model (``MLmodel`` at the top: what the forecast pipeline
trains since issue 23) is registered as an ``mlflow_model``, its path the folder holding
``MLmodel``; a version of other files (a pickle registered before) as a ``custom_model``. The
card's facts are the version's tags, with the group's keys (``group.region``, ``group.format``,
``group.velocity``) and the batch's ``week``. The design notes: docs/mlops-loop.md.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

from azure.ai.ml import MLClient
from azure.ai.ml.constants import AssetTypes
from azure.ai.ml.entities import Model
from azure.ai.ml.exceptions import AssetPathException
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from shared.aml.lakeuri import lake_path, lake_uri
from shared.lake import Lake
from shared.mlops.cards import Decision, Metrics, ModelCard, Stage, TrainingCode
from shared.mlops.registry import (
    ModelNotFound,
    Registry,
    RegistryError,
    as_candidate,
    check_decision,
    check_files,
    is_mlflow,
)

__all__ = ["AzureRegistry"]

TAG_CARD = "forecastops.card"
_METRICS = ("mape", "rmse_0", "rmse_all", "baseline_mape", "wape")
_DECISION = ("outcome", "rule", "reason", "decided_at")
_PATH_TAKEN = "Asset paths cannot be updated"
#: the tag of the training code's version; ``code.<component>`` tags hold the component versions
_CODE = "code.version"
#: the tags of a group's keys, in its name's order (``<region>.<format>.<velocity>``)
_GROUP_KEYS = ("region", "format", "velocity")
#: a group's model name: the store formats and velocity classes are the pipeline's only ones
_GROUP = re.compile(r"^[a-z0-9][a-z0-9_-]*\.(large|small)\.(fast|slow)$")


class AzureRegistry(Registry):
    """Model versions in the AML workspace ``client`` names; model files in ``lake`` (the
    workspace's datastore ``datastore``)."""

    def __init__(self, client: MLClient, lake: Lake, top: str = "models", attempts: int = 20):
        self.client = client
        self.lake = lake
        self.top = top.strip("/")
        self.attempts = attempts

    # the interface -----------------------------------------------------------------------------
    def register(self, card: ModelCard, files: Mapping[str, bytes]) -> ModelCard:
        names = check_files(files)
        folder = f"{self.top}/{card.name}/files/{uuid.uuid4().hex}"
        for file_name in names:
            self.lake.write_bytes(f"{folder}/{file_name}", files[file_name])
        path = lake_uri(folder) + "/"
        version = max((c.version or 0 for c in self.versions(card.name)), default=0) + 1
        for _ in range(self.attempts):
            claimed = as_candidate(card, version, names)
            model = Model(
                name=card.name,
                version=str(version),
                path=path,
                type=AssetTypes.MLFLOW_MODEL if is_mlflow(names) else AssetTypes.CUSTOM_MODEL,
                description=f"{card.name}, trained by run {card.run_id}",
                tags=_tags(claimed),
                stage=_aml_stage(claimed.stage),
            )
            try:
                self.client.models.create_or_update(model)
                return claimed
            except (AssetPathException, HttpResponseError) as e:
                if not _path_taken(e):
                    raise
            # another registration holds this version (with its own path): take the next one
            version += 1
        raise RegistryError(f"{card.name}: no free version after {self.attempts} attempts")

    def get(self, name: str, version: int) -> ModelCard:
        return _card(self._model(name, version))

    def read_file(self, name: str, version: int, file_name: str) -> bytes:
        model = self._model(name, version)
        if file_name not in _card(model).files:
            raise ModelNotFound(f"version {version} of model {name} has no file {file_name!r}")
        # azureml://[subscriptions/.../workspaces/<ws>/]datastores/lake_models/paths/<name>/files/<id>/,
        # or, registered before the per-container datastores, .../datastores/lake/paths/models/...
        try:
            folder = lake_path(str(model.path))
        except ValueError:
            folder = None
        if not folder:
            raise RegistryError(f"{name} version {version} lives at {model.path}, not in a datastore of the lake")
        return self.lake.read_bytes(f"{folder}/{file_name}")

    def versions(self, name: str) -> list[ModelCard]:
        try:
            models = list(self.client.models.list(name=name))
        except ResourceNotFoundError:
            return []
        cards = [_card(m) for m in models if TAG_CARD in (m.tags or {})]
        return sorted(cards, key=lambda c: c.version or 0)

    def names(self) -> list[str]:
        """The workspace's models named like a group (``<region>.<large|small>.<fast|slow>``): a
        workspace is shared, and another team's ``sales.lgbm.v1`` is not a group to plan."""
        return sorted(m.name for m in self.client.models.list() if m.name and _GROUP.match(m.name))

    def production(self, name: str) -> ModelCard | None:
        """The version whose AML stage is ``Production`` (one short list, however many versions the
        model has); a model whose versions were registered before the stage was set is read by
        its tags."""
        try:
            staged = list(self.client.models.list(name=name, stage=_aml_stage("production")))
        except ResourceNotFoundError:
            return None
        serving = [c for c in (_card(m) for m in staged if TAG_CARD in (m.tags or {})) if c.stage == "production"]
        if not serving:
            serving = [c for c in self.versions(name) if c.stage == "production"]
        if not serving:
            return None
        return max(serving, key=lambda c: (c.decision.decided_at if c.decision else "", c.version or 0))

    def promote(self, name: str, version: int, decision: Decision) -> ModelCard:
        check_decision(version, decision, "promoted")
        model = self._model(name, version)
        previous = self.production(name)
        promoted = _card(model).model_copy(update={"stage": "production", "decision": decision})
        self._retag(model, promoted)
        if previous is not None and previous.version != version:
            self._retag(self._model(name, int(previous.version or 0)), previous.model_copy(update={"stage": "retired"}))
        return promoted

    def keep(self, name: str, version: int, decision: Decision) -> ModelCard:
        check_decision(version, decision, "kept")
        model = self._model(name, version)
        kept = _card(model).model_copy(update={"decision": decision})
        self._retag(model, kept)
        return kept

    def archive(self, name: str, version: int) -> None:
        """AML's archive of the version (``models.archive``): out of the listings, restorable; its
        files stay in the lake."""
        try:
            self.client.models.archive(name=name, version=str(version))
        except ResourceNotFoundError:
            return

    def prune(self, name: str, keep: int) -> list[int]:
        """:meth:`Registry.prune`; AML refusing a listing or an archive is a :class:`RegistryError`
        (the versions archived before it stay archived: a prune run again goes on from there)."""
        try:
            return super().prune(name, keep)
        except HttpResponseError as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise RegistryError(f"pruning {name} in Azure ML failed: {first}") from e

    def decisions(self, name: str) -> list[Decision]:
        found = [c.decision for c in self.versions(name) if c.decision is not None]
        return sorted(found, key=lambda d: (d.decided_at, d.candidate_version))

    # helpers ------------------------------------------------------------------------------------
    def _model(self, name: str, version: int) -> Model:
        try:
            model = self.client.models.get(name, str(version))
        except ResourceNotFoundError:
            raise ModelNotFound(f"no version {version} of model {name}") from None
        if TAG_CARD not in (model.tags or {}):
            raise ModelNotFound(f"version {version} of model {name} is not a ForecastOps model (no card tags)")
        return model

    def _retag(self, model: Model, card: ModelCard) -> None:
        # same version, same path: AML updates the tags and the stage in place
        model.tags = _tags(card)
        model.stage = _aml_stage(card.stage)
        self.client.models.create_or_update(model)


def _path_taken(e: Exception) -> bool:
    """AML refused a PUT because the version exists with another path."""
    return isinstance(e, AssetPathException) or _PATH_TAKEN in str(e)


def _aml_stage(stage: Stage) -> str:
    """The AML model stage a card's stage is registered with (``Production``: what
    :meth:`AzureRegistry.production` asks AML to list)."""
    return stage.capitalize()


def _tags(card: ModelCard) -> dict[str, str]:
    tags = {TAG_CARD: "1", "stage": card.stage, "trained_at": repr(card.trained_at), "run_id": card.run_id}
    tags.update({f"group.{k}": v for k, v in zip(_GROUP_KEYS, card.name.split("."), strict=False)})
    if card.week is not None:
        tags["week"] = card.week
    for key, value in card.metrics.model_dump().items():
        if value is not None:
            tags[key] = repr(value)
    tags.update({f"data.{k}": v for k, v in card.data_versions.items()})
    tags["files"] = ",".join(card.files)
    if card.code is not None:
        tags[_CODE] = card.code.version
        tags.update({f"code.{k}": v for k, v in card.code.components.items()})
    if card.decision is not None:
        d = card.decision
        tags.update({f"decision.{k}": str(getattr(d, k)) for k in _DECISION})
        if d.production_version is not None:
            tags["decision.production_version"] = str(d.production_version)
    return tags


def _card(model: Model) -> ModelCard:
    """The card a version's tags hold; :class:`RegistryError` when they do not make one."""
    try:
        return _read_tags(model)
    except (KeyError, ValueError) as e:  # pydantic's ValidationError is a ValueError
        raise RegistryError(f"{model.name} version {model.version}: its tags are not a model card ({e})") from e


def _read_tags(model: Model) -> ModelCard:
    tags: dict[str, Any] = dict(model.tags or {})
    decision = None
    if "decision.outcome" in tags:
        decision = Decision(
            **{k: tags[f"decision.{k}"] for k in _DECISION},
            candidate_version=int(str(model.version)),
            production_version=tags.get("decision.production_version"),
        )
    stage: Stage = tags.get("stage", "candidate")
    code = None
    if _CODE in tags:
        components = {k[len("code.") :]: v for k, v in tags.items() if k.startswith("code.") and k != _CODE}
        code = TrainingCode(version=tags[_CODE], components=components)
    return ModelCard(
        name=str(model.name),
        version=int(str(model.version)),
        metrics=Metrics(**{k: float(tags[k]) for k in _METRICS if k in tags}),
        trained_at=float(tags["trained_at"]),
        run_id=tags["run_id"],
        data_versions={k[len("data.") :]: v for k, v in tags.items() if k.startswith("data.")},
        stage=stage,
        decision=decision,
        files=[f for f in tags.get("files", "").split(",") if f],
        code=code,
        week=tags.get("week"),
    )
