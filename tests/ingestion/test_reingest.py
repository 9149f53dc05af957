"""The asynchronous re-ingest (shared/ingestion/reingest.py), through the functions as the app
indexes them: the route's 202 + Location, the message on Azurite's queue handed to the queue
trigger as the host would, and the status route that Location names."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from shared import clock, runtime
from shared.ingestion import entrypoints as ingestion
from shared.ingestion import reingest
from shared.settings import get_settings
from tests.drivers import (
    ROOT_DIR,
    US_OBS_HEADER,
    HostQueue,
    context,
    http_request,
    indexed_functions,
    lines,
    put,
    read_json,
)

ROOT = ROOT_DIR
SOURCES = ("weather", "shipments", "demographics")
WEATHER = "raw/weather/us_obs/2026.csv"
#: what no answer may carry: a traceback, or a path of the machine that answered
LEAKS = re.compile(r"Traceback|File \"|(?<![\w.])/(?:tmp|home|work|usr|var|root|opt|srv)/|[A-Za-z]:\\\\")


def _clear_runtime() -> None:
    get_settings.cache_clear()
    runtime.lake.cache_clear()
    runtime.batch_signal.cache_clear()
    runtime.request_queue.cache_clear()


@pytest.fixture
def app(monkeypatch, azurite, blob_lake):
    """The app on Azurite, with request queues of its own (a fresh prefix per test)."""
    prefix = f"ir-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("FORECASTOPS_LAKE_BACKEND", "blob")
    monkeypatch.setenv("LAKE_STORAGE", azurite.connection_string)
    monkeypatch.setenv("FORECASTOPS_INGEST_QUEUE", prefix)
    _clear_runtime()
    yield blob_lake
    _clear_runtime()
    from azure.storage.queue import QueueServiceClient

    service = QueueServiceClient.from_connection_string(azurite.connection_string)
    for queue in service.list_queues(name_starts_with=prefix):
        service.delete_queue(queue.name)


def queue_of(source: str, connection_string: str) -> HostQueue:
    """The queue the source's queue trigger reads: its binding's queueName, resolved with the
    app settings as the host resolves ``%name%``."""
    (binding,) = json.loads(indexed_functions()[f"ingest_{source}_queue"].get_function_json())["bindings"]
    name = re.sub(r"%(\w+)%", lambda m: os.environ[m.group(1)], binding["queueName"])
    return HostQueue(connection_string, name)


def _answer(resp: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
    assert resp.mimetype == "application/json"
    text = resp.get_body().decode()
    assert not LEAKS.search(text), text
    return resp.status_code, json.loads(text), dict(resp.headers)


def post(source: str, body: Any, code: str | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    fn = indexed_functions()[f"ingest_{source}_http"].get_user_function()
    req = http_request("POST", f"ingest/{source}", body, params={"code": code} if code else None)
    return _answer(fn(req=req, context=context(str(uuid.uuid4()))))


def follow(location: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    """GET a Location as ADF's Web activity does: the route it names, with its query."""
    parts = urlsplit(location)
    assert parts.netloc == "localhost:7071", location
    route = parts.path.removeprefix("/api/")
    m = re.fullmatch(r"ingest/(\w+)/requests/([^/]*)", route)
    assert m, location
    fn = indexed_functions()[f"ingest_{m.group(1)}_request"].get_user_function()
    req = http_request("GET", route, params=dict(parse_qsl(parts.query)), route_params={"request_id": m.group(2)})
    return _answer(fn(req=req))


