"""Where a raw file's outputs live (shared/ingestion/layout.py): names the lake cannot hold,
and names the writers keep for themselves."""

from __future__ import annotations

import pytest

from shared.ingestion.entrypoints import ingest_blob
from shared.ingestion.layout import TEMPORARY_PREFIX, outputs_for
from shared.lake import LocalLake
from tests.drivers import STORE_MASTER_HEADER, US_OBS_HEADER, lines, put, read_csv, read_json

ROW = "2134,01/31/2026,50,30,0,"


@pytest.mark.parametrize(
    "path",
    [
        "raw/weather/" + "x" * 240 + ".csv",  # the raw name fits; its outputs' names do not
        "raw/weather/" + "/".join(["d" * 200] * 4) + "/" + "y" * 190 + ".csv",  # a 1,020-character path
    ],
)
def test_a_raw_file_whose_outputs_exceed_the_lakes_name_limits_is_quarantined_with_a_record(lake, path):
    if isinstance(lake, LocalLake):  # as a vendor's copy puts it there (the lake's writer needs more room)
        (lake.root / path).parent.mkdir(parents=True)
        (lake.root / path).write_text(lines(US_OBS_HEADER, ROW))
    else:
        put(lake, path, lines(US_OBS_HEADER, ROW))
    m = ingest_blob(path, "inv-1", target=lake)
    assert m["status"] == "quarantined" and m["error"]["reason"] == "name_too_long"
    record = read_json(lake, m["error_record"])
    assert record["raw"]["path"] == path and record["status"] == "quarantined"
    assert m["error_record"].startswith("quarantine/weather_daily/v1/")


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("raw/weather/" + "z" * 256 + ".csv", "name_too_long"),
        ("raw/weather/a\tb.csv", "bad_path"),
        ("raw/nowhere/x.csv", "bad_path"),
    ],
)
def test_a_blob_whose_own_name_the_lake_refuses_still_leaves_a_quarantine_record(lake, path, reason):
    m = ingest_blob(path, "inv-2", target=lake)
    assert m["status"] == "quarantined" and m["error"]["reason"] == reason
    assert read_json(lake, m["error_record"])["raw"]["path"] == path


def test_outputs_never_take_the_writers_temporary_prefix(lake):
    assert TEMPORARY_PREFIX == LocalLake._TMP
    path = f"raw/demographics/{TEMPORARY_PREFIX}stores.csv"
    put(lake, path, lines(STORE_MASTER_HEADER, "S1,2134,west,large,100,40,50000,38.5"))
    out = outputs_for(path)
    for p in (out.curated, out.manifest, out.rejected, out.error, out.collision_error):
        assert not any(seg.startswith(TEMPORARY_PREFIX) for seg in p.split("/")), p
    m = ingest_blob(path, "inv-3", target=lake)
    assert m["status"] == "ingested"
    listed = list(lake.list("curated/store_demographics/v1/"))
    assert m["outputs"]["curated"]["path"] in listed
    assert [r["region"] for r in read_csv(lake, m["outputs"]["curated"]["path"])] == ["west"]
