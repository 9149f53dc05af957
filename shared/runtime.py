"""The composition place: clients built once per worker, and the services the function
folders call. Nothing here imports ``azure.functions``; handlers map what these return
(plain dicts and HTTP status codes) onto their bindings.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from typing import Any

from shared import telemetry
from shared.aml.catalog import Pipeline
from shared.aml.status import Backend
from shared.ingestion.datasets import SOURCES
from shared.ingestion.service import ingest, outputs_for
from shared.lake import Lake, NotFoundError, TransientLakeError, make_lake
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def lake() -> Lake:
    """The worker's lake, built on first use from the settings."""
    settings = get_settings()
    telemetry.configure(settings)
    return make_lake(settings)


@lru_cache(maxsize=1)
def aml_backend() -> Backend:
    """The worker's AML backend, built on first use (``azure-ai-ml`` is imported only here,
    so that the ingestion functions' cold start does not pay for it)."""
    settings = get_settings()
    telemetry.configure(settings)
    if settings.aml_backend == "local":
        from shared.aml.local.backend import LocalBackend

        return LocalBackend(lake(), settings)
    from shared.aml.azureml import AzureMLBackend

    return AzureMLBackend.from_settings(settings)


def catalog() -> dict[str, Pipeline]:
    from shared.aml.catalog import load_catalog

    return load_catalog()


def blob_trigger_source(settings: Settings | None = None) -> str:
    """The blob triggers' source, read when the host indexes the app (see CONVENTIONS)."""
    return (settings or get_settings()).blob_trigger_source


def ingest_blob(path: str, invocation_id: str, target: Lake | None = None) -> dict[str, Any]:
    """Blob-arrival ingestion of ``path`` (``raw/<source>/...``).

    Data errors end in quarantine and return normally, so the host does not retry a bad file;
    transient storage errors raise, so that it does.
    """
    with telemetry.log_context(invocation_id=invocation_id, subject=path):
        manifest = ingest(target or lake(), path, invocation_id=invocation_id, progress=_progress_log(path))
        if not manifest.get("unchanged"):  # a redelivery is not new rows
            telemetry.record_ingest(manifest)
        _log_result(manifest)
        return manifest


def _progress_log(path: str) -> telemetry.Throttle:
    return telemetry.Throttle(
        lambda rows, nbytes: log.info("ingesting %s: %d rows, %.1f MB read so far", path, rows, nbytes / 1e6), 30.0
    )


def _log_result(manifest: dict[str, Any]) -> None:
    rows = manifest.get("rows") or {}
    if manifest["status"] == "ingested":
        log.info(
            "ingested %s as %s: %s read, %s written, %s rejected%s",
            manifest["raw"]["path"],
            manifest["format"]["id"],
            rows.get("read"),
            rows.get("written"),
            rows.get("rejected"),
            " (unchanged)" if manifest.get("unchanged") else "",
        )


def problem(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def bad_request(problems: list[dict[str, str]]) -> tuple[int, dict[str, Any], dict[str, str]]:
    return 400, {"error": "invalid_request", "problems": problems}, {}


def reingest_request(
    source: str, body: bytes, invocation_id: str, target: Lake | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """``POST /api/ingest/<source>`` with ``{"path": "raw/<source>/...", "force": false}``.

    200 with the manifest when the file was ingested (rows may have been rejected); 422 with
    the error record when the whole file was quarantined; 400 listing every problem of the
    request; 404 when the raw file does not exist; 503 when storage keeps failing.
    """
    assert source in SOURCES, source
    try:
        data = json.loads(body or b"{}")
    except ValueError as e:
        return bad_request([problem("(body)", f"not JSON: {e}")])
    if not isinstance(data, dict):
        return bad_request([problem("(body)", "expected a JSON object")])
    problems = []
    path = data.get("path")
    force = data.get("force", False)
    unknown = sorted(set(data) - {"path", "force"})
    if unknown:
        problems.append(problem(",".join(unknown), "unknown field(s); expected path and force"))
    if not isinstance(path, str) or not path:
        problems.append(problem("path", f"required: the raw file to ingest, raw/{source}/..."))
    else:
        try:
            outputs_for(path)
            if not path.startswith(f"raw/{source}/"):
                raise ValueError(f"this route ingests raw/{source}/ files; {path!r} is not one")
        except ValueError as e:
            problems.append(problem("path", str(e)))
    if not isinstance(force, bool):
        problems.append(problem("force", "must be true or false"))
    if problems:
        return bad_request(problems)
    with telemetry.log_context(invocation_id=invocation_id, subject=path):
        try:
            manifest = ingest(
                target or lake(), path, invocation_id=invocation_id, force=force, progress=_progress_log(path)
            )
        except NotFoundError:
            return 404, {"error": "not_found", "message": f"no raw file at {path}"}, {}
        except TransientLakeError as e:
            log.warning("re-ingest %s: storage unavailable: %s", path, e)
            return 503, {"error": "storage_unavailable", "message": str(e), "retry_after_s": 30}, {"Retry-After": "30"}
        except Exception:
            log.exception("re-ingest %s: unexpected error", path)
            return (
                500,
                {"error": "internal_error", "message": "an unexpected error; the app's logs have the details"},
                {},
            )
        if not manifest.get("unchanged"):
            telemetry.record_ingest(manifest)
        _log_result(manifest)
    return (200 if manifest["status"] == "ingested" else 422), manifest, {}
