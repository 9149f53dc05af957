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