def status_of(source: str, request_id: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    return follow(f"http://localhost:7071/api/ingest/{source}/requests/{request_id}")


def run_queue(source: str, queue: HostQueue, invocation_id: str = "queue-run") -> list[BaseException | None]:
    fn = indexed_functions()[f"ingest_{source}_queue"].get_user_function()
    return queue.deliver(fn, context=context(invocation_id))


def put_weather(lake: Any, path: str = WEATHER, rows: int = 1) -> str:
    return put(lake, path, lines(US_OBS_HEADER, *[f"2134,01/{d:02d}/2026,50,32,0.1," for d in range(1, rows + 1)]))


# --- the whole request ------------------------------------------------------------------------


def test_an_async_request_is_queued_then_run_by_the_queue_trigger_and_answered_by_its_status_route(app, azurite):
    put_weather(app)
    status, body, headers = post("weather", {"path": WEATHER, "async": True}, code="k3y")
    assert status == 202 and body["status"] == "queued" and body["attached"] is False
    location = headers["Location"]
    assert location == f"http://localhost:7071/api/ingest/weather/requests/{body['request_id']}?code=k3y"
    assert headers["Retry-After"] == str(reingest.RETRY_AFTER_S) and body["status_url"] == location
    assert not app.exists("curated/weather_daily/v1/us_obs/2026.manifest.json")  # nothing ran in the request

    status, waiting, headers = follow(location)
    assert status == 202 and waiting["status"] == "queued" and headers["Location"] == location

    queue = queue_of("weather", azurite.connection_string)
    (message,) = [json.loads(b) for b in queue.bodies()]
    assert message["request_id"] == body["request_id"] and message["path"] == WEATHER
    assert run_queue("weather", queue, "the-queue-invocation") == [None]
    assert queue.bodies() == []

    status, manifest, _ = follow(location)
    assert status == 200 and manifest["status"] == "ingested" and manifest["rows"]["written"] == 1
    assert manifest["invocation_id"] == "the-queue-invocation"
    assert read_json(app, "curated/weather_daily/v1/us_obs/2026.manifest.json") == {
        k: v for k, v in manifest.items() if k != "unchanged"
    }


def test_an_identical_request_while_one_is_pending_reattaches_to_it(app, azurite):
    put_weather(app)
    queue = queue_of("weather", azurite.connection_string)
    first = post("weather", {"path": WEATHER, "async": True})
    again = post("weather", {"path": WEATHER, "async": True, "force": False})
    assert first[0] == again[0] == 202 and again[1]["attached"] is True
    assert again[2]["Location"] == first[2]["Location"] and again[1]["request_id"] == first[1]["request_id"]
    assert len(queue.bodies()) == 1  # one message: one ingest
    forced = post("weather", {"path": WEATHER, "async": True, "force": True})
    assert forced[0] == 202 and forced[1]["request_id"] != first[1]["request_id"]
    assert len(queue.bodies()) == 2
    assert run_queue("weather", queue) == [None, None]
    # ended: the same request runs again; a new version of the file is another request
    later = post("weather", {"path": WEATHER, "async": True})
    assert later[0] == 202 and later[1]["attached"] is False and later[1]["request_id"] == first[1]["request_id"]
    put_weather(app, rows=2)
    newer = post("weather", {"path": WEATHER, "async": True})
    assert newer[0] == 202 and newer[1]["request_id"] != first[1]["request_id"]
    assert len(queue.bodies()) == 2


def test_a_file_quarantined_by_a_queued_request_answers_422_from_the_status_route(app, azurite):
    put(app, "raw/shipments/x.csv", b"this is not a shipment file\n")
    status, body, headers = post("shipments", {"path": "raw/shipments/x.csv", "async": True})
    assert status == 202
    assert run_queue("shipments", queue_of("shipments", azurite.connection_string)) == [None]
    status, record, _ = follow(headers["Location"])
    assert status == 422 and record["status"] == "quarantined" and record["error"]["reason"] == "no_matching_format"


def test_a_request_failing_on_every_attempt_ends_failed_with_one_line_and_its_message_poisoned(
    app, azurite, monkeypatch
):
    def broken(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise RuntimeError("disk full at /home/worker/site/wwwroot/shared/ingestion/write.py:120\nmore")

    monkeypatch.setattr(reingest, "ingest", broken)
    put_weather(app)
    _, body, headers = post("weather", {"path": WEATHER, "async": True})
    queue = queue_of("weather", azurite.connection_string)
    for attempt in range(1, reingest.MAX_DEQUEUE + 1):
        deadline = time.monotonic() + 10
        while not queue.bodies():  # the host retries once the message is visible again
            assert time.monotonic() < deadline, "the message never came back"
            time.sleep(0.2)
        (outcome,) = run_queue("weather", queue)
        assert isinstance(outcome, RuntimeError)  # raised: the host retries, then poisons
        status, answer, _ = follow(headers["Location"])
        if attempt < reingest.MAX_DEQUEUE:
            assert status == 202 and answer["attempts"] == attempt and "RuntimeError" in answer["last_error"]
    assert queue.bodies() == [] and len(queue.bodies(poison=True)) == 1
    status, answer, _ = follow(headers["Location"])
    assert status == 502 and answer["error"] == "reingest_failed" and answer["request_id"] == body["request_id"]
    assert "RuntimeError" in answer["message"] and f"after {reingest.MAX_DEQUEUE} attempts" in answer["message"]
    assert "\n" not in answer["message"] and "disk full" not in answer["message"]
    assert answer["path"] == WEATHER


def test_a_file_over_the_size_setting_is_queued_without_asking_and_a_smaller_one_answered_at_once(
    app, azurite, monkeypatch
):
    small = put_weather(app, "raw/weather/us_obs/small.csv")
    large = put_weather(app, "raw/weather/us_obs/large.csv", rows=20)
    monkeypatch.setenv("FORECASTOPS_INGEST_SYNC_MAX_BYTES", str(app.stat(small).size))
    get_settings.cache_clear()
    status, manifest, _ = post("weather", {"path": small})
    assert status == 200 and manifest["status"] == "ingested"
    status, body, headers = post("weather", {"path": large})
    assert status == 202 and body["status"] == "queued" and "Location" in headers
    assert not app.exists("curated/weather_daily/v1/us_obs/large.manifest.json")
    assert run_queue("weather", queue_of("weather", azurite.connection_string)) == [None]
    status, manifest, _ = follow(headers["Location"])
    assert status == 200 and manifest["rows"]["written"] == 20


def test_an_unknown_request_is_404_and_a_malformed_id_400(app):
    put_weather(app)
    assert status_of("weather", "0" * 32)[0] == 404
    for malformed in ("..", "not-an-id", "A" * 32, "0" * 33):
        status, answer, _ = status_of("weather", malformed)
        assert status == 400 and [p["field"] for p in answer["problems"]] == ["request_id"], malformed
    _, body, _ = post("weather", {"path": WEATHER, "async": True})
    assert status_of("weather", body["request_id"])[0] == 202
    assert status_of("shipments", body["request_id"])[0] == 404  # another source's request


def test_a_request_that_cannot_be_queued_is_503_and_leaves_nothing_pending(app, azurite, monkeypatch):
    put_weather(app)
    dead = re.sub(
        r"QueueEndpoint=[^;]+;", "QueueEndpoint=http://127.0.0.1:9/devstoreaccount1;", azurite.connection_string
    )
    monkeypatch.setenv("LAKE_STORAGE", dead)
    _clear_runtime()
    status, answer, headers = post("weather", {"path": WEATHER, "async": True})
    assert status == 503 and answer["error"] == "queue_unavailable" and headers["Retry-After"] == "30"
    assert list(app.list("batches/ingest-requests/weather")) == []
    monkeypatch.setenv("LAKE_STORAGE", azurite.connection_string)
    _clear_runtime()
    status, body, _ = post("weather", {"path": WEATHER, "async": True})
    assert status == 202 and body["attached"] is False
    assert len(queue_of("weather", azurite.connection_string).bodies()) == 1


def test_a_pending_request_with_no_sign_of_life_for_an_hour_is_lost_and_posting_it_again_queues_it(app, azurite):
    put_weather(app)
    _, body, headers = post("weather", {"path": WEATHER, "async": True})
    where = reingest.record_path("weather", body["request_id"])
    record = read_json(app, where)
    record["updated_at"] = clock.iso(clock.now() - dt.timedelta(seconds=reingest.LOST_AFTER_S + 60))
    app.write_bytes(where, json.dumps(record).encode())
    status, answer, _ = follow(headers["Location"])
    assert status == 502 and "post it again" in answer["message"] and answer["state"] == "queued"
    status, again, _ = post("weather", {"path": WEATHER, "async": True})
    assert status == 202 and again["attached"] is False
    assert len(queue_of("weather", azurite.connection_string).bodies()) == 2
    assert follow(headers["Location"])[0] == 202


# --- the parts -----------------------------------------------------------------------------------


def test_each_queue_trigger_reads_the_queue_its_route_sends_to(monkeypatch):
    monkeypatch.setenv("FORECASTOPS_INGEST_QUEUE", "ingest-requests")
    for source in SOURCES:
        assert queue_of(source, "UseDevelopmentStorage=true").name == reingest.queue_name("ingest-requests", source)
    assert len({queue_of(s, "UseDevelopmentStorage=true").name for s in SOURCES}) == 3


def test_the_host_gives_a_message_the_attempts_the_request_counts_on_and_lost_outlasts_an_attempt():
    host = json.loads((ROOT / "host.json").read_text())
    assert host["extensions"]["queues"]["maxDequeueCount"] == reingest.MAX_DEQUEUE
    hours, minutes, seconds = (int(x) for x in host["functionTimeout"].split(":"))
    lease_s = 10 * 60  # the queue trigger's lease on a message whose worker died
    assert hours * 3600 + minutes * 60 + seconds + lease_s < reingest.LOST_AFTER_S


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"path": WEATHER, "async": "yes"}, ["async"]),
        ({"path": WEATHER, "async": 1, "force": None}, ["force", "async"]),
        ({"path": WEATHER, "async": True, "later": True}, ["later"]),
    ],
    ids=["string", "number-and-null", "unknown-field"],
)
def test_async_must_be_true_or_false_and_unknown_fields_are_refused(local_lake, body, fields, invocation_id):
    put_weather(local_lake)
    status, answer, _ = ingestion.reingest_request("weather", json.dumps(body).encode(), invocation_id, local_lake)
    assert status == 400 and [p["field"] for p in answer["problems"]] == fields
    assert not local_lake.exists("curated/weather_daily/v1/us_obs/2026.manifest.json")


