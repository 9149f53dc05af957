"""Telemetry: silent without a connection string; with one, logs and metrics reach the
ingestion endpoint it names (here a stub on loopback) with the invocation id and subject."""

from __future__ import annotations

import json
import logging
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shared import telemetry
from shared.settings import Settings


@pytest.fixture
def ingestion_stub(monkeypatch):
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = zlib.decompress(body, 16 + zlib.MAX_WBITS)
            received.extend(json.loads(body))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"itemsReceived": 1, "itemsAccepted": 1, "errors": []}')

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # the SDK's own usage telemetry ("statsbeat") would go to Microsoft: off, and pointed here
    monkeypatch.setenv("APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL", "true")
    monkeypatch.setenv(
        "APPLICATION_INSIGHTS_STATS_CONNECTION_STRING",
        f"InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:{server.server_port}/",
    )
    yield (
        f"InstrumentationKey=11111111-1111-1111-1111-111111111111;IngestionEndpoint=http://127.0.0.1:{server.server_port}/",
        received,
    )
    telemetry.shutdown()
    server.shutdown()
    server.server_close()


def test_without_a_connection_string_nothing_is_exported():
    telemetry.configure(Settings())
    try:
        assert [h for h in logging.getLogger("shared").handlers if type(h).__name__ == "AzureLogHandler"] == []
        telemetry.record_ingest({"rows": {"read": 1}})  # a no-op, not an error
    finally:
        telemetry.shutdown()


def test_logs_carry_the_invocation_id_and_subject_to_application_insights(ingestion_stub):
    conn, received = ingestion_stub
    telemetry.configure(Settings(applicationinsights_connection_string=conn), export_logs=True)
    log = logging.getLogger("shared.ingestion.service")
    with telemetry.log_context(invocation_id="inv-42", subject="raw/weather/x.csv"):
        log.warning("ingest %s: quarantined", "raw/weather/x.csv")
    telemetry.record_ingest(
        {
            "dataset": "weather_daily",
            "format": {"id": "weather_us_obs_csv"},
            "rows": {"read": 10, "written": 8, "rejected": 2},
            "raw": {"bytes": 100},
            "duration_s": 0.5,
        }
    )
    telemetry.shutdown()
    logs = [e for e in received if e["data"]["baseType"] == "MessageData"]
    assert [e["data"]["baseData"]["message"] for e in logs] == ["ingest raw/weather/x.csv: quarantined"]
    props = logs[0]["data"]["baseData"]["properties"]
    assert props["invocation_id"] == "inv-42" and props["subject"] == "raw/weather/x.csv"
    metrics = {
        m["data"]["baseData"]["metrics"][0]["name"]: m["data"]["baseData"]["metrics"][0]["value"]
        for m in received
        if m["data"]["baseType"] == "MetricData"
    }
    assert metrics.get("forecastops/rows_read") == 10 and metrics.get("forecastops/rows_rejected") == 2


def _sent(received, base_type):
    return [e for e in received if e["data"]["baseType"] == base_type]


def test_under_the_functions_host_a_log_line_is_exported_once_by_the_host_not_by_the_app(ingestion_stub):
    """The worker's composition root configures telemetry as the host runs it: the host
    forwards every log record to Application Insights, so the app sends none itself (a second
    copy), while its custom metrics still go out."""
    from shared import runtime

    conn, received = ingestion_stub
    runtime.lake.cache_clear()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(runtime, "get_settings", lambda: Settings(applicationinsights_connection_string=conn))
            runtime.lake()
        logging.getLogger("shared.ingestion.service").warning("ingest raw/weather/x.csv: quarantined")
        telemetry.record_ingest(
            {"dataset": "weather_daily", "status": "quarantined", "error": {"reason": "empty_file"}}
        )
        telemetry.shutdown()
    finally:
        runtime.lake.cache_clear()
    assert _sent(received, "MessageData") == []
    metrics = [m["data"]["baseData"] for m in _sent(received, "MetricData")]
    quarantined = [m for m in metrics if m["metrics"][0]["name"] == "forecastops/files_quarantined"]
    assert [m["metrics"][0]["value"] for m in quarantined] == [1]
    assert quarantined[0]["properties"] == {"dataset": "weather_daily", "reason": "empty_file"}


def test_a_process_of_its_own_exports_each_log_line_exactly_once(ingestion_stub):
    conn, received = ingestion_stub
    telemetry.configure(Settings(applicationinsights_connection_string=conn), export_logs=True)
    telemetry.configure(Settings(applicationinsights_connection_string=conn), export_logs=True)  # once per worker
    logging.getLogger("shared.tooling.cli").warning("one line")
    telemetry.shutdown()
    assert [e["data"]["baseData"]["message"] for e in _sent(received, "MessageData")] == ["one line"]


def test_every_metric_has_its_dimensions():
    assert set(telemetry.METRIC_DIMENSIONS) == set(telemetry.METRICS)


