"""Weeks a curated file covers, the lake's week index (a marker per week and file), readiness
per region of the store master and the announcement that starts a week's batch once its data
is complete.

Tests that take ``lake`` run against the local folder and against Azurite; the queue tests
use Azurite's queue service.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pytest

from shared import clock, weeks
from shared.ingestion import coverage
from shared.ingestion import entrypoints as ingestion
from shared.ingestion.layout import outputs_for
from shared.ingestion.service import ingest
from shared.lake import Lake, LocalLake, TransientLakeError
from shared.settings import Settings
from shared.tooling.bulk_ingest import ingest_all
from shared.weeks import Readiness, last_finished_week, latest_week, readiness, week_of
from shared.weeks.announce import (
    CollectSignal,
    QueueSignal,
    after_ingest,
    announce,
    signal_from_settings,
)
from tests.drivers import DELIVERIES_HEADER, ROOT_DIR, STORE_MASTER_HEADER, US_OBS_HEADER, lines, put, read_json

W = "2026-12-21"  # Sunday 2026-12-20 .. Saturday 2026-12-26
PREV = "2026-12-14"
NOW = dt.datetime(2026, 12, 28, 9, 0, tzinfo=dt.UTC)

SHIPMENTS = "raw/shipments/deliveries/2026-12-23.csv"
WEATHER = "raw/weather/us_obs/2026-12.csv"
STORES = "raw/demographics/store_master.csv"
FORECAST = "raw/weather/openmeteo/zip=02120/issued_on=2026-05-09/forecast.json"


@pytest.fixture(autouse=True)
def clock_at_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests' world is at NOW, the Monday after W, and so is ingestion's clock: W's days
    and the next week's are not dated beyond today (``future_date``), whatever today is."""
    monkeypatch.setattr(clock, "now", lambda: NOW)


def _days(first: str, last: str) -> list[dt.date]:
    d, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    out = []
    while d <= end:
        out.append(d)
        d += dt.timedelta(days=1)
    return out


def put_observations(lake: Lake, path: str, first: str, last: str, zips: tuple[str, ...] = ("2134", "98101")) -> str:
    return put_observed_days(lake, path, _days(first, last), zips)


def put_observed_days(lake: Lake, path: str, days: list[dt.date], zips: tuple[str, ...] = ("2134", "98101")) -> str:
    rows = [f"{z},{d:%m/%d/%Y},50,32,0.1," for z in zips for d in days]
    return put(lake, path, lines(US_OBS_HEADER, *rows))


def put_deliveries(lake: Lake, path: str, days: tuple[str, ...], stores: tuple[str, ...] = ("S1", "S2")) -> str:
    rows = [f"{s},SKU-1,{d}T05:00:00,3,0" for s in stores for d in days]
    return put(lake, path, lines(DELIVERIES_HEADER, *rows))


def put_stores(lake: Lake, path: str, ids: tuple[str, ...] = ("S1", "S2")) -> str:
    return put(lake, path, lines(STORE_MASTER_HEADER, *(f"{s},02134,northeast,Large,100,40,50000,40" for s in ids)))


def put_forecast(lake: Lake) -> str:
    sample = ROOT_DIR / "samples/raw/weather/openmeteo/zip=02120/issued_on=2026-05-09/forecast.json"
    return put(lake, FORECAST, sample.read_bytes())


def complete_week(lake: Lake) -> dict[str, dict]:
    """The three sources of week W ingested and indexed; their manifests by dataset."""
    put_stores(lake, STORES)
    put_observations(lake, WEATHER, "2026-12-13", "2026-12-26")
    put_deliveries(lake, SHIPMENTS, ("2026-12-21", "2026-12-23"))
    manifests = {}
    for path in (STORES, WEATHER, SHIPMENTS):
        m = ingest(lake, path)
        weeks.index(lake, m)
        manifests[m["dataset"]] = m
    return manifests


# weeks ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("day", "week"),
    [
        ("2026-12-20", "2026-12-21"),  # a Sunday opens the week named by the next day
        ("2026-12-21", "2026-12-21"),  # Monday
        ("2026-12-26", "2026-12-21"),  # Saturday closes it
        ("2026-12-27", "2026-12-28"),  # the next Sunday opens the next week
        ("2026-12-31", "2026-12-28"),  # across the year's end
        ("2027-01-02", "2026-12-28"),
        ("2027-01-03", "2027-01-04"),
    ],
)
def test_week_of_names_a_sunday_to_saturday_week_by_its_monday(day, week):
    assert week_of(dt.date.fromisoformat(day)) == week
    assert week_of(dt.datetime.fromisoformat(day + "T23:59:00")) == week


