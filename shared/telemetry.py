"""Logs and metrics: Application Insights through opencensus-ext-azure when a connection
string is set, plain logging otherwise.

Every log record carries the invocation id (or durable instance id) and the subject it is
about (a raw path, a run id) from :func:`log_context`, both in the text and, in Application
Insights, as custom dimensions.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator
from typing import Any

from shared.settings import Settings

_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("forecastops_log", default=None)
_configured: dict[str, Any] = {}

#: the custom metrics recorded per ingested file
METRICS = {
    "rows_read": "rows read from a raw file",
    "rows_written": "rows written to the curated dataset",
    "rows_rejected": "rows sent to quarantine",
    "raw_bytes": "bytes of the raw file",
    "duration_ms": "time to ingest one raw file",
}


@contextlib.contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Within the block, every log record carries ``fields`` (invocation_id, subject, ...)."""
    token = _context.set({**(_context.get() or {}), **{k: v for k, v in fields.items() if v}})
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Adds the current log context to each record (text and App Insights dimensions)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _context.get() or {}
        record.invocation_id = ctx.get("invocation_id", "-")
        record.subject = ctx.get("subject", "-")
        dims = dict(getattr(record, "custom_dimensions", None) or {})
        record.custom_dimensions = {**ctx, **dims}
        return True


def configure(settings: Settings) -> None:
    """Wire logging (once per worker); exporters only when a connection string is set."""
    if _configured:
        return
    root = logging.getLogger("shared")
    root.setLevel(settings.log_level.upper())
    ctx_filter = ContextFilter()
    root.addFilter(ctx_filter)
    _configured["filter"] = ctx_filter
    conn = settings.applicationinsights_connection_string
    if not conn:
        return
    # imported here: opencensus costs import time that a worker without App Insights skips
    from opencensus.ext.azure import metrics_exporter
    from opencensus.ext.azure.log_exporter import AzureLogHandler
    from opencensus.stats import aggregation, measure, stats, view

    handler = AzureLogHandler(connection_string=conn)
    handler.addFilter(ctx_filter)
    root.addHandler(handler)
    measures = {name: measure.MeasureFloat(f"forecastops/{name}", desc, "1") for name, desc in METRICS.items()}
    for name, m in measures.items():
        stats.stats.view_manager.register_view(
            view.View(f"forecastops/{name}", METRICS[name], ["dataset", "format"], m, aggregation.SumAggregation())
        )
    exporter = metrics_exporter.new_metrics_exporter(connection_string=conn)
    stats.stats.view_manager.register_exporter(exporter)
    _configured.update(measures=measures, recorder=stats.stats.stats_recorder, handler=handler)


def record_ingest(manifest: dict[str, Any]) -> None:
    """Emit the per-file metrics of an ingest (a no-op without App Insights)."""
    measures = _configured.get("measures")
    if not measures:
        return
    from opencensus.tags import tag_map

    rows = manifest.get("rows") or {}
    values = {
        "rows_read": rows.get("read", 0),
        "rows_written": rows.get("written", 0),
        "rows_rejected": rows.get("rejected", 0),
        "raw_bytes": (manifest.get("raw") or {}).get("bytes", 0),
        "duration_ms": 1000 * (manifest.get("duration_s") or 0),
    }
    tags = tag_map.TagMap()
    tags.insert("dataset", manifest.get("dataset", ""))
    tags.insert("format", (manifest.get("format") or {}).get("id", "none"))
    mmap = _configured["recorder"].new_measurement_map()
    for name, value in values.items():
        mmap.measure_float_put(measures[name], float(value or 0))
    mmap.record(tags)