def test_an_app_without_a_request_queue_answers_503_to_an_async_request(local_lake, invocation_id):
    put_weather(local_lake)
    body = json.dumps({"path": WEATHER, "async": True}).encode()
    status, answer, _ = ingestion.reingest_request("weather", body, invocation_id, local_lake, queue=None)
    assert status == 503 and answer["error"] == "queue_unavailable"
    assert list(local_lake.list(reingest.RECORDS)) == []
    assert ingestion.reingest_request("weather", body, invocation_id, local_lake, queue=None)[0] == 503


def test_a_message_that_names_no_request_raises_and_one_naming_another_sources_file_fails_at_once(local_lake):
    with pytest.raises(ValueError, match="request_id"):
        reingest.run_request(local_lake, "weather", b"not json", 1, "inv")
    rid = "a" * 32
    message = json.dumps({"request_id": rid, "path": "raw/shipments/x.csv", "force": False}).encode()
    record = reingest.run_request(local_lake, "weather", message, 1, "inv")
    assert record["status"] == "failed" and "raw/weather/" in record["error"]["message"]
    status, answer, _ = reingest.request_status(local_lake, "weather", rid, "http://h")
    assert status == 502 and answer["error"] == "reingest_failed"


def test_a_raw_file_deleted_before_its_turn_fails_the_request_without_retries(local_lake, invocation_id):
    from shared.weeks.announce import CollectSignal

    put_weather(local_lake)
    queue = CollectSignal()
    body = json.dumps({"path": WEATHER, "async": True}).encode()
    status, answer, headers = ingestion.reingest_request(
        "weather", body, invocation_id, local_lake, queue=queue, base_url="http://h"
    )
    assert status == 202 and headers["Location"].startswith("http://h/api/ingest/weather/requests/")
    local_lake.delete(WEATHER)
    (message,) = queue.messages
    record = reingest.run_request(local_lake, "weather", json.dumps(message).encode(), 1, "inv")
    assert record["status"] == "failed" and record["attempts"] == 1
    status, answer, _ = reingest.request_status(local_lake, "weather", answer["request_id"], "http://h")
    assert status == 502 and answer["message"] == f"no raw file at {WEATHER} any more"