@pytest.mark.parametrize(
    ("now", "week"),
    [
        ("2026-12-26T23:59:59+00:00", "2026-12-14"),  # W's Saturday not over yet
        ("2026-12-27T00:00:00+00:00", "2026-12-21"),  # W's Saturday just ended
        ("2026-12-28T09:00:00+00:00", "2026-12-21"),  # Monday morning, the weekly timer
        ("2027-01-03T00:30:00+00:00", "2026-12-28"),  # across the year's end
        ("2026-12-26T20:00:00-05:00", "2026-12-21"),  # Sunday 01:00 UTC
        ("2026-12-27T00:30:00", "2026-12-21"),  # naive: taken as UTC
    ],
)
def test_last_finished_week_is_the_week_whose_saturday_ended_before_now(now, week):
    assert last_finished_week(dt.datetime.fromisoformat(now)) == week


# coverage in the manifests -----------------------------------------------------------------------
def test_a_shipments_manifest_covers_its_weeks_and_stores(lake):
    # deliveries on a Monday, a Sunday and a Wednesday, summed into Monday weeks
    put_deliveries(lake, SHIPMENTS, ("2026-12-14", "2026-12-20", "2026-12-23"), stores=("S2", "S1", "S10"))
    m = ingest(lake, SHIPMENTS)
    assert m["coverage"] == {
        "first_week": PREV,
        "last_week": W,
        "weeks": [PREV, W],
        "keys": {"store_id": ["S1", "S10", "S2"]},
        "keys_truncated": False,
    }
    assert read_json(lake, outputs_for(SHIPMENTS).manifest)["coverage"] == m["coverage"]


def test_a_weather_manifest_counts_only_weeks_observed_through_their_saturday(lake):
    # a Thursday .. a Saturday: the first week counts from a later day (its Saturday is in)
    put_observations(lake, WEATHER, "2026-12-10", "2026-12-26")
    assert ingest(lake, WEATHER)["coverage"] == {
        "first_week": "2026-12-07",
        "last_week": W,
        "weeks": ["2026-12-07", PREV, W],
        "keys": {"zip_code": ["02134", "98101"]},
        "keys_truncated": False,
    }
    put_observations(lake, WEATHER, "2026-12-10", "2026-12-25")  # W observed up to its Friday only
    cov = ingest(lake, WEATHER)["coverage"]
    assert (cov["first_week"], cov["last_week"], cov["weeks"]) == ("2026-12-07", PREV, ["2026-12-07", PREV])
    put_observations(lake, WEATHER, "2026-12-20", "2026-12-23")  # no week observed to its end
    cov = ingest(lake, WEATHER)["coverage"]
    assert (cov["first_week"], cov["last_week"], cov["weeks"]) == (None, None, [])
    assert weeks.index(lake, ingest(lake, WEATHER)) == []


def test_a_weather_forecast_covers_no_week(lake):
    m = ingest(lake, put_forecast(lake))
    assert m["status"] == "ingested" and m["rows"]["written"] > 0
    assert m["coverage"] == {
        "first_week": None,
        "last_week": None,
        "weeks": [],
        "keys": {"zip_code": []},
        "keys_truncated": False,
    }
    assert weeks.index(lake, m) == []
    assert list(lake.list("batches/index")) == []


def test_weather_coverage_counts_observed_rows_and_leaves_forecast_rows_out():
    cov = coverage.Coverage("weather_daily")
    days = [dt.date(2026, 12, 20), dt.date(2026, 12, 26), dt.date(2027, 1, 9), dt.date(2026, 12, 1)]
    cov.add(
        pa.table(
            {
                "zip_code": ["02134", "02134", "98101", "30301"],
                "date": pa.array(days, pa.date32()),
                "kind": ["observed", "observed", "forecast", "forecast"],
            }
        )
    )
    cov.add(pa.table({"zip_code": pa.array([], pa.string()), "date": pa.array([], pa.date32()), "kind": []}))
    assert cov.result() == {
        "first_week": W,
        "last_week": W,
        "weeks": [W],
        "keys": {"zip_code": ["02134"]},
        "keys_truncated": False,
    }


def test_a_demographics_manifest_is_timeless_and_lists_its_stores(lake):
    m = ingest(lake, put_stores(lake, STORES, ("S3", "S1")))
    assert m["coverage"] == {
        "first_week": None,
        "last_week": None,
        "weeks": None,
        "keys": {"store_id": ["S1", "S3"]},
        "keys_truncated": False,
    }
    assert weeks.index(lake, m) == ["static"]
    curated = outputs_for(STORES).curated
    (marker,) = markers(lake, "batches/index/store_demographics")
    assert marker == f"batches/index/store_demographics/static/{weeks.file_id(curated)}.json"
    assert read_json(lake, marker) == {
        "dataset": "store_demographics",
        "week": "static",
        "curated": curated,
        "raw": STORES,
        "at": read_json(lake, marker)["at"],
        "keys": {"store_id": ["S1", "S3"]},
    }


def test_keys_beyond_the_cap_are_not_listed_and_the_manifest_says_so(local_lake):
    ids = tuple(f"S{i:05d}" for i in range(coverage.MAX_KEYS + 1))
    cov = ingest(local_lake, put_stores(local_lake, STORES, ids))["coverage"]
    assert cov == {"first_week": None, "last_week": None, "weeks": None, "keys": None, "keys_truncated": True}
    cov = ingest(local_lake, put_stores(local_lake, STORES, ids[:-1]), force=True)["coverage"]
    assert len(cov["keys"]["store_id"]) == coverage.MAX_KEYS and cov["keys_truncated"] is False


