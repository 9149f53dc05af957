"""The weekly batch's context (:class:`shared.mlops.steps.Context`), composed in one place from
its parts. The worker (:func:`shared.runtime.batch_context`) and the main job
(:func:`shared.tooling.mainjob.batch_context`) differ only in the parts they hand it."""

from __future__ import annotations

from shared.aml.catalog import Pipeline
from shared.lake import Lake
from shared.mlops.data_assets import DataCatalog
from shared.mlops.registry import Registry
from shared.mlops.steps import Context, watch_options
from shared.settings import Settings


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
    the curated data). The promotion margin is the health policy's (:mod:`shared.health`)."""
    return Context(
        lake=lake,
        registry=registry,
        data=data,
        gates=pipelines["forecast"].gates,
        retrain=settings.retrain,
        watch=watch_options(pipelines, polling),
        train_inputs=train_inputs,
    )