def test_throttle_reports_at_most_once_per_interval(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(telemetry.time, "monotonic", lambda: now[0])
    seen = []
    t = telemetry.Throttle(lambda rows, nbytes: seen.append(rows), seconds=10)
    for step in range(35):
        now[0] = step
        t(step, 0)
    assert seen == [10, 20, 30]


def test_a_finished_watch_reports_outcomes_durations_and_its_models(ingestion_stub):
    import datetime as dt

    conn, received = ingestion_stub
    telemetry.configure(Settings(applicationinsights_connection_string=conn))
    now = dt.datetime(2026, 11, 26, 12, tzinfo=dt.UTC)
    trained = now.timestamp() - 3 * 86400
    metrics = {
        "evaluate": {"ne.large.fast.mape": 0.3, "ne.large.fast.rmse_all": 4.0, "ne.large.fast.trained_at": trained}
    }
    result = {
        "runs": [
            {
                "run_id": "r1",
                "pipeline": "forecast",
                "outcome": "completed",
                "aml_status": "Completed",
                "duration_s": 3600.0,
                "metrics": metrics,
            },
            {
                "run_id": "r2",
                "pipeline": "forecast",
                "outcome": "failed",
                "aml_status": "Failed",
                "duration_s": None,
                "metrics": {},
            },
        ]
    }
    telemetry.record_watch(result, now)
    telemetry.shutdown()
    sent = [
        (m["data"]["baseData"]["metrics"][0], m["data"]["baseData"]["properties"])
        for m in _sent(received, "MetricData")
    ]
    by_name = {}
    for metric, props in sent:
        by_name.setdefault(metric["name"], []).append((metric["value"], props))
    assert sorted(p["outcome"] for _, p in by_name["forecastops/watch_outcome"]) == ["completed", "failed"]
    assert by_name["forecastops/pipeline_duration_s"] == [
        (3600.0, {"pipeline": "forecast", "aml_status": "Completed", "run_id": "r1"})
    ]
    assert by_name["forecastops/model_mape"] == [(0.3, {"model": "ne.large.fast", "week": "2026-W48"})]
    ((age, props),) = by_name["forecastops/model_age_days"]
    assert age == pytest.approx(3.0) and props == {"model": "ne.large.fast", "stage": "candidate"}


def test_the_staleness_check_reports_every_production_models_age_and_the_stale_count(ingestion_stub):
    conn, received = ingestion_stub
    telemetry.configure(Settings(applicationinsights_connection_string=conn))
    telemetry.record_staleness({"west.large.fast": 75.0, "west.small.slow": 10.0}, 1)
    telemetry.shutdown()
    sent = [
        (m["data"]["baseData"]["metrics"][0], m["data"]["baseData"]["properties"])
        for m in _sent(received, "MetricData")
    ]
    ages = {p["model"]: metric["value"] for metric, p in sent if metric["name"] == "forecastops/model_age_days"}
    # (opencensus keeps every series it saw in the process: other tests' models may be there too)
    assert ages["west.large.fast"] == 75.0 and ages["west.small.slow"] == 10.0
    assert [metric["value"] for metric, _ in sent if metric["name"] == "forecastops/stale_models"] == [1]


def test_a_weekly_batch_reports_its_outcome_and_what_it_did_with_its_groups(ingestion_stub):
    conn, received = ingestion_stub
    telemetry.configure(Settings(applicationinsights_connection_string=conn))
    summary = {
        "week": "2026-12-21",
        "by": "data_complete",
        "outcome": "succeeded",
        "counts": {"retrained": 3, "skipped": 53, "promoted": 2, "kept": 1, "scored": 55, "not scored": 1, "-": 53},
        "sources": {"production": 42, "previous": 0, "baseline": 14},
        "fallback_share": 0.25,
    }
    telemetry.record_batch(summary)
    telemetry.record_batch({"week": "2026-12-28", "by": "schedule", "outcome": "waiting_for_data"})
    telemetry.shutdown()
    sent = [
        (m["data"]["baseData"]["metrics"][0], m["data"]["baseData"]["properties"])
        for m in _sent(received, "MetricData")
    ]
    outcomes = sorted(
        (p["week"], p["outcome"], p["by"], metric["value"])
        for metric, p in sent
        if metric["name"] == "forecastops/batch_outcome"
    )
    assert outcomes == [
        ("2026-12-21", "succeeded", "data_complete", 1),
        ("2026-12-28", "waiting_for_data", "schedule", 1),
    ]
    groups = {p["action"]: metric["value"] for metric, p in sent if metric["name"] == "forecastops/batch_groups"}
    assert groups == {"retrained": 3, "skipped": 53, "promoted": 2, "kept": 1, "scored": 55, "not scored": 1}
    # the share served by fallback, once per batch that scored (the waiting batch has none)
    shares = [(p, metric["value"]) for metric, p in sent if metric["name"] == "forecastops/batch_fallback_share"]
    assert shares == [({"week": "2026-12-21"}, 0.25)]