def test_a_manifest_written_before_coverage_existed_is_ingested_again(lake):
    put_stores(lake, STORES)
    m = ingest(lake, STORES)
    old = {k: v for k, v in m.items() if k != "coverage"}
    lake.write_bytes(outputs_for(STORES).manifest, json.dumps(old).encode())
    again = ingest(lake, STORES)
    assert "unchanged" not in again and again["coverage"]["keys"] == {"store_id": ["S1", "S2"]}
    assert ingest(lake, STORES)["unchanged"] is True


# the index -----------------------------------------------------------------------------------------
def marker_of(dataset: str, week: str, raw: str) -> str:
    return f"batches/index/{dataset}/{week}/{weeks.file_id(outputs_for(raw).curated)}.json"


def test_the_index_marks_every_week_a_file_covers_with_a_marker_of_its_own(lake):
    put_observations(lake, WEATHER, "2026-12-06", "2026-12-26")
    m = ingest(lake, WEATHER)
    assert weeks.index(lake, m) == ["2026-12-07", PREV, W]
    assert markers(lake, "batches/index/weather_daily") == [
        marker_of("weather_daily", w, WEATHER) for w in ("2026-12-07", PREV, W)
    ]
    later = put_observations(lake, "raw/weather/us_obs/late.csv", "2026-12-20", "2027-01-02", zips=("30301",))
    assert weeks.index(lake, ingest(lake, later)) == [W, "2026-12-28"]
    assert sorted(lake.list(f"batches/index/weather_daily/{W}")) == sorted(
        [marker_of("weather_daily", W, WEATHER), marker_of("weather_daily", W, later)]
    )
    assert read_json(lake, marker_of("weather_daily", W, WEATHER)) == {
        "dataset": "weather_daily",
        "week": W,
        "curated": outputs_for(WEATHER).curated,
        "raw": WEATHER,
        "at": read_json(lake, marker_of("weather_daily", W, WEATHER))["at"],
        "keys": {"zip_code": ["02134", "98101"]},
    }
    assert read_json(lake, marker_of("weather_daily", W, later))["keys"] == {"zip_code": ["30301"]}
    assert latest_week(lake, "weather_daily") == "2026-12-28"


def test_a_marker_id_is_a_short_stable_hash_of_the_curated_path():
    a = weeks.file_id("curated/shipments_weekly/v1/region=west/2026-12-23.csv")
    assert a == weeks.file_id("curated/shipments_weekly/v1/region=west/2026-12-23.csv")
    assert len(a) == 16 and int(a, 16) >= 0
    assert a != weeks.file_id("curated/shipments_weekly/v1/region=east/2026-12-23.csv")


def test_a_file_covering_weeks_one_and_three_leaves_week_two_out_of_the_index(lake):
    # deliveries in the week of 2026-12-07 and of W, none in PREV's
    put_deliveries(lake, SHIPMENTS, ("2026-12-08", "2026-12-23"))
    m = ingest(lake, SHIPMENTS)
    assert m["coverage"]["weeks"] == ["2026-12-07", W]
    assert (m["coverage"]["first_week"], m["coverage"]["last_week"]) == ("2026-12-07", W)
    assert weeks.covered(m) == weeks.index(lake, m) == ["2026-12-07", W]
    assert list(lake.list(f"batches/index/shipments_weekly/{PREV}")) == []
    # weather observed through the Saturdays of 2026-12-07's week and of W's, not of PREV's
    put_observed_days(lake, WEATHER, _days("2026-12-06", "2026-12-12") + _days("2026-12-20", "2026-12-26"))
    w = ingest(lake, WEATHER)
    assert w["coverage"]["weeks"] == ["2026-12-07", W]
    assert weeks.index(lake, w) == ["2026-12-07", W]
    assert list(lake.list(f"batches/index/weather_daily/{PREV}")) == []
    weeks.index(lake, ingest(lake, put_stores(lake, STORES)))
    assert readiness(lake, PREV).missing == ("weather_daily", "shipments_weekly")
    assert readiness(lake, W).complete


def test_a_manifest_from_before_exact_weeks_covers_its_first_to_last_week():
    old = {
        "status": "ingested",
        "dataset": "shipments_weekly",
        "coverage": {"first_week": PREV, "last_week": W, "keys": None, "keys_truncated": True},
    }
    assert weeks.covered(old) == [PREV, W]
    assert weeks.covered({**old, "coverage": {**old["coverage"], "weeks": [W, "nonsense", W]}}) == [W]


