"""Raw values to standard rows (shared/ingestion/convert.py): what hostile values become.

Each test ingests a real raw file into a lake, as the blob trigger does.
"""

from __future__ import annotations

import pytest

from shared.ingestion.service import ingest
from tests.drivers import US_OBS_HEADER, lines, put, read_csv

WEATHER = "raw/weather/us_obs/2026.csv"


@pytest.mark.parametrize(
    ("row", "columns"),
    [
        ("M,01/31/2026,50,30,0,", ["zip_code"]),
        ("NA,01/31/2026,50,30,0,", ["zip_code"]),
        ("2134,-,50,30,0,", ["date", "issued_on"]),
        ("2134,01/31/2026,M,30,0,", ["tmax_c"]),
    ],
)
def test_a_null_token_in_a_required_column_is_rejected_as_missing(lake, row, columns):
    put(lake, WEATHER, lines(US_OBS_HEADER, "2134,01/30/2026,50,30,0,", row))
    m = ingest(lake, WEATHER)
    assert m["rows"]["read"] == 2 and m["rows"]["written"] == 1 and m["rows"]["rejected"] == 1
    assert m["rows"]["rejected_by_rule"] == {"missing_value": len(columns)}
    rejected = read_csv(lake, m["outputs"]["rejected"]["path"])
    assert [(r["line"], r["column"], r["rule"]) for r in rejected] == [("3", c, "missing_value") for c in columns]
    written = read_csv(lake, m["outputs"]["curated"]["path"])
    assert all(r["zip_code"] and r["date"] and r["tmax_c"] for r in written)


def test_a_number_beyond_float_range_is_rejected_never_written_as_inf(lake):
    put(lake, WEATHER, lines(US_OBS_HEADER, "2134,01/30/2026,50,30,0,", "2134,01/31/2026,50,30,1e309,"))
    m = ingest(lake, WEATHER)
    assert m["status"] == "ingested"
    assert m["rows"]["written"] == 1 and m["rows"]["rejected_by_rule"] == {"invalid_number": 1}
    assert b"inf" not in lake.read_bytes(m["outputs"]["curated"]["path"])


def test_one_huge_value_among_good_rows_rejects_its_row_not_the_file(lake):
    good = [f"2134,01/{d:02d}/2026,50,30,0.1," for d in range(1, 29)]
    put(lake, WEATHER, lines(US_OBS_HEADER, *good, "2134,02/01/2026,50,30,1e308,"))
    m = ingest(lake, WEATHER)
    assert m["status"] == "ingested"
    assert m["rows"]["written"] == 28 and m["rows"]["rejected"] == 1
    assert m["rows"]["rejected_by_rule"] == {"above_maximum": 1}


@pytest.mark.parametrize("store", ["S\x001", "S1\nS2", "S\r1", "S\x1b[31m"])
def test_control_characters_in_an_identifier_are_rejected(lake, store):
    path = "raw/shipments/deliveries/2026.csv"
    quoted = '"' + store + '"'
    put(
        lake,
        path,
        lines("store,sku,delivery_date,qty,returned_qty", "S1,K1,2026-01-27,3,0", f"{quoted},K1,2026-01-27,3,0"),
    )
    m = ingest(lake, path)
    assert m["status"] == "ingested"
    assert m["rows"]["written"] == 1 and m["rows"]["rejected_by_rule"] == {"control_character": 1}
    curated = lake.read_bytes(m["outputs"]["curated"]["path"])
    assert b"\x00" not in curated and b"\x1b" not in curated and curated.count(b"\n") == 2


@pytest.mark.parametrize("day", ["06/28/26", "6/28/26", "01/31/0000", "01/31/0026", "01/31/10000", "12/31/9999999"])
def test_a_date_whose_year_is_not_four_digits_within_1000_to_9999_is_rejected_as_invalid_date(lake, day):
    put(lake, WEATHER, lines(US_OBS_HEADER, "2134,01/30/2026,50,30,0,", f"2134,{day},50,30,0,"))
    m = ingest(lake, WEATHER)
    assert m["status"] == "ingested"
    assert m["rows"]["written"] == 1 and m["rows"]["rejected_by_rule"] == {"invalid_date": 2}
    assert [r["date"] for r in read_csv(lake, m["outputs"]["curated"]["path"])] == ["2026-01-30"]
