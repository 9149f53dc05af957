"""Logs and metrics: Application Insights through opencensus-ext-azure when a connection
string is set, plain logging otherwise.

Under the Functions host, the host forwards the worker's log records to Application Insights
itself, so the app exports only its custom metrics there (``export_logs=False``): a log line
reaches Application Insights once, never twice. A process of its own (the command line)
exports its log records too.

Within :func:`log_context`, records sent to Application Insights carry the invocation id (or
durable instance id) and the subject they are about (a raw path, a run id) as custom
dimensions; the messages themselves name the path or run id (``log.info("... %s", path)``),
and the Functions host ties every line to its invocation.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import datetime as dt
import logging
import math
import time
from collections.abc import Iterator
from typing import Any

from shared.settings import Settings

_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("forecastops_log", default=None)
_configured: dict[str, Any] = {}
_measures: dict[str, Any] = {}

#: the custom metrics, exported as ``forecastops/<name>``
METRICS = {
    "rows_read": "rows read from a raw file",
    "rows_written": "rows written to the curated dataset",
    "rows_rejected": "rows sent to quarantine",
    "raw_bytes": "bytes of the raw file",
    "duration_ms": "time to ingest one raw file",
    "files_quarantined": "raw files quarantined whole",
    "watch_outcome": "AML runs a watch followed to their end, by outcome",
    "pipeline_duration_s": "seconds an AML run took, from its start to its end",
    "model_mape": "a model's MAPE in its run",
    "model_rmse_0": "a model's RMSE over rows whose actual is zero",
    "model_rmse_all": "a model's RMSE over all rows",
    "model_baseline_mape": "the historical-average baseline's MAPE for the model's group",
    "model_age_days": "days since the model was trained",
    "stale_models": "production models older than the staleness limit, at the daily check",
    "batch_outcome": "weekly batches ended, by outcome (succeeded, failed, waiting_for_data) and who started them",
    "batch_groups": "a weekly batch's groups, by what it did with them (retrained, skipped, promoted, ...)",
    "batch_fallback_share": "the share of a weekly batch's scored groups served by a fallback (previous or baseline)",
}
#: each metric's dimensions (custom dimensions in Application Insights)
METRIC_DIMENSIONS = {
    "rows_read": ("dataset", "format"),
    "rows_written": ("dataset", "format"),
    "rows_rejected": ("dataset", "format"),
    "raw_bytes": ("dataset", "format"),
    "duration_ms": ("dataset", "format"),
    "files_quarantined": ("dataset", "reason"),
    "watch_outcome": ("pipeline", "outcome"),
    "pipeline_duration_s": ("pipeline", "aml_status", "run_id"),
    "model_mape": ("model", "week"),
    "model_rmse_0": ("model", "week"),
    "model_rmse_all": ("model", "week"),
    "model_baseline_mape": ("model", "week"),
    "model_age_days": ("model", "stage"),
    "stale_models": ("stage",),
    "batch_outcome": ("outcome", "by", "week"),
    "batch_groups": ("week", "action"),
    "batch_fallback_share": ("week",),
}
#: metrics read as their last value (the others add up)
LAST_VALUE = frozenset(
    {
        "pipeline_duration_s",
        "model_mape",
        "model_rmse_0",
        "model_rmse_all",
        "model_baseline_mape",
        "model_age_days",
        "stale_models",
        "batch_groups",
        "batch_fallback_share",
    }
)
#: a run's metric (its last name) -> the custom metric that carries it per model
MODEL_METRICS = {
    "mape": "model_mape",
    "rmse_0": "model_rmse_0",
    "rmse_all": "model_rmse_all",
    "baseline_mape": "model_baseline_mape",
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


def configure(settings: Settings, *, export_logs: bool = False) -> None:
    """Wire logging (once per worker); exporters only when a connection string is set, and
    the log exporter only with ``export_logs`` (a process the Functions host does not run)."""
    if _configured:
        return
    root = logging.getLogger("shared")
    root.setLevel(settings.log_level.upper())
    # on the handler, not the logger: a logger's filters do not see its children's records
    ctx_filter = ContextFilter()
    _configured["filter"] = ctx_filter
    conn = settings.applicationinsights_connection_string
    if not conn:
        return
    # imported here: opencensus costs import time that a worker without App Insights skips
    from opencensus.ext.azure import metrics_exporter
    from opencensus.ext.azure.log_exporter import AzureLogHandler
    from opencensus.stats import aggregation, measure, stats, view

    if export_logs:
        handler = AzureLogHandler(connection_string=conn)
        handler.addFilter(ctx_filter)
        root.addHandler(handler)
        _configured["handler"] = handler
    # opencensus keeps views process-wide: register them once, and reuse their measures
    if not _measures:
        for name, desc in METRICS.items():
            m = measure.MeasureFloat(f"forecastops/{name}", desc, "1")
            dims = list(METRIC_DIMENSIONS[name])
            how = aggregation.LastValueAggregation() if name in LAST_VALUE else aggregation.SumAggregation()
            stats.stats.view_manager.register_view(view.View(f"forecastops/{name}", desc, dims, m, how))
            _measures[name] = m
    measures = dict(_measures)
    # the Functions host reports CPU and memory itself: only this app's own metrics here
    exporter = metrics_exporter.new_metrics_exporter(connection_string=conn, enable_standard_metrics=False)
    _configured.update(measures=measures, recorder=stats.stats.stats_recorder, exporter=exporter)


def shutdown() -> None:
    """Flush and detach the exporters (tests, and a worker that reconfigures)."""
    root = logging.getLogger("shared")
    handler = _configured.get("handler")
    if handler is not None:
        handler.flush(timeout=5)
        root.removeHandler(handler)
        handler.close()
    exporter = _configured.get("exporter")
    if exporter is not None:
        exporter.shutdown()  # exports what was recorded, then stops its thread
        atexit.unregister(exporter.shutdown)  # or it exports once more at exit
    _configured.clear()


class Throttle:
    """Calls ``report(rows, bytes)`` at most every ``seconds``: progress on long work."""

    def __init__(self, report: Any, seconds: float = 10.0) -> None:
        self.report = report
        self.seconds = seconds
        self._next = time.monotonic() + seconds

    def __call__(self, rows: int, nbytes: int) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.seconds
            self.report(rows, nbytes)


def record_ingest(manifest: dict[str, Any]) -> None:
    """Emit the per-file metrics of an ingest (a no-op without App Insights)."""
    if not _configured.get("measures"):
        return
    dataset = manifest.get("dataset", "")
    if manifest.get("status") == "quarantined":
        reason = (manifest.get("error") or {}).get("reason", "unknown")
        _record({"files_quarantined": 1}, {"dataset": dataset, "reason": reason})
        return
    rows = manifest.get("rows") or {}
    values = {
        "rows_read": rows.get("read", 0),
        "rows_written": rows.get("written", 0),
        "rows_rejected": rows.get("rejected", 0),
        "raw_bytes": (manifest.get("raw") or {}).get("bytes", 0),
        "duration_ms": 1000 * (manifest.get("duration_s") or 0),
    }
    _record(values, {"dataset": dataset, "format": (manifest.get("format") or {}).get("id", "none")})


def record_watch(result: dict[str, Any], now: dt.datetime) -> None:
    """Emit what a finished watch learned (a no-op without App Insights): each run's outcome
    and duration, and each completed run's models: their metrics for the week, and their age."""
    if not _configured.get("measures"):
        return
    iso = now.isocalendar()
    week = f"{iso.year}-W{iso.week:02d}"
    for run in result.get("runs") or []:
        pipeline = run.get("pipeline") or "unknown"
        _record({"watch_outcome": 1}, {"pipeline": pipeline, "outcome": run.get("outcome") or "unknown"})
        if run.get("duration_s") is not None:
            dims = {"pipeline": pipeline, "aml_status": run.get("aml_status", ""), "run_id": run.get("run_id") or ""}
            _record({"pipeline_duration_s": run["duration_s"]}, dims)
        if run.get("outcome") not in ("completed", "gate_failed"):
            continue
        for values in (run.get("metrics") or {}).values():
            _record_models(values, week, now)


