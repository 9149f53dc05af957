"""The model card: one trained model's facts, the same in the lake (``card.json``) and in Azure
ML (the model version's tags).

A card is JSON-safe: a metric that is not a finite number (NaN, infinity) becomes ``null``, and
the promotion rules treat ``null`` as a failure (the gates fail closed). ``trained_at`` is epoch
seconds, as the pipeline's metrics carry it.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["NAME_PATTERN", "Decision", "Metrics", "ModelCard", "Stage", "TrainingCode", "model_name"]

#: ``<region>.<format>.<velocity>``: three lower-case segments of letters, digits, ``_`` and ``-``
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]*\.[a-z0-9][a-z0-9_-]*\.[a-z0-9][a-z0-9_-]*$"

Stage = Literal["candidate", "production", "retired"]


def model_name(region: str, store_format: str, velocity: str) -> str:
    """``northeast.large.fast``: the name a model has in every registry."""
    return f"{region}.{store_format}.{velocity}".lower()


class Metrics(BaseModel):
    """What the model scored on the holdout weeks; ``None`` where it is unknown or not finite."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mape: float | None = None
    rmse_0: float | None = None
    rmse_all: float | None = None
    baseline_mape: float | None = None
    wape: float | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _finite_or_none(cls, value: object) -> object:
        if isinstance(value, int | float) and not isinstance(value, bool) and not math.isfinite(value):
            return None
        return value


class Decision(BaseModel):
    """What the promotion rules decided for one candidate, and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    outcome: Literal["promoted", "kept"]
    #: which rule decided: gate, baseline, no_production, stale_production, better, within_margin, beyond_margin
    rule: str
    #: for a person: "MAPE 0.31 beats production's 0.33 (version 3)"
    reason: str
    #: ISO 8601, UTC
    decided_at: str
    candidate_version: int
    #: the production model the candidate was held against (None: there was none)
    production_version: int | None = None


class TrainingCode(BaseModel):
    """The code that trained a model: the forecast pipeline's components at their content versions
    (``shared.aml.assets``: a component's YAML, every file of its code folder, the environment), and
    one short hash over them, the version a plan compares (:mod:`shared.mlops.code_version`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: 16 hex digits: one changed line of the pipeline's sources, another version
    version: str = Field(pattern=r"^[0-9a-f]{16}$")
    #: component name -> its content version (the form the ``forecastops.components`` job tag has)
    components: dict[str, str] = Field(default_factory=dict)


class ModelCard(BaseModel):
    """One model version. ``version`` is ``None`` until a registry assigns it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    version: int | None = Field(None, ge=1)
    metrics: Metrics = Field(default_factory=Metrics)
    #: epoch seconds
    trained_at: float
    run_id: str = Field(min_length=1)
    #: dataset -> the version it was trained on (``shipments_weekly`` -> ``v1@2026-11-23``)
    data_versions: dict[str, str] = Field(default_factory=dict)
    stage: Stage = "candidate"
    #: the last decision about this version (promoted or kept), if any
    decision: Decision | None = None
    #: the model's file names, in the registry beside the card
    files: list[str] = Field(default_factory=list)
    #: the code that trained it (None: registered before the code was recorded, or unknown)
    code: TrainingCode | None = None
    #: the weekly batch's week (``YYYY-MM-DD``) that trained it (None: registered outside a batch)
    week: str | None = Field(None, pattern=r"^\d{4}-\d{2}-\d{2}$")

    @field_validator("trained_at")
    @classmethod
    def _finite_time(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("trained_at must be a finite number of epoch seconds")
        return value

    def to_json(self) -> bytes:
        return self.model_dump_json(indent=2).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes | str) -> ModelCard:
        return cls.model_validate_json(data)
