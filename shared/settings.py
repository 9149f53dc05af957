"""The app's settings: one typed object, read from the environment once per worker.

Names are the app-setting names listed in ``local.settings.sample.json``. Tests build
``Settings(...)`` explicitly instead of touching the environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared import sources

#: the function folders (blueprints) of the app, in the order the app registers them
#: (an ingest folder per source of the registry, :mod:`shared.sources`, then the bridge's)
FUNCTION_FOLDERS = (*sources.ingest_folders(), "trigger_aml", "poll_aml_durable")


class Settings(BaseSettings):
    """The app's settings, from the environment and app settings."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True, populate_by_name=True)

    #: ``local``: a folder on this machine; ``blob``: Blob Storage / ADLS Gen2 (Azurite locally)
    lake_backend: Literal["local", "blob"] = Field("local", validation_alias=AliasChoices("FORECASTOPS_LAKE_BACKEND"))
    #: the local lake's folder (``lake_backend=local``)
    lake_root: Path = Field(Path(".lake"), validation_alias=AliasChoices("FORECASTOPS_LAKE_ROOT"))
    #: connection string of the lake's storage account; the blob triggers use the same
    #: app setting (``connection="LAKE_STORAGE"``). ``UseDevelopmentStorage=true`` is Azurite.
    lake_storage: str | None = Field(None, validation_alias=AliasChoices("LAKE_STORAGE"))
    #: identity-based alternative to a connection string (``DefaultAzureCredential``)
    lake_storage_service_uri: str | None = Field(
        None, validation_alias=AliasChoices("LAKE_STORAGE__blobServiceUri", "LAKE_STORAGE__serviceUri")
    )
    #: the same account's queue endpoint, used with the app's identity: the ingest apps
    #: announce complete weeks on ``batch_queue`` there (with a connection string, its queue)
    lake_storage_queue_uri: str | None = Field(None, validation_alias=AliasChoices("LAKE_STORAGE__queueServiceUri"))
    #: the blob triggers' source: ``EventGrid`` in Azure (Flex Consumption, ADLS Gen2),
    #: ``LogsAndContainerScan`` with Azurite and ``func start``
    blob_trigger_source: Literal["EventGrid", "LogsAndContainerScan"] = Field(
        "LogsAndContainerScan", validation_alias=AliasChoices("FORECASTOPS_BLOB_TRIGGER_SOURCE")
    )
    #: bytes per block read from or staged to the lake
    lake_chunk_bytes: int = Field(
        4 * 1024 * 1024, ge=64 * 1024, validation_alias=AliasChoices("FORECASTOPS_LAKE_CHUNK_BYTES")
    )
    #: Application Insights; telemetry is off when empty
    applicationinsights_connection_string: str | None = Field(
        None, validation_alias=AliasChoices("APPLICATIONINSIGHTS_CONNECTION_STRING")
    )
    log_level: str = Field("INFO", validation_alias=AliasChoices("FORECASTOPS_LOG_LEVEL"))

    #: which backend runs AML pipelines: ``local`` (this machine) or ``azureml`` (the service)
    aml_backend: Literal["local", "azureml"] = Field("local", validation_alias=AliasChoices("FORECASTOPS_AML_BACKEND"))
    #: the AML workspace (``azureml`` backend), reached with DefaultAzureCredential
    aml_subscription_id: str | None = Field(None, validation_alias=AliasChoices("AML_SUBSCRIPTION_ID"))
    aml_resource_group: str | None = Field(None, validation_alias=AliasChoices("AML_RESOURCE_GROUP"))
    aml_workspace: str | None = Field(None, validation_alias=AliasChoices("AML_WORKSPACE"))
    #: the local backend's working folder for step outputs (a lake folder when the lake is local)
    local_runs_root: Path | None = Field(None, validation_alias=AliasChoices("FORECASTOPS_LOCAL_RUNS_ROOT"))
    #: which function folders this app registers, comma-separated (empty: all of them). One code
    #: base, several apps: in Azure each ingestion source and the bridge run as apps of their own
    functions: str = Field("", validation_alias=AliasChoices("FORECASTOPS_FUNCTIONS"))
    #: AML's job events reach the watch (an Event Grid subscription to ``aml_job_event``): the
    #: watch then polls only as a safety net, every ``watch_safety_poll_s``
    watch_events: bool = Field(False, validation_alias=AliasChoices("FORECASTOPS_WATCH_EVENTS"))
    #: when the daily staleness check of the production models runs (NCRONTAB, UTC); the
    #: timer binding reads the app setting itself (``%FORECASTOPS_STALENESS_SCHEDULE%``)
    staleness_schedule: str = Field("0 0 6 * * *", validation_alias=AliasChoices("FORECASTOPS_STALENESS_SCHEDULE"))
    #: the storage queue, in the lake's account, on which the ingest apps announce a week whose
    #: data is complete; the bridge's queue trigger starts that week's batch (empty: no announcing)
    batch_queue: str = Field("forecastops-batches", validation_alias=AliasChoices("FORECASTOPS_BATCH_QUEUE"))
    #: the prefix of the lake account's re-ingest request queues: each source has its own,
    #: ``<ingest_queue>-<source>`` (``ingest-requests-weather``...), which only that source's queue
    #: trigger reads (one queue for the three ingest apps would hand each app the others' files)
    ingest_queue: str = Field(
        "ingest-requests",
        max_length=50,  # a queue name has at most 63 characters: room for "-demographics"
        pattern=r"^[a-z0-9](?:-?[a-z0-9])+$",
        validation_alias=AliasChoices("FORECASTOPS_INGEST_QUEUE"),
    )
    #: a re-ingest request for a raw file larger than this (bytes as stored: a gzip file counts
    #: compressed) is queued and answered 202 + Location, like one that asks ``"async": true``.
    #: The Functions front end drops an HTTP request after 230 s; measured here
    #: (bench/bench_normalise.py, 2 CPUs), the slowest input, gzip CSV read from and written
    #: to Azurite, ingests at ~2.5 MB/s of stored bytes (9.7 MB/s for plain CSV). 32 MiB is
    #: then ~13 s: the limit holds with a 15x margin for a slower instance, a remote account,
    #: a heavier layout (JSON lines, daily rows summed into weeks) and the week index after it
    ingest_sync_max_bytes: int = Field(
        32 * 1024 * 1024, ge=0, validation_alias=AliasChoices("FORECASTOPS_INGEST_SYNC_MAX_BYTES")
    )
    #: a raw file in which more than this share of the rows is rejected (at least
    #: ``reject_file_min_rows`` of them) is quarantined whole: its first rejects kept as samples
    #: with the counts per rule, instead of a rejects file as large as the raw file itself
    reject_ratio_max: float = Field(0.5, gt=0, le=1, validation_alias=AliasChoices("FORECASTOPS_REJECT_RATIO_MAX"))
    #: the fewest rejected rows that can quarantine a file by ``reject_ratio_max`` (a small file's
    #: few bad rows are rejected one by one, as before)
    reject_file_min_rows: int = Field(1000, ge=1, validation_alias=AliasChoices("FORECASTOPS_REJECT_FILE_MIN_ROWS"))
    #: a row dated more than this many days after the clock's today is rejected (``future_date``):
    #: one row of 2062 must not move the lake's latest week
    future_days_max: int = Field(8, ge=0, le=3660, validation_alias=AliasChoices("FORECASTOPS_FUTURE_DAYS_MAX"))
    #: when the weekly fallback starts the last finished week's batch if its data never completed
    #: (NCRONTAB, UTC; the timer binding reads ``%FORECASTOPS_BATCH_SCHEDULE%``): Mondays 09:00
    batch_schedule: str = Field("0 0 9 * * 1", validation_alias=AliasChoices("FORECASTOPS_BATCH_SCHEDULE"))
    #: what the weekly fallback does when a source is missing for the week: ``wait`` (start
    #: nothing, record and log which sources are missing) or ``partial`` (train on what is there
    #: and say so in the batch's summary)
    batch_incomplete: Literal["wait", "partial"] = Field(
        "wait", validation_alias=AliasChoices("FORECASTOPS_BATCH_INCOMPLETE")
    )
    #: which groups a batch retrains: ``changed`` (inputs changed since the production model was
    #: trained, no production model, or a stale one) or ``all``
    retrain: Literal["changed", "all"] = Field("changed", validation_alias=AliasChoices("FORECASTOPS_RETRAIN"))
    #: a stale production model (older than the gates' max age) is retrained ``next_batch`` or
    #: ``at_once`` (the daily staleness check starts a batch for the stale groups)
    stale_retrain: Literal["next_batch", "at_once"] = Field(
        "next_batch", validation_alias=AliasChoices("FORECASTOPS_STALE_RETRAIN")
    )
    #: the model registry keeps each group's last this many versions, and every version that was
    #: ever in production; the batch archives the others after it registers a run's models
    model_versions_kept: int = Field(
        10, ge=1, le=1000, validation_alias=AliasChoices("FORECASTOPS_MODEL_VERSIONS_KEPT")
    )
    watch_safety_poll_s: float = Field(
        900.0, gt=0, le=6 * 3600, validation_alias=AliasChoices("FORECASTOPS_WATCH_SAFETY_POLL_S")
    )
    #: a folder of the user's own mapping files (one TOML per raw layout), loaded with the
    #: shipped ones and validated the same way; a new vendor layout needs no change to the package
    extra_mappings_dir: Path | None = Field(None, validation_alias=AliasChoices("FORECASTOPS_EXTRA_MAPPINGS"))

    def watch_polling(self) -> dict[str, float] | None:
        """The watch's default polling: the safety poll when job events wake it, else None
        (the policy's own backoff)."""
        if not self.watch_events:
            return None
        return {"first_s": self.watch_safety_poll_s, "factor": 1.0, "max_s": self.watch_safety_poll_s}

    @field_validator("functions")
    @classmethod
    def _known_functions(cls, value: str) -> str:
        unknown = [n for n in _names(value) if n not in FUNCTION_FOLDERS]
        if unknown:
            raise ValueError(f"unknown function folder(s) {', '.join(unknown)}; known: {', '.join(FUNCTION_FOLDERS)}")
        return value

    def function_folders(self) -> list[str]:
        """The function folders to register, in the app's order."""
        chosen = set(_names(self.functions))
        return [n for n in FUNCTION_FOLDERS if not chosen or n in chosen]


def _names(value: str) -> list[str]:
    return [n.strip() for n in value.split(",") if n.strip()]


def env_name(field: str) -> str:
    """The app-setting name of a settings field (the first name its alias accepts)."""
    alias = Settings.model_fields[field].validation_alias
    if not isinstance(alias, AliasChoices) or not isinstance(alias.choices[0], str):
        raise TypeError(f"settings field {field} has no app-setting name")
    return alias.choices[0]


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as the environment variables that would produce them (for a child
    process that must see the same lake and backends)."""
    env = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is not None:
            if isinstance(value, Path):
                value = value.absolute()
            env[env_name(name)] = str(value)
    return env


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The worker's settings, read from the environment on first use."""
    return Settings()