def record_staleness(ages: dict[str, float], stale: int) -> None:
    """The daily staleness check: each production model's age, and how many are stale."""
    if not _configured.get("measures"):
        return
    for model, age in ages.items():
        _record({"model_age_days": age}, {"model": model, "stage": "production"})
    _record({"stale_models": stale}, {"stage": "production"})


def record_batch(summary: dict[str, Any]) -> None:
    """A weekly batch's end: its outcome, how many groups it retrained, skipped, promoted,
    kept and scored, and the share of its scored groups served by a fallback (a batch that
    scored nothing, waiting for data, has no share)."""
    if not _configured.get("measures"):
        return
    week = str(summary.get("week"))
    outcome = {"outcome": str(summary.get("outcome")), "by": str(summary.get("by")), "week": week}
    _record({"batch_outcome": 1}, outcome)
    for action, count in (summary.get("counts") or {}).items():
        if action != "-":
            _record({"batch_groups": count}, {"week": week, "action": action})
    share = summary.get("fallback_share")
    if isinstance(share, int | float) and math.isfinite(share):
        _record({"batch_fallback_share": share}, {"week": week})


def _record_models(values: dict[str, Any], week: str, now: dt.datetime) -> None:
    for name, value in values.items():
        model, _, kind = name.rpartition(".")
        if not model or not isinstance(value, int | float) or not math.isfinite(value):
            continue
        if kind in MODEL_METRICS:
            _record({MODEL_METRICS[kind]: value}, {"model": model, "week": week})
        elif kind == "trained_at":
            _record({"model_age_days": (now.timestamp() - value) / 86400}, {"model": model, "stage": "candidate"})


def _record(values: dict[str, float], dimensions: dict[str, str]) -> None:
    from opencensus.tags import tag_map

    tags = tag_map.TagMap()
    for key, text in dimensions.items():
        tags.insert(key, text)
    mmap = _configured["recorder"].new_measurement_map()
    for name, value in values.items():
        mmap.measure_float_put(_configured["measures"][name], float(value or 0))
    mmap.record(tags)