def test_a_new_version_of_a_file_rewrites_its_markers_keys_and_leaves_weeks_it_no_longer_covers(lake):
    put_deliveries(lake, SHIPMENTS, ("2026-12-16", "2026-12-23"), stores=("S1", "S2"))
    assert weeks.index(lake, ingest(lake, SHIPMENTS)) == [PREV, W]
    assert read_json(lake, marker_of("shipments_weekly", W, SHIPMENTS))["keys"] == {"store_id": ["S1", "S2"]}
    put_deliveries(lake, SHIPMENTS, ("2026-12-23",), stores=("S1", "S3"))
    assert weeks.index(lake, ingest(lake, SHIPMENTS)) == [W]
    assert read_json(lake, marker_of("shipments_weekly", W, SHIPMENTS))["keys"] == {"store_id": ["S1", "S3"]}
    assert markers(lake, "batches/index/shipments_weekly") == [marker_of("shipments_weekly", W, SHIPMENTS)]


def markers(lake: Lake, prefix: str) -> list[str]:
    """The week markers below ``prefix`` (each file's record, ``files/<id>.json``, left out)."""
    return [p for p in lake.list(prefix) if "/files/" not in p]


def test_indexing_a_file_whose_markers_exist_reads_its_record_and_writes_nothing(tmp_path):
    class Counting(LocalLake):
        creates = 0
        lists = 0
        writes = 0

        def create(self, path: str, data: bytes) -> bool:
            Counting.creates += 1
            return super().create(path, data)

        def list(self, prefix: str):
            Counting.lists += 1
            return super().list(prefix)

        def write_bytes(self, path: str, data: bytes) -> None:
            Counting.writes += path.startswith("batches/")
            super().write_bytes(path, data)

    lake = Counting(tmp_path)
    days = tuple(d.isoformat() for d in _days("2026-01-05", "2026-12-21")[::7])
    put_deliveries(lake, SHIPMENTS, days)
    m = ingest(lake, SHIPMENTS)
    Counting.creates = 0  # the ingest's own (its output's claim)
    assert len(weeks.index(lake, m)) == 51 and Counting.creates == 51
    Counting.creates = Counting.lists = Counting.writes = 0
    assert len(weeks.index(lake, m)) == 51
    # one read of the file's record, however large the index: no listing, nothing written
    assert (Counting.creates, Counting.lists, Counting.writes) == (0, 0, 0)
    again = ingest(lake, SHIPMENTS)
    assert again["unchanged"] is True
    Counting.creates = Counting.lists = Counting.writes = 0
    assert len(weeks.index(lake, again)) == 51
    assert (Counting.creates, Counting.lists, Counting.writes) == (0, 0, 0)
    # a new version with other stores rewrites each of its markers, once
    put_deliveries(lake, SHIPMENTS, days, stores=("S1", "S9"))
    m = ingest(lake, SHIPMENTS)
    Counting.creates = Counting.lists = Counting.writes = 0
    assert len(weeks.index(lake, m)) == 51
    assert (Counting.creates, Counting.lists, Counting.writes) == (0, 0, 51 + 1)  # and its record
    assert read_json(lake, marker_of("shipments_weekly", "2026-01-05", SHIPMENTS))["keys"] == {"store_id": ["S1", "S9"]}


def test_quarantined_files_index_nothing(lake):
    put(lake, "raw/shipments/bad.csv", b"not a shipments file\n")
    m = ingest(lake, "raw/shipments/bad.csv")
    assert m["status"] == "quarantined" and weeks.index(lake, m) == []


def test_readiness_names_the_missing_source(lake):
    put_stores(lake, STORES)
    put_deliveries(lake, SHIPMENTS, ("2026-12-23",))
    for path in (STORES, SHIPMENTS):
        weeks.index(lake, ingest(lake, path))
    r = readiness(lake, W)
    assert r == Readiness(W, ("shipments_weekly", "store_demographics"), ("weather_daily",))
    assert not r.complete
    put_observations(lake, WEATHER, "2026-12-20", "2026-12-26")
    weeks.index(lake, ingest(lake, WEATHER))
    assert readiness(lake, W).complete and readiness(lake, W).missing == ()
    assert readiness(lake, PREV).missing == ("weather_daily", "shipments_weekly")
    with pytest.raises(ValueError, match="not a week"):
        readiness(lake, "../x")


def test_latest_week_is_the_latest_shipments_week_in_the_index(lake):
    assert latest_week(lake) is None
    put_deliveries(lake, SHIPMENTS, ("2026-11-30", "2026-12-23"))
    weeks.index(lake, ingest(lake, SHIPMENTS))
    assert latest_week(lake) == W
    put_deliveries(lake, "raw/shipments/deliveries/old.csv", ("2026-10-05",))
    weeks.index(lake, ingest(lake, "raw/shipments/deliveries/old.csv"))
    assert latest_week(lake) == W
    assert latest_week(lake, "weather_daily") is None


# readiness per region ------------------------------------------------------------------------------
#: one store per region, with its zip code
REGIONS = {
    "northeast": ("S1", "02134"),
    "southeast": ("S4", "30314"),
    "plains": ("S7", "66101"),
    "west": ("S9", "98101"),
}


def put_master(lake: Lake, path: str, regions: dict[str, tuple[str, str]] = REGIONS) -> str:
    rows = (f"{store},{zip_code},{region},Large,100,40,50000,40" for region, (store, zip_code) in regions.items())
    return put(lake, path, lines(STORE_MASTER_HEADER, *rows))


