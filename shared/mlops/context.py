"""The weekly batch's context (:class:`Context`), composed in one place from its parts, and what
every step shares: where the batch keeps its records, and the constants of its groups. The
worker (:func:`shared.runtime.batch_context`) and the main job
(:func:`shared.tooling.mainjob.batch_context`) differ only in the parts they hand it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from shared.aml.catalog import Gates, Pipeline
from shared.lake import Lake
from shared.mlops.batch import batch_path
from shared.mlops.cards import TrainingCode
from shared.mlops.code_version import training_code
from shared.mlops.data_assets import DataCatalog
from shared.mlops.registry import Registry
from shared.settings import Settings

#: the forecast pipeline's product-velocity classes (its groups' last segment)
VELOCITIES = ("fast", "slow")
#: what may serve a group, best first (the score step's fallback chain)
SOURCES = ("production", "previous", "baseline")
#: where the published forecasts go: a standard dataset
FORECASTS = "curated/forecasts/v1"


@dataclass(frozen=True)
class Context:
    """What the steps work with (the composition root builds it once per worker)."""

    lake: Lake
    registry: Registry
    data: DataCatalog
    #: the forecast pipeline's gates (the catalog's)
    gates: Gates
    retrain: str = "changed"
    #: the promotion margin (None: the health policy's)
    margin: float | None = None
    watch: dict[str, Any] | None = None
    #: more inputs of the training run besides the curated data (the main job's oracle)
    train_inputs: dict[str, str] | None = None
    #: the code the training run is submitted with (:func:`compose`: the repo's); a production
    #: model trained by other code is retrained. None: the plan compares no code
    code: TrainingCode | None = None
    #: the registry keeps each group's last this many versions and every one ever in production
    versions_kept: int = Settings.model_fields["model_versions_kept"].default


def batch_record(plan: dict[str, Any], name: str) -> str:
    """Where the batch keeps its record ``name`` (``plan``, ``summary``...): the week's batch in
    ``batches/week=<W>/<name>.json``, a staleness retrain of the same week beside it with its
    own suffix, so that neither overwrites the other's."""
    week, instance = plan["week"], plan.get("instance") or f"weekly-batch-{plan['week']}"
    suffix = instance.removeprefix(f"weekly-batch-{week}")
    return batch_path(week, f"{name}{suffix}.json")


def write_json(lake: Lake, path: str, doc: Any) -> None:
    """``doc`` as indented, key-sorted JSON at ``path`` in the lake, written whole."""
    lake.write_bytes(path, json.dumps(doc, indent=2, sort_keys=True).encode("utf-8"))


def watch_options(pipelines: dict[str, Any], polling: dict[str, float] | None) -> dict[str, Any]:
    """How the batch's runs are followed: each pipeline held to its own gates from the catalog,
    the app's polling (the safety poll when job events wake the watch), six hours at most."""
    options: dict[str, Any] = {
        "timeout_s": 6 * 3600.0,
        "pipeline_gates": {name: p.gates.model_dump(mode="json") for name, p in pipelines.items()},
    }
    if polling:
        options["polling"] = polling
    return options


def compose(
    lake: Lake,
    registry: Registry,
    data: DataCatalog,
    pipelines: dict[str, Pipeline],
    settings: Settings,
    *,
    polling: dict[str, float] | None = None,
    train_inputs: dict[str, str] | None = None,
) -> Context:
    """The batch's context: the forecast pipeline's gates and every pipeline's watch options
    from the catalog ``pipelines`` (with ``polling``, None for the policy's own backoff), the
    retrain rule from ``settings``, and ``train_inputs`` (more inputs of the training run besides
    the curated data), the training code's version (:func:`shared.mlops.code_version.training_code`)
    and how many versions the registry keeps. The promotion margin is the health policy's
    (:mod:`shared.health`)."""
    return Context(
        lake=lake,
        registry=registry,
        data=data,
        gates=pipelines["forecast"].gates,
        retrain=settings.retrain,
        watch=watch_options(pipelines, polling),
        train_inputs=train_inputs,
        code=training_code(),
        versions_kept=settings.model_versions_kept,
    )
