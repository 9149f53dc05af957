"""A row dated far beyond the clock is rejected as ``future_date``, never trusted: one shipments
row of 2062 must not move the lake's latest week (issue 24, item 15).

The limit is the clock's today (shared/clock.py, moved here by the tests) plus
``FORECASTOPS_FUTURE_DAYS_MAX`` days (default 8); the dated column is each dataset's as-of
column: shipments' raw date (before it becomes its week), weather's ``issued_on``.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from shared import clock
from shared.ingestion.convert import Context, Converter, latest_date
from shared.ingestion.datasets import spec
from shared.ingestion.formats import Mapping, Source
from shared.ingestion.readers import RawBatch
from shared.ingestion.service import ingest
from shared.settings import Settings, get_settings
from shared.weeks import latest_week
from shared.weeks.announce import CollectSignal, after_ingest
from tests.drivers import DELIVERIES_HEADER, ERP_HEADER, STORE_MASTER_HEADER, US_OBS_HEADER, lines, put, read_csv

NOW = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)  # the Monday after W
TODAY = NOW.date()
W = "2026-11-23"  # Sunday 2026-11-22 .. Saturday 2026-11-28

STORES = "raw/demographics/store_master.csv"
WEATHER = "raw/weather/us_obs/2026-11.csv"
SHIPMENTS = "raw/shipments/deliveries/2026-11-25.csv"


@pytest.fixture
def at_now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock, "now", lambda: NOW)


def _days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=k) for k in range((last - first).days + 1)]


def test_one_row_of_2062_is_rejected_and_the_real_week_is_the_latest_and_announced(lake, at_now):
    put(lake, STORES, lines(STORE_MASTER_HEADER, "S1,02134,northeast,Large,100,40,50000,40"))
    observed = [f"2134,{d:%m/%d/%Y},50,32,0.1," for d in _days(dt.date(2026, 11, 15), dt.date(2026, 11, 28))]
    put(lake, WEATHER, lines(US_OBS_HEADER, *observed, "2134,12/23/2062,50,32,0,"))
    put(
        lake,
        SHIPMENTS,
        lines(DELIVERIES_HEADER, "S1,K1,2026-11-25T05:00:00,3,0", "S1,K1,2062-12-20,9,0", "S1,K2,2026-11-26,4,0"),
    )
    signal = CollectSignal()
    manifests = {}
    for path in (STORES, WEATHER, SHIPMENTS):
        m = ingest(lake, path)
        after_ingest(lake, m, signal, NOW)
        manifests[m["dataset"]] = m
    ship = manifests["shipments_weekly"]
    assert ship["rows"] == {"read": 3, "written": 2, "rejected": 1, "output": 2, "rejected_by_rule": {"future_date": 1}}
    assert manifests["weather_daily"]["rows"]["rejected_by_rule"] == {"future_date": 1}
    assert ship["coverage"]["weeks"] == [W]
    assert latest_week(lake) == W and latest_week(lake, "weather_daily") == W
    assert [m["week"] for m in signal.messages] == [W]
    (reject,) = read_csv(lake, ship["outputs"]["rejected"]["path"])
    assert (reject["line"], reject["column"], reject["rule"], reject["raw_value"]) == (
        "3",
        "week_start",
        "future_date",
        "2062-12-20",
    )
    assert "2026-12-08" in reject["message"]  # the limit: today and 8 days


@pytest.mark.parametrize("layout", ["deliveries", "erp"])
def test_a_row_dated_today_plus_the_limit_is_accepted_and_a_day_later_rejected(local_lake, at_now, layout):
    last, beyond = TODAY + dt.timedelta(days=8), TODAY + dt.timedelta(days=9)
    if layout == "deliveries":
        path = "raw/shipments/deliveries/soon.csv"
        put(local_lake, path, lines(DELIVERIES_HEADER, f"S1,K1,{last},1,0", f"S1,K2,{beyond},1,0"))
    else:
        path = "raw/shipments/erp/soon.csv"
        put(local_lake, path, lines(ERP_HEADER, f"S1,K1,{last:%Y/%m/%d},1,6,0", f"S1,K2,{beyond:%Y/%m/%d},1,6,0"))
    m = ingest(local_lake, path)
    assert m["rows"]["rejected_by_rule"] == {"future_date": 1}
    assert [r["sku"] for r in read_csv(local_lake, m["outputs"]["curated"]["path"])] == ["K1"]


def test_the_setting_sets_the_limit(local_lake, at_now, monkeypatch):
    monkeypatch.setenv("FORECASTOPS_FUTURE_DAYS_MAX", "0")
    get_settings.cache_clear()
    tomorrow = TODAY + dt.timedelta(days=1)
    put(
        local_lake, WEATHER, lines(US_OBS_HEADER, f"2134,{TODAY:%m/%d/%Y},50,32,0,", f"2134,{tomorrow:%m/%d/%Y},5,3,0,")
    )
    m = ingest(local_lake, WEATHER)
    assert m["rows"]["written"] == 1 and m["rows"]["rejected_by_rule"] == {"future_date": 1}


def test_the_limit_is_the_clocks_today_in_utc_plus_the_setting():
    settings = Settings(future_days_max=8)
    late_evening_in_new_york = dt.datetime(2026, 11, 30, 22, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert latest_date(settings, late_evening_in_new_york) == dt.date(2026, 12, 9)  # already Dec 1st in UTC
    assert latest_date(Settings(future_days_max=0), NOW) == TODAY


def _weather(rows: list[tuple[str, str, str]], latest: dt.date) -> list[int]:
    """The lines of ``(kind, date, issued_on)`` rows that a weather conversion rejects."""
    cols = {c: Source(column=c) for c in spec("weather_daily").column_names if c != "source"}
    mapping = Mapping(id="standard", dataset="weather_daily", description="standard", reader="csv", columns=cols)
    n = len(rows)
    batch = RawBatch(
        {
            "zip_code": pa.array(["02134"] * n),
            "kind": pa.array([r[0] for r in rows]),
            "date": pa.array([r[1] for r in rows]),
            "issued_on": pa.array([r[2] for r in rows]),
            **{c: pa.array(["1"] * n) for c in ("tmax_c", "tmin_c", "precip_mm", "snow_mm")},
        },
        pa.array(range(2, n + 2), pa.int64()),
    )
    res = Converter(mapping, Context({}), latest=latest).convert(batch)
    assert set(res.per_rule) <= {"future_date"}
    return res.rejects.column("line").to_pylist()


def test_a_forecast_may_run_past_the_limit_but_not_be_issued_past_it():
    rows = [
        ("forecast", "2026-12-20", "2026-12-04"),  # 16 days ahead of its issue: a forecast's reach
        ("forecast", "2026-12-20", "2026-12-05"),  # issued after the limit
        ("observed", "2026-12-04", "2026-12-04"),
        ("observed", "2062-12-23", "2062-12-23"),
    ]
    assert _weather(rows, dt.date(2026, 12, 4)) == [3, 5]