def region_file(region: str) -> str:
    return f"raw/shipments/deliveries/region={region}/2026-12-23.csv"


def put_region_shipments(lake: Lake, region: str, regions: dict[str, tuple[str, str]] = REGIONS) -> str:
    return put_deliveries(lake, region_file(region), ("2026-12-23",), stores=(regions[region][0],))


def index_all(lake: Lake, *paths: str) -> None:
    for path in paths:
        weeks.index(lake, ingest(lake, path))


def test_with_a_shipments_file_per_region_the_last_regions_file_announces_the_week_once(lake):
    signal = CollectSignal()
    put_master(lake, STORES)
    put_observations(lake, WEATHER, "2026-12-20", "2026-12-26", zips=tuple(z for _, z in REGIONS.values()))
    for path in (STORES, WEATHER):
        assert after_ingest(lake, ingest(lake, path), signal, NOW) is None
    arrived: list[str] = []
    for region in ("west", "northeast", "plains"):
        assert after_ingest(lake, ingest(lake, put_region_shipments(lake, region)), signal, NOW) is None
        arrived.append(region)
        r = readiness(lake, W)
        lacking = tuple(sorted(set(REGIONS) - set(arrived)))
        assert r.gaps == {"shipments_weekly": lacking} and r.missing == ("shipments_weekly",)
        assert r.present == ("weather_daily", "store_demographics") and not r.complete
    assert signal.messages == [] and not lake.exists(f"batches/week={W}/announced.json")
    last = put_region_shipments(lake, "southeast")
    assert after_ingest(lake, ingest(lake, last), signal, NOW) == W
    assert signal.messages == [{"week": W, "by": "data_complete", "at": "2026-12-28T09:00:00Z", "raw": last}]
    assert readiness(lake, W) == Readiness(W, weeks.REQUIRED, (), {})
    assert readiness(lake, W).describe() == f"the week of {W} is complete"
    for region in REGIONS:  # redeliveries and late calls: the week was announced
        assert after_ingest(lake, ingest(lake, region_file(region)), signal, NOW) is None
    assert len(signal.messages) == 1
    assert len(list(lake.list(f"batches/index/shipments_weekly/{W}"))) == len(REGIONS)


def test_region_files_indexed_and_announced_at_once_send_one_message(lake):
    regions = {f"r{i:02d}": (f"S{i:02d}", f"{10000 + i}") for i in range(14)}
    put_master(lake, STORES, regions)
    put_observations(lake, WEATHER, "2026-12-20", "2026-12-26", zips=tuple(z for _, z in regions.values()))
    index_all(lake, STORES, WEATHER)
    manifests = [ingest(lake, put_region_shipments(lake, r, regions)) for r in regions]
    signal = CollectSignal()
    start = threading.Barrier(len(manifests))

    def one(m: dict) -> str | None:
        start.wait()
        return after_ingest(lake, m, signal, NOW)

    with ThreadPoolExecutor(len(manifests)) as pool:
        results = list(pool.map(one, manifests))
    assert results.count(W) == 1 and len(signal.messages) == 1
    assert readiness(lake, W).complete


def test_a_region_without_observed_weather_is_a_gap_and_its_weather_completes_the_week(lake):
    put_master(lake, STORES)
    put_observations(lake, WEATHER, "2026-12-20", "2026-12-26", zips=("02134", "30314", "66101"))
    index_all(lake, STORES, WEATHER, *(put_region_shipments(lake, r) for r in REGIONS))
    r = readiness(lake, W)
    assert r == Readiness(
        W, ("shipments_weekly", "store_demographics"), ("weather_daily",), {"weather_daily": ("west",)}
    )
    assert r.describe() == f"weather_daily lacks region west for the week of {W}"
    signal = CollectSignal()
    west = put_observations(lake, "raw/weather/us_obs/region=west/2026-12.csv", "2026-12-20", "2026-12-26", ("98101",))
    assert after_ingest(lake, ingest(lake, west), signal, NOW) == W
    assert [m["raw"] for m in signal.messages] == [west]


def test_a_store_master_region_with_no_shipments_leaves_the_week_incomplete(lake):
    put_master(lake, STORES)
    index_all(lake, STORES, put_region_shipments(lake, "northeast"), put_region_shipments(lake, "southeast"))
    r = readiness(lake, W)
    assert r == Readiness(
        W, ("store_demographics",), ("weather_daily", "shipments_weekly"), {"shipments_weekly": ("plains", "west")}
    )
    assert (
        r.describe()
        == "no curated weather_daily for the week of 2026-12-21; shipments_weekly lacks regions plains, west"
    )
    # a second store master file brings a region of its own: the week lacks it too
    put_observations(lake, WEATHER, "2026-12-20", "2026-12-26", zips=tuple(z for _, z in REGIONS.values()))
    index_all(lake, WEATHER, put_region_shipments(lake, "plains"), put_region_shipments(lake, "west"))
    assert readiness(lake, W).complete
    more = put_master(lake, "raw/demographics/more.csv", {"mountain": ("S20", "80202")})
    index_all(lake, more)
    assert readiness(lake, W).gaps == {"weather_daily": ("mountain",), "shipments_weekly": ("mountain",)}


