"""The quarantine's rejected-rows CSV is for people (opened in a spreadsheet to see what was
refused): a text cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is
written behind a single quote, so that opening it never runs a formula (OWASP's CSV-injection
advice); numbers such as ``-5`` are left as they are. The curated CSV, a standard dataset the
pipelines read, keeps its values exact (issue 24, item 20)."""

from __future__ import annotations

import csv
import io

import pyarrow as pa

from shared.ingestion.write import neutralise_formulas
from shared.tooling.bulk_ingest import ingest_all
from tests.drivers import DELIVERIES_HEADER, lines, put

RAW = "raw/shipments/deliveries/ne/2026-11-25.csv"


def test_formula_prefixes_in_the_rejected_rows_csv_are_neutralised(local_lake):
    put(
        local_lake,
        RAW,
        lines(
            DELIVERIES_HEADER,
            "=cmd|' /C calc'!A0,SKU-1,2026-11-25T05:00:00,3,0",
            "S1,SKU-1,2026-11-25T05:00:00,=1+1,0",
            "S1,SKU-2,2026-11-25T05:00:00,@SUM(A1),0",
            "S1,SKU-3,2026-11-25T05:00:00,-5x,0",
            "S1,SKU-4,2026-11-25T05:00:00,4,0",
        ),
    )
    ingest_all(local_lake, [RAW], io.StringIO())
    rejected = [p for p in local_lake.list("quarantine/shipments_weekly") if p.endswith(".rejected.csv")]
    assert len(rejected) == 1
    rows = list(csv.DictReader(io.StringIO(local_lake.read_bytes(rejected[0]).decode())))
    values = {r["raw_value"] for r in rows}
    assert {"'=1+1", "'@SUM(A1)", "'-5x"} <= values, rows
    for row in rows:
        for value in row.values():
            assert not value or value[0] not in "=+-@\t\r", row
    # the curated CSV keeps the identifier exact: the pipelines join on it
    curated = [p for p in local_lake.list("curated/shipments_weekly") if p.endswith(".csv")]
    assert b"=cmd|' /C calc'!A0" in b"".join(local_lake.read_bytes(p) for p in curated)


def test_numbers_and_plain_text_are_left_as_they_are():
    table = pa.table(
        {
            "line": pa.array([1, 2, 3, 4, 5, 6]),
            "text": pa.array(["-5", "+3.25", "-1e5", "=A1", "plain", None]),
        }
    )
    out = neutralise_formulas(table)
    assert out.column("text").to_pylist() == ["-5", "+3.25", "-1e5", "'=A1", "plain", None]
    assert out.column("line").to_pylist() == [1, 2, 3, 4, 5, 6]
