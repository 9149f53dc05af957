"""The composition root: the worker's clients, built once on first use from the settings.

Function handlers take what they need from here and hand it to the services in the
capability packages; nothing else builds a lake or a backend (the command line builds its
own through :func:`make_backend`, for a lake it names). Nothing here imports
``azure.functions``.
"""

from __future__ import annotations

import datetime as dt
import logging
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

from shared import telemetry
from shared.lake import Lake, make_lake
from shared.settings import Settings, get_settings

if TYPE_CHECKING:  # the bridge's modules are imported on first use: an ingestion app never loads them
    from azure.ai.ml import MLClient

    from shared.aml.backend import Backend
    from shared.aml.catalog import Pipeline
    from shared.ingestion.reingest import Wiring
    from shared.mlops.data_assets import DataCatalog
    from shared.mlops.registry import Registry
    from shared.mlops.steps import Context
    from shared.weeks.announce import Signal

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def lake() -> Lake:
    """The worker's lake, built on first use from the settings."""
    settings = get_settings()
    # the host forwards the worker's log records itself: only the custom metrics from here
    telemetry.configure(settings, export_logs=False)
    return make_lake(settings)


@lru_cache(maxsize=1)
def batch_signal() -> Signal | None:
    """Where the worker announces a week whose data is complete (the lake account's batch
    queue), or None when announcing is off; built on first use."""
    from shared.weeks.announce import signal_from_settings

    return signal_from_settings(get_settings())


@cache
def request_queue(source: str) -> Signal | None:
    """The source's re-ingest request queue in the lake's account (``<FORECASTOPS_INGEST_QUEUE>-
    <source>``), or None when no storage account is named; built on first use."""
    from shared.ingestion.reingest import queue_name
    from shared.weeks.announce import lake_queue

    settings = get_settings()
    return lake_queue(settings, queue_name(settings.ingest_queue, source))


def ingestion(source: str) -> Wiring:
    """What the functions of ``source``'s folder work with: the lake, the batch queue, the
    source's request queue (each built once per worker) and the size over which a re-ingest is
    always queued."""
    from shared.ingestion.reingest import Wiring

    return Wiring(lake(), batch_signal(), request_queue(source), get_settings().ingest_sync_max_bytes)


def make_backend(settings: Settings, lake: Lake) -> Backend:
    """The AML backend the settings name, over ``lake`` (``azure-ai-ml`` is imported only
    here, so that the ingestion functions' cold start does not pay for it)."""
    if settings.aml_backend == "local":
        from shared.aml.local.backend import LocalBackend

        return LocalBackend(lake, settings)
    from shared.aml.azureml import AzureMLBackend

    return AzureMLBackend.from_settings(settings)


@lru_cache(maxsize=1)
def aml_backend() -> Backend:
    """The worker's AML backend, built on first use."""
    return make_backend(get_settings(), lake())


def record_watch(result: dict[str, Any], now: dt.datetime) -> None:
    """A finished watch's telemetry (outcomes, durations, the models' metrics), from the worker.
    Telemetry never fails the watch: a fault here is logged and the answer stands."""
    try:
        telemetry.configure(get_settings(), export_logs=False)
        telemetry.record_watch(result, now)
    except Exception:
        log.warning("the watch's telemetry could not be recorded", exc_info=True)


def _aml_client() -> MLClient | None:
    """The azureml backend's MLClient (whose workspace holds the registry and the data
    assets), or None with the local backend."""
    if get_settings().aml_backend != "azureml":
        return None
    from shared.aml.azureml import AzureMLBackend

    backend = aml_backend()
    return backend.client if isinstance(backend, AzureMLBackend) else None


@lru_cache(maxsize=1)
def registry() -> Registry:
    """The worker's model registry: AML's (azureml backend) or a folder in the lake (local)."""
    client = _aml_client()
    if client is not None:
        from shared.mlops.aml_registry import AzureRegistry

        return AzureRegistry(client, lake())
    from shared.mlops.registry import LakeRegistry

    return LakeRegistry(lake())


@lru_cache(maxsize=1)
def data_catalog() -> DataCatalog:
    """The worker's data catalog: AML data assets (azureml backend), and the lake's records."""
    client = _aml_client()
    if client is not None:
        from shared.mlops.aml_data_assets import AzureDataCatalog

        return AzureDataCatalog(client, lake())
    from shared.mlops.data_assets import LakeDataCatalog

    return LakeDataCatalog(lake())


def batch_context(settings: Settings | None = None) -> Context:
    """What the weekly batch's steps work with: the worker's lake, registry and data catalog,
    and the app's polling (:func:`shared.mlops.context.compose`)."""
    from shared.mlops.context import compose

    settings = settings or get_settings()
    return compose(lake(), registry(), data_catalog(), catalog(), settings, polling=settings.watch_polling())


def catalog() -> dict[str, Pipeline]:
    """The pipeline catalog, loaded on first use."""
    from shared.aml.catalog import load_catalog

    return load_catalog()


def blob_trigger_source(settings: Settings | None = None) -> str:
    """The blob triggers' source, read when the host indexes the app: the one setting read at
    import, since the host needs the binding's value before any invocation."""
    return (settings or get_settings()).blob_trigger_source