def test_a_file_of_unknown_keys_covers_every_region(lake, monkeypatch):
    monkeypatch.setattr(coverage, "MAX_KEYS", 1)
    put_master(lake, STORES, REGIONS | {"northeast": ("S1", "02134"), "midwest": ("S2", "60601")})
    # two stores and two zip codes: past the cap, neither file lists its keys
    put_deliveries(lake, SHIPMENTS, ("2026-12-23",), stores=("S1", "S2"))
    put_observations(lake, WEATHER, "2026-12-20", "2026-12-26", zips=("02134", "60601"))
    index_all(lake, STORES, SHIPMENTS, WEATHER)
    assert read_json(lake, marker_of("shipments_weekly", W, SHIPMENTS))["keys"] is None
    assert read_json(lake, marker_of("weather_daily", W, WEATHER))["keys"] is None
    assert readiness(lake, W).complete


@pytest.mark.parametrize(
    "body", [b'{"dataset": "shipments_weekly", "keys": {"store_id": ["S', b"", b"[1, 2]", b"\xff\xfe"]
)
def test_a_corrupt_marker_makes_its_week_less_ready_never_more(lake, body, caplog):
    put_master(lake, STORES)
    put_observations(lake, WEATHER, "2026-12-20", "2026-12-26", zips=tuple(z for _, z in REGIONS.values()))
    index_all(lake, STORES, WEATHER, put_region_shipments(lake, "northeast"), put_region_shipments(lake, "southeast"))
    lake.write_bytes(f"batches/index/shipments_weekly/{W}/0123456789abcdef.json", body)
    r = readiness(lake, W)
    assert not r.complete and r.gaps == {"shipments_weekly": ("plains", "west")}
    assert "0123456789abcdef.json" in caplog.text
    index_all(lake, put_region_shipments(lake, "plains"))
    assert readiness(lake, W).gaps == {"shipments_weekly": ("west",)}


def test_old_layout_markers_count_as_files_of_unknown_keys(lake):
    put_master(lake, STORES)
    index_all(lake, put_region_shipments(lake, "west"))
    ingest(lake, STORES)  # curated, its marker in the old layout only
    for dataset, name in (("shipments_weekly", W), ("weather_daily", W), ("store_demographics", "static")):
        old = {"dataset": dataset, "week": name, "raw": "raw/old.csv", "at": "2026-12-22T00:00:00Z"}
        lake.write_bytes(f"batches/index/{dataset}/{name}.json", json.dumps(old).encode())
    lake.write_bytes(f"batches/index/shipments_weekly/{PREV}.json", b"{}")
    r = readiness(lake, W)
    assert r.complete and r.gaps == {}
    assert readiness(lake, PREV).missing == ("weather_daily",)
    assert latest_week(lake) == W and latest_week(lake, "weather_daily") == W
    # indexing new files leaves them as they are
    index_all(lake, STORES, put_region_shipments(lake, "plains"))
    assert lake.exists(f"batches/index/shipments_weekly/{W}.json")
    assert lake.exists("batches/index/store_demographics/static.json")


def test_without_a_readable_store_master_a_dataset_is_there_when_any_file_covers_the_week(lake, caplog):
    put_observations(lake, WEATHER, "2026-12-20", "2026-12-26", zips=("02134",))
    index_all(lake, WEATHER, put_region_shipments(lake, "west"))
    assert readiness(lake, W) == Readiness(W, ("weather_daily", "shipments_weekly"), ("store_demographics",), {})
    assert readiness(lake, W).describe() == f"no curated store_demographics for the week of {W}"
    put_master(lake, STORES)
    index_all(lake, STORES)
    assert readiness(lake, W).gaps["shipments_weekly"] == ("northeast", "plains", "southeast")
    lake.write_bytes(outputs_for(STORES).curated, b"\xff\xfe not a CSV in UTF-8")
    with caplog.at_level(logging.WARNING, logger="shared.weeks.ready"):
        assert readiness(lake, W).complete  # no store master: the rule per dataset
    assert any(outputs_for(STORES).curated in r.getMessage() for r in caplog.records)
    lake.write_bytes(outputs_for(STORES).curated, b"store_id,zip_code,region,store_format\n")
    assert readiness(lake, W).complete  # an empty one too


def test_a_store_master_that_storage_fails_to_read_fails_readiness(tmp_path):
    class Flaky(LocalLake):
        down = False

        def read_bytes(self, path: str) -> bytes:
            if self.down and path.startswith("curated/store_demographics/"):
                raise TransientLakeError("503 server busy")
            return super().read_bytes(path)

    lake = Flaky(tmp_path)
    put_master(lake, STORES)
    put_observations(lake, WEATHER, "2026-12-20", "2026-12-26", zips=("02134",))
    index_all(lake, STORES, WEATHER, put_region_shipments(lake, "west"))
    assert readiness(lake, W).gaps["shipments_weekly"] == ("northeast", "plains", "southeast")
    lake.down = True
    # not the rule without regions (which would call the week complete): an error, retried
    with pytest.raises(TransientLakeError):
        readiness(lake, W)