@pytest.mark.parametrize(
    "content", [b"[1, 2]", b"{not json", b'{"status": "ingested"}'], ids=["list", "text", "no-result"]
)
def test_a_record_that_cannot_be_read_answers_502_never_500(local_lake, content):
    rid = "b" * 32
    local_lake.write_bytes(reingest.record_path("weather", rid), content)
    status, answer, _ = reingest.request_status(local_lake, "weather", rid, "http://h")
    assert status == 502 and answer["error"] == "reingest_failed" and "post it again" in answer["message"]


def test_a_symlink_out_of_the_lake_is_not_found_and_its_target_never_shown(local_lake, tmp_path, invocation_id):
    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n")
    put_weather(local_lake)
    (local_lake.root / "raw" / "weather" / "passwd.csv").symlink_to(secret)
    body = json.dumps({"path": "raw/weather/passwd.csv"}).encode()
    status, answer, _ = ingestion.reingest_request("weather", body, invocation_id, local_lake)
    assert status == 404
    assert "root" not in json.dumps(answer) and str(tmp_path) not in json.dumps(answer)


def test_a_quarantine_answer_shows_only_a_short_escaped_sample_of_the_raw_header(local_lake, invocation_id):
    header = ",".join(f"col{i}_{'x' * 200}\u0007=cmd" for i in range(300))
    local_lake.write_bytes("raw/weather/odd.csv", (header + "\n1\n").encode())
    body = json.dumps({"path": "raw/weather/odd.csv"}).encode()
    status, answer, _ = ingestion.reingest_request("weather", body, invocation_id, local_lake)
    text = json.dumps(answer, ensure_ascii=False)
    assert status == 422 and answer["error"]["reason"] == "no_matching_format"
    assert "\u0007" not in text and "x" * 100 not in text
    assert len(text) < 8_000
    assert str(local_lake.root) not in text and "Traceback" not in text


@pytest.mark.parametrize("path", ["raw/weather/\ud800.csv", "raw/weather/a\udfff/b.csv", "\ud800"])
def test_a_lone_surrogate_in_the_path_is_a_400(local_lake, invocation_id, path):
    body = json.dumps({"path": path}).encode()  # JSON escapes it: \\ud800, as a client sends it
    status, answer, _ = ingestion.reingest_request("weather", body, invocation_id, local_lake)
    assert status == 400 and [p["field"] for p in answer["problems"]] == ["path"]
    assert "Traceback" not in json.dumps(answer)
