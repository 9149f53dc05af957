"""Files that were misread or crashed the reader: old Mac line endings, U+2028 inside JSON
Lines strings, huge integers, other compressions, and documents nested too deep (issue 24,
items 8 and 10)."""

from __future__ import annotations

import bz2
import io
import json
import lzma
import zipfile

import pytest

from shared.ingestion.service import ingest
from tests.drivers import STORE_MASTER_HEADER, put, read_csv

MASTER = "raw/demographics/master.csv"
JSONL = "raw/demographics/master.jsonl"
ROW = "S1,2134,NorthEast,Large,100,40,50000,38.5"


def _record(store: str, **extra: object) -> dict[str, object]:
    return {
        "store_id": store,
        "zip": "2134",
        "region": "NorthEast",
        "format": "Large",
        "census": {"population": 10, "households": 4, "median_household_income": 5e4, "median_age": 40},
        **extra,
    }


def test_cr_only_line_endings_are_read_as_lines(local_lake):
    put(local_lake, MASTER, "\r".join([STORE_MASTER_HEADER, ROW, ROW.replace("S1", "S2"), ""]))
    m = ingest(local_lake, MASTER)
    assert m["status"] == "ingested", m.get("error")
    assert [r["store_id"] for r in read_csv(local_lake, m["outputs"]["curated"]["path"])] == ["S1", "S2"]


def test_a_line_separator_inside_a_json_lines_string_does_not_split_the_record(local_lake):
    body = "\n".join(json.dumps(_record(s, note="a\u2028b\u2029c\x85d"), ensure_ascii=False) for s in ("S1", "S2"))
    put(local_lake, JSONL, body)
    m = ingest(local_lake, JSONL)
    assert m["status"] == "ingested", m.get("error")
    assert m["rows"]["read"] == 2 and m["rows"]["written"] == 2


def test_a_huge_integer_in_the_first_json_lines_record_does_not_make_it_a_document(local_lake):
    first = json.dumps(_record("S1")).replace('"store_id"', '"big": ' + "9" * 5000 + ', "store_id"')
    put(local_lake, JSONL, first + "\n" + json.dumps(_record("S2")) + "\n")
    m = ingest(local_lake, JSONL)
    assert m["status"] == "ingested", m.get("error")
    assert m["rows"]["written"] == 2


def _zip(data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("master.csv", data)
    return out.getvalue()


@pytest.mark.parametrize(
    ("kind", "pack"), [("zip", _zip), ("bz2", bz2.compress), ("xz", lzma.compress)], ids=["zip", "bz2", "xz"]
)
def test_zip_bz2_and_xz_are_quarantined_as_unsupported_compression_naming_the_type(local_lake, kind, pack):
    path = f"{MASTER}.{kind}"
    put(local_lake, path, pack(f"{STORE_MASTER_HEADER}\n{ROW}\n".encode()))
    m = ingest(local_lake, path)
    assert m["status"] == "quarantined"
    assert m["error"]["reason"] == "unsupported_compression"
    assert kind in m["error"]["message"] and "gzip" in m["error"]["message"]
    assert "encoding" not in m["error"]["message"]


DEEP = "[" * 100_000 + "]" * 100_000


def test_a_json_document_nested_too_deep_is_quarantined_not_raised(local_lake):
    path = "raw/weather/openmeteo/zip=75001/issued_on=2026-11-20/f.json"
    put(local_lake, path, '{"daily": ' + DEEP + "}")
    m = ingest(local_lake, path)
    assert m["status"] == "quarantined"
    assert m["error"]["reason"] == "too_deep"


def test_a_json_lines_record_nested_too_deep_is_rejected_and_the_rest_kept(local_lake):
    body = "\n".join([json.dumps(_record("S1")), '{"store_id": ' + DEEP + "}", json.dumps(_record("S2"))])
    put(local_lake, JSONL, body)
    m = ingest(local_lake, JSONL)
    assert m["status"] == "ingested", m.get("error")
    assert m["rows"]["written"] == 2 and m["rows"]["rejected_by_rule"] == {"invalid_json": 1}


def test_a_json_lines_file_whose_first_record_is_nested_too_deep_is_not_raised(local_lake):
    put(local_lake, JSONL, DEEP + "\n" + json.dumps(_record("S1")) + "\n")
    m = ingest(local_lake, JSONL)
    assert m["status"] in ("ingested", "quarantined")
    if m["status"] == "ingested":
        assert m["rows"]["written"] == 1


@pytest.mark.parametrize("first", [False, True])
@pytest.mark.parametrize("depth", [900, 990])
def test_a_json_lines_value_nested_just_under_the_readers_limit_is_not_raised(local_lake, depth, first):
    deep = json.dumps(_record("S2")).replace('"NorthEast"', "[" * depth + "]" * depth)
    body = "\n".join([deep, json.dumps(_record("S1"))] if first else [json.dumps(_record("S1")), deep])
    put(local_lake, JSONL, body + "\n")
    m = ingest(local_lake, JSONL)
    assert m["status"] in ("ingested", "quarantined")