# announcing ------------------------------------------------------------------------------------
def test_the_file_that_completes_the_latest_week_announces_it_once(lake):
    manifests = complete_week(lake)
    signal = CollectSignal()
    assert announce(lake, manifests["shipments_weekly"], signal, NOW) == W
    message = {"week": W, "by": "data_complete", "at": "2026-12-28T09:00:00Z", "raw": SHIPMENTS}
    assert signal.messages == [message]
    assert read_json(lake, f"batches/week={W}/announced.json") == message
    for m in manifests.values():  # every later call finds the marker
        assert announce(lake, m, signal, NOW) is None
    assert len(signal.messages) == 1


def test_an_incomplete_week_is_not_announced(lake):
    put_deliveries(lake, SHIPMENTS, ("2026-12-23",))
    put_stores(lake, STORES)
    signal = CollectSignal()
    for path in (SHIPMENTS, STORES):
        assert after_ingest(lake, ingest(lake, path), signal, NOW) is None
    assert signal.messages == [] and not lake.exists(f"batches/week={W}/announced.json")


def test_a_file_of_an_older_week_announces_nothing(lake):
    complete_week(lake)
    weeks.index(lake, ingest(lake, put_deliveries(lake, "raw/shipments/deliveries/next.csv", ("2026-12-30",))))
    later = put_observations(lake, "raw/weather/us_obs/2027.csv", "2026-12-27", "2027-01-02")
    weeks.index(lake, ingest(lake, later))
    assert latest_week(lake) == "2026-12-28" and readiness(lake, "2026-12-28").complete
    signal = CollectSignal()
    # a late weather file of W: W is not the latest week, and the file does not cover the latest
    old = put_observations(lake, "raw/weather/us_obs/old.csv", "2026-12-13", "2026-12-26")
    assert after_ingest(lake, ingest(lake, old), signal, NOW) is None
    assert signal.messages == [] and not any("announced" in p for p in lake.list("batches"))
    # a file that covers the latest week does announce it
    assert after_ingest(lake, ingest(lake, later), signal, NOW) == "2026-12-28"
    assert [m["week"] for m in signal.messages] == ["2026-12-28"]


def test_a_send_that_fails_removes_the_marker_and_the_next_announce_sends(lake):
    manifests = complete_week(lake)

    class Down:
        def send(self, message):
            raise ConnectionError("queue unreachable")

    with pytest.raises(ConnectionError):
        announce(lake, manifests["shipments_weekly"], Down(), NOW)
    assert not lake.exists(f"batches/week={W}/announced.json")
    signal = CollectSignal()
    assert announce(lake, manifests["weather_daily"], signal, NOW) == W
    assert [m["raw"] for m in signal.messages] == [WEATHER]


def test_announcing_is_off_when_the_batch_queue_is_empty_or_no_account_is_named(azurite):
    conn = azurite.connection_string
    assert signal_from_settings(Settings(batch_queue="", lake_storage=conn)) is None
    assert signal_from_settings(Settings()) is None  # a local lake: no queue to announce on
    queue = signal_from_settings(Settings(lake_storage=conn))
    assert isinstance(queue, QueueSignal) and queue.queue == "forecastops-batches"
    by_identity = signal_from_settings(
        Settings(batch_queue="q", lake_storage_queue_uri="https://acct.queue.core.windows.net")
    )
    assert isinstance(by_identity, QueueSignal) and by_identity.queue == "q"


def _queue_client(conn: str, name: str, decode: bool = True):
    from azure.storage.queue import QueueClient, TextBase64DecodePolicy

    options = {"message_decode_policy": TextBase64DecodePolicy()} if decode else {}
    return QueueClient.from_connection_string(conn, name, **options)


@pytest.mark.azurite
def test_a_hundred_concurrent_announcements_of_a_week_send_one_message(blob_lake, azurite):
    manifests = complete_week(blob_lake)
    name = f"batches-{uuid.uuid4().hex[:12]}"
    signal = QueueSignal(name, connection_string=azurite.connection_string)
    start = threading.Barrier(100)
    order = list(manifests.values()) * 34

    def one(i: int) -> str | None:
        start.wait()
        return announce(blob_lake, order[i], signal, NOW)

    with ThreadPoolExecutor(100) as pool:
        results = list(pool.map(one, range(100)))
    assert results.count(W) == 1 and results.count(None) == 99
    assert [p for p in blob_lake.list("batches") if "announced" in p] == [f"batches/week={W}/announced.json"]

    # on the wire: base64 of the JSON text, as the Functions queue trigger reads it by default
    (peeked,) = _queue_client(azurite.connection_string, name, decode=False).peek_messages(max_messages=32)
    assert json.loads(base64.b64decode(peeked.content)) == read_json(blob_lake, f"batches/week={W}/announced.json")
    received = list(_queue_client(azurite.connection_string, name).receive_messages(max_messages=32))
    assert len(received) == 1
    message = json.loads(received[0].content)
    assert message == {"week": W, "by": "data_complete", "at": "2026-12-28T09:00:00Z", "raw": message["raw"]}
    assert message["raw"] in (STORES, WEATHER, SHIPMENTS)


@pytest.mark.azurite
def test_queue_messages_are_base64_json_text(azurite):
    name = f"batches-{uuid.uuid4().hex[:12]}"
    QueueSignal(name, connection_string=azurite.connection_string).send({"week": W, "by": "data_complete"})
    (peeked,) = _queue_client(azurite.connection_string, name, decode=False).peek_messages()
    assert json.loads(base64.b64decode(peeked.content)) == {"by": "data_complete", "week": W}


def test_a_queue_that_cannot_be_reached_fails_the_send_in_seconds():
    dead = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "QueueEndpoint=http://127.0.0.1:9/devstoreaccount1;"
    )
    signal = QueueSignal("forecastops-batches", connection_string=dead)
    t0 = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017 - whatever the SDK raises for a refused connection
        signal.send({"week": W})
    assert time.monotonic() - t0 < 15


# the ingest paths --------------------------------------------------------------------------------
def test_the_blob_trigger_service_indexes_and_announces_through_a_signal(lake, invocation_id):
    signal = CollectSignal()
    put_stores(lake, STORES)
    put_observations(lake, WEATHER, "2026-12-13", "2026-12-26")
    put_deliveries(lake, SHIPMENTS, ("2026-12-21",))
    for path in (STORES, WEATHER):
        ingestion.ingest_blob(path, invocation_id, lake, signal)
    assert signal.messages == []
    ingestion.ingest_blob(SHIPMENTS, invocation_id, lake, signal)
    assert [(m["week"], m["raw"]) for m in signal.messages] == [(W, SHIPMENTS)]
    ingestion.ingest_blob(SHIPMENTS, invocation_id, lake, signal)  # a redelivery: unchanged
    assert len(signal.messages) == 1
    assert readiness(lake, W).complete


def test_the_reingest_route_indexes_and_announces(lake, invocation_id):
    signal = CollectSignal()
    put_stores(lake, STORES)
    put_observations(lake, WEATHER, "2026-12-13", "2026-12-26")
    put_deliveries(lake, SHIPMENTS, ("2026-12-21",))
    for source, path in (("demographics", STORES), ("shipments", SHIPMENTS), ("weather", WEATHER)):
        status, body, _ = ingestion.reingest_request(
            source, json.dumps({"path": path}).encode(), invocation_id, lake, signal
        )
        assert status == 200 and body["status"] == "ingested"
    assert [(m["week"], m["raw"]) for m in signal.messages] == [(W, WEATHER)]


def test_a_failed_announcement_is_one_warning_and_the_ingest_succeeds(local_lake, invocation_id, caplog):
    class Down:
        def send(self, message):
            raise ValueError("refused by http://acct.queue/?sv=1&sig=s3cret;AccountKey=k3y==;\nmore")

    put_stores(local_lake, STORES)
    put_observations(local_lake, WEATHER, "2026-12-13", "2026-12-26")
    put_deliveries(local_lake, SHIPMENTS, ("2026-12-21",))
    for path in (STORES, WEATHER):
        ingestion.ingest_blob(path, invocation_id, local_lake, Down())
    with caplog.at_level(logging.WARNING, logger="shared.weeks.announce"):
        m = ingestion.ingest_blob(SHIPMENTS, invocation_id, local_lake, Down())
    assert m["status"] == "ingested"
    (record,) = [r for r in caplog.records if r.name == "shared.weeks.announce"]
    text = record.getMessage()
    assert record.levelno == logging.WARNING and "\n" not in text and SHIPMENTS in text
    assert "s3cret" not in text and "k3y" not in text and "weekly timer" in text
    assert not local_lake.exists(f"batches/week={W}/announced.json")
    signal = CollectSignal()  # the host's retry (a redelivery) announces
    ingestion.ingest_blob(SHIPMENTS, invocation_id, local_lake, signal)
    assert [m["week"] for m in signal.messages] == [W]


def test_the_command_lines_ingest_indexes_every_file_unchanged_ones_too_and_collects_announcements(lake):
    put_stores(lake, STORES)
    put_observations(lake, WEATHER, "2026-12-13", "2026-12-26")
    put_deliveries(lake, SHIPMENTS, ("2026-12-21",))
    paths = [STORES, WEATHER, SHIPMENTS]
    ingest_all(lake, paths, io.StringIO())  # no signal: indexed, nothing announced
    assert readiness(lake, W).complete and not lake.exists(f"batches/week={W}/announced.json")
    for p in list(lake.list("batches/index")):
        lake.delete(p)
    signal = CollectSignal()
    results = ingest_all(lake, paths, io.StringIO(), signal=signal)
    assert all(m.get("unchanged") for m in results)
    assert readiness(lake, W).complete
    assert [(m["week"], m["raw"]) for m in signal.messages] == [(W, SHIPMENTS)]
