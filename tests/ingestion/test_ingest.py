"""Ingestion of one raw file: rows, rejects, quarantine, manifests, idempotency.

Each test runs against the local-folder lake and against Azurite (the ``lake`` fixture).
"""

from __future__ import annotations

import json

import pytest

from shared.ingestion import readers
from shared.ingestion.layout import outputs_for
from shared.ingestion.service import ingest
from shared.lake import LocalLake, NotFoundError, TransientLakeError
from tests.drivers import (
    DELIVERIES_HEADER,
    ERP_HEADER,
    STORE_MASTER_HEADER,
    US_OBS_HEADER,
    lines,
    put,
    read_csv,
    read_json,
)

WEATHER = "raw/weather/us_obs/2026.csv"


def test_us_observations_become_standard_weather_rows(lake):
    put(lake, WEATHER, lines(US_OBS_HEADER, "2134,01/31/2026,50,32,0.1,", "98101,02/01/2026,72.5,41,0,1.5"))
    m = ingest(lake, WEATHER)
    assert m["status"] == "ingested"
    assert m["rows"] == {"read": 2, "written": 2, "rejected": 0, "output": 2, "rejected_by_rule": {}}
    assert m["format"] == {
        "id": "weather_us_obs_csv",
        "detected_by": "content",
        "mapping_sha256": m["format"]["mapping_sha256"],
    }
    rows = read_csv(lake, "curated/weather_daily/v1/us_obs/2026.csv")
    assert rows == [
        {
            "zip_code": "02134",
            "date": "2026-01-31",
            "kind": "observed",
            "issued_on": "2026-01-31",
            "tmax_c": "10",
            "tmin_c": "0",
            "precip_mm": "2.54",
            "snow_mm": "",
            "source": "weather_us_obs_csv",
        },
        {
            "zip_code": "98101",
            "date": "2026-02-01",
            "kind": "observed",
            "issued_on": "2026-02-01",
            "tmax_c": "22.5",
            "tmin_c": "5",
            "precip_mm": "0",
            "snow_mm": "38.1",
            "source": "weather_us_obs_csv",
        },
    ]
    header = lake.read_bytes("curated/weather_daily/v1/us_obs/2026.csv").split(b"\n", 1)[0]
    assert header == b"zip_code,date,kind,issued_on,tmax_c,tmin_c,precip_mm,snow_mm,source"
    assert not lake.exists("quarantine/weather_daily/v1/us_obs/2026.rejected.csv")


def test_rejects_rows_with_tmin_above_tmax_and_keeps_the_good_rows(lake):
    put(lake, WEATHER, lines(US_OBS_HEADER, "2134,01/31/2026,50,60,0,", "2134,02/01/2026,50,40,0,"))
    m = ingest(lake, WEATHER)
    assert m["rows"]["read"] == 2 and m["rows"]["written"] == 1 and m["rows"]["rejected"] == 1
    assert m["rows"]["rejected_by_rule"] == {"tmin_above_tmax": 1}
    rejected = read_csv(lake, "quarantine/weather_daily/v1/us_obs/2026.rejected.csv")
    assert rejected == [
        {
            "line": "2",
            "column": "tmin_c",
            "rule": "tmin_above_tmax",
            "raw_value": "60",
            "message": "tmin_c is above tmax_c",
        }
    ]
    assert [r["date"] for r in read_csv(lake, m["outputs"]["curated"]["path"])] == ["2026-02-01"]


@pytest.mark.parametrize(
    ("row", "columns", "rule", "raw"),
    [
        ("2134,01/31/2026,abc,30,0,", ["tmax_c"], "invalid_number", "abc"),
        # date and issued_on both come from "Obs Date": one row, two violations
        ("2134,31/01/2026,50,30,0,", ["date", "issued_on"], "invalid_date", "31/01/2026"),
        ("2134,01/31/2026,50,30,-1,", ["precip_mm"], "below_minimum", "-1"),
        ("2134,01/31/2026,150,30,0,", ["tmax_c"], "above_maximum", "150"),
        ("123456,01/31/2026,50,30,0,", ["zip_code"], "pattern_mismatch", "123456"),
        (",01/31/2026,50,30,0,", ["zip_code"], "missing_value", ""),
    ],
)
def test_each_broken_rule_is_reported_with_line_column_rule_and_raw_value(local_lake, row, columns, rule, raw):
    put(local_lake, WEATHER, lines(US_OBS_HEADER, "2134,01/30/2026,50,30,0,", row))
    m = ingest(local_lake, WEATHER)
    assert m["rows"] == {"read": 2, "written": 1, "rejected": 1, "output": 1, "rejected_by_rule": {rule: len(columns)}}
    rejected = read_csv(local_lake, m["outputs"]["rejected"]["path"])
    assert [(r["line"], r["column"], r["rule"], r["raw_value"]) for r in rejected] == [
        ("3", c, rule, raw) for c in columns
    ]


def test_duplicate_keys_first_wins_the_others_are_rejected(lake):
    put(
        lake,
        WEATHER,
        lines(US_OBS_HEADER, "2134,01/31/2026,50,30,0,", "2134,02/01/2026,51,30,0,", "02134,01/31/2026,99,30,0,"),
    )
    m = ingest(lake, WEATHER)
    assert m["rows"] == {"read": 3, "written": 2, "rejected": 1, "output": 2, "rejected_by_rule": {"duplicate_key": 1}}
    assert [r["tmax_c"] for r in read_csv(lake, m["outputs"]["curated"]["path"])] == ["10", "10.56"]
    (rej,) = read_csv(lake, m["outputs"]["rejected"]["path"])
    assert rej["line"] == "4" and rej["rule"] == "duplicate_key"
    assert rej["raw_value"] == "02134|2026-01-31|observed|2026-01-31"


def test_duplicates_across_blocks_and_spilled_key_partitions_first_wins(local_lake, monkeypatch):
    from shared.ingestion import dedupe as normalise

    monkeypatch.setattr(readers, "CSV_BLOCK_BYTES", 4096)  # many record batches
    monkeypatch.setattr(normalise.KeyCounter.__init__, "__defaults__", (500,))  # spill to disk
    rows = [f"{z},01/{d:02d}/2026,50,30,0," for z in range(10000, 10100) for d in range(1, 29)]
    rows.insert(2000, "10000,01/01/2026,77,30,0,")  # repeats row 1, far away from it
    rows.append("10099,01/28/2026,88,30,0,")  # repeats the last regular row
    put(local_lake, WEATHER, lines(US_OBS_HEADER, *rows))
    m = ingest(local_lake, WEATHER)
    assert m["rows"]["read"] == 2802 and m["rows"]["written"] == 2800 and m["rows"]["rejected"] == 2
    rejected = read_csv(local_lake, m["outputs"]["rejected"]["path"])
    assert [(r["line"], r["rule"]) for r in rejected] == [("2002", "duplicate_key"), ("2803", "duplicate_key")]
    written = read_csv(local_lake, m["outputs"]["curated"]["path"])
    assert written[0]["tmax_c"] == "10" and all(r["tmax_c"] == "10" for r in written)


def test_messy_csv_bom_crlf_quotes_newlines_and_trailing_blank_lines(lake):
    raw = (
        "\ufeffStoreID,Zip,Region,Format,Population,Households,Median HH Income,Median Age\r\n"
        '"S1","2134","North, East",Large,100,40,"50000",38.5\r\n'
        '"S2",98101,"West\r\ncoast",SMALL,,,,\r\n'
        "\r\n\r\n"
    )
    put(lake, "raw/demographics/master.csv", raw)
    m = ingest(lake, "raw/demographics/master.csv")
    # a line break inside quotes is read as part of the field, and a region (a group's name)
    # holding one is rejected: it would split the row for whoever reads the CSV next
    assert m["rows"] == {
        "read": 2,
        "written": 1,
        "rejected": 1,
        "output": 1,
        "rejected_by_rule": {"control_character": 1},
    }
    rows = read_csv(lake, m["outputs"]["curated"]["path"])
    assert rows[0]["region"] == "north, east" and rows[0]["store_format"] == "large" and rows[0]["zip_code"] == "02134"
    (rejected,) = read_csv(lake, m["outputs"]["rejected"]["path"])
    assert (rejected["line"], rejected["column"], rejected["raw_value"]) == ("3", "region", "West\r\ncoast")


def test_gzip_raw_files_are_read_and_reported(lake):
    put(lake, "raw/weather/us_obs/2026.csv.gz", lines(US_OBS_HEADER, "2134,01/31/2026,50,32,0.1,"), gz=True)
    m = ingest(lake, "raw/weather/us_obs/2026.csv.gz")
    assert m["status"] == "ingested" and m["raw"]["compression"] == "gzip" and m["rows"]["written"] == 1
    assert m["outputs"]["curated"]["path"] == "curated/weather_daily/v1/us_obs/2026.csv"


def test_erp_cases_become_units_and_week_ending_becomes_monday(lake):
    path = "raw/shipments/erp/2026-W05.csv"
    put(lake, path, lines(ERP_HEADER, "S0001,SKU-1,2026/01/31,3,12,2", "S0001,SKU-2,2026/02/01,1,6,0"))
    m = ingest(lake, path)
    rows = read_csv(lake, m["outputs"]["curated"]["path"])
    assert [(r["sku"], r["week_start"], r["units_shipped"], r["units_returned"]) for r in rows] == [
        ("SKU-1", "2026-01-26", "36", "2"),
        # a Sunday "week ending" starts the next sales week (Sunday..Saturday): the one week rule
        ("SKU-2", "2026-02-02", "6", "0"),
    ]


def test_daily_deliveries_are_summed_into_weeks_and_every_row_is_counted(lake):
    path = "raw/shipments/deliveries/2026-01.csv"
    put(
        lake,
        path,
        lines(
            DELIVERIES_HEADER,
            "S1,K1,2026-01-27T06:30:00,5,0",
            "S1,K1,2026-01-28 06:30:00,7,1",
            "S1,K1,2026-02-02,2,0",
            "S2,K1,2026-01-27,x,0",
            "S1,K1,2026-01-26,1,0",
        ),
    )
    m = ingest(lake, path)
    assert m["rows"] == {"read": 5, "written": 4, "rejected": 1, "output": 2, "rejected_by_rule": {"invalid_number": 1}}
    rows = read_csv(lake, m["outputs"]["curated"]["path"])
    assert [(r["store_id"], r["week_start"], r["units_shipped"], r["units_returned"]) for r in rows] == [
        ("S1", "2026-01-26", "13", "1"),
        ("S1", "2026-02-02", "2", "0"),
    ]


def test_open_meteo_forecast_takes_zip_and_issue_date_from_the_path_and_units_from_the_document(lake):
    doc = {
        "latitude": 32.9,
        "longitude": -96.8,
        "generationtime_ms": 0.5,
        "utc_offset_seconds": 0,
        "daily_units": {
            "time": "iso8601",
            "temperature_2m_max": "°F",
            "temperature_2m_min": "°F",
            "precipitation_sum": "mm",
            "snowfall_sum": "cm",
        },
        "daily": {
            "time": ["2026-11-21", "2026-11-22"],
            "temperature_2m_max": [50.0, 212],
            "temperature_2m_min": [32, 40.1],
            "precipitation_sum": [1.2, 0],
            "snowfall_sum": [0.5, None],
        },
    }
    path = "raw/weather/openmeteo/zip=75001/issued_on=2026-11-20/forecast.json"
    put(lake, path, json.dumps(doc))
    m = ingest(lake, path)
    assert m["rows"] == {"read": 2, "written": 1, "rejected": 1, "output": 1, "rejected_by_rule": {"above_maximum": 1}}
    (row,) = read_csv(lake, m["outputs"]["curated"]["path"])
    assert row == {
        "zip_code": "75001",
        "date": "2026-11-21",
        "kind": "forecast",
        "issued_on": "2026-11-20",
        "tmax_c": "10",
        "tmin_c": "0",
        "precip_mm": "1.2",
        "snow_mm": "5",
        "source": "weather_openmeteo_json",
    }
    (rej,) = read_csv(lake, m["outputs"]["rejected"]["path"])
    assert (rej["line"], rej["column"], rej["raw_value"]) == ("2", "tmax_c", "212")


def test_ghcn_export_takes_the_zip_from_the_path_and_the_metric_variant_must_be_named(lake):
    header = '"STATION","NAME","DATE","PRCP","SNOW","SNWD","TMAX","TMIN"'
    row = '"USW00003927","DALLAS FAA AIRPORT, TX US","2026-01-31","0.50","","","68","41"'
    put(lake, "raw/weather/ghcn/zip=75001/USW00003927.csv", lines(header, row))
    m = ingest(lake, "raw/weather/ghcn/zip=75001/USW00003927.csv")
    (r,) = read_csv(lake, m["outputs"]["curated"]["path"])
    assert (m["format"]["id"], r["zip_code"], r["tmax_c"], r["precip_mm"]) == (
        "weather_ghcn_cdo_standard",
        "75001",
        "20",
        "12.7",
    )
    metric = "raw/weather/ghcn/zip=75001/format=weather_ghcn_cdo_metric/USW00003927.csv"
    put(lake, metric, lines(header, '"USW00003927","DALLAS, TX","2026-01-31","12.7","","","20.0","5.0"'))
    m = ingest(lake, metric)
    (r,) = read_csv(lake, m["outputs"]["curated"]["path"])
    assert (m["format"]["detected_by"], r["tmax_c"], r["precip_mm"]) == ("path", "20", "12.7")


def test_store_master_json_lines_with_a_bad_line_keeps_the_rest(lake):
    path = "raw/demographics/master.jsonl"
    body = "\n".join(
        [
            json.dumps(
                {
                    "store_id": "S1",
                    "zip": "2134",
                    "region": "NorthEast",
                    "format": "Large",
                    "census": {"population": 10, "households": 4, "median_household_income": 5e4, "median_age": 40},
                }
            ),
            '{"store_id": "S2", "zip": ',
            json.dumps({"store_id": "S3", "zip": "98101", "region": "west", "format": "tiny", "census": None}),
            json.dumps({"store_id": "S4", "zip": "98101", "region": "west", "format": "SMALL"}),
        ]
    )
    put(lake, path, body)
    m = ingest(lake, path)
    assert m["rows"] == {
        "read": 4,
        "written": 2,
        "rejected": 2,
        "output": 2,
        "rejected_by_rule": {"invalid_choice": 1, "invalid_json": 1},
    }
    rows = read_csv(lake, m["outputs"]["curated"]["path"])
    assert [
        (r["store_id"], r["zip_code"], r["region"], r["store_format"], r["median_household_income"]) for r in rows
    ] == [
        ("S1", "02134", "northeast", "large", "50000"),
        ("S4", "98101", "west", "small", ""),
    ]
    assert [(r["line"], r["rule"]) for r in read_csv(lake, m["outputs"]["rejected"]["path"])] == [
        ("2", "invalid_json"),
        ("3", "invalid_choice"),
    ]


# whole files that cannot be read ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "content", "reason", "words"),
    [
        (WEATHER, b"", "empty_file", "empty"),
        (WEATHER, b"\n\n", "empty_file", "empty"),
        (WEATHER, b"a,b,c\n1,2,3\n", "no_matching_format", "closest: weather_"),
        (
            "raw/weather/ghcn/USW1.csv",
            b'"STATION","NAME","DATE","PRCP","SNOW","SNWD","TMAX","TMIN"\n"X","Y","2026-01-01","1","","","3","2"\n',
            "missing_path_field",
            "zip=...",
        ),
        ("raw/weather/format=weather_us_obs_csv/x.csv", b"Zip,Obs Date\n1,01/01/2026\n", "format_mismatch", "High (F)"),
        ("raw/weather/format=nope/x.csv", b"Zip\n1\n", "unknown_format", "format=nope"),
        (
            "raw/weather/openmeteo/zip=75001/issued_on=2026-11-20/f.json",
            b'{"daily": {"time": ["2026-11-21"',
            "invalid_json",
            "truncated",
        ),
        (
            WEATHER,
            "Zip,Obs Date,High (F),Low (F),Rain (in)\n2134,01/31/2026,50,32,0\n".encode("utf-16"),
            "bad_encoding",
            "not valid utf-8",
        ),
        (
            WEATHER,
            b"Zip,Obs Date,High (F),Low (F),Rain (in)\n2134,01/31/2026,50,32,0\n99\xe9,01/31/2026,1,0,0\n",
            "bad_encoding",
            "utf-8",
        ),
        (WEATHER, b"\x1f\x8bnot really gzip", "unreadable_gzip", "gzip"),
    ],
    ids=[
        "empty",
        "blank",
        "unknown-columns",
        "no-zip-in-path",
        "claims-other-format",
        "unknown-format-named",
        "truncated-json",
        "utf16",
        "latin1-byte",
        "bad-gzip",
    ],
)
def test_unreadable_files_are_quarantined_with_an_error_that_says_why(lake, path, content, reason, words):
    put(lake, path, content)
    m = ingest(lake, path)
    assert m["status"] == "quarantined"
    assert m["error"]["reason"] == reason
    assert words.lower() in m["error"]["message"].lower()
    out = outputs_for(path)
    assert read_json(lake, out.error) == m
    assert not lake.exists(out.curated) and not lake.exists(out.manifest)
    assert m["raw"]["bytes"] == len(content)


def test_two_formats_that_both_fit_are_named_in_the_error(tmp_path, monkeypatch):
    from shared.ingestion import formats

    folder = tmp_path / "mappings"
    folder.mkdir()
    src = formats.MAPPINGS_DIR / "weather_us_obs_csv.toml"
    (folder / "weather_us_obs_csv.toml").write_bytes(src.read_bytes())
    (folder / "weather_us_obs_copy.toml").write_text(
        src.read_text().replace('id = "weather_us_obs_csv"', 'id = "weather_us_obs_copy"')
    )
    monkeypatch.setattr("shared.ingestion.service.current_mappings", lambda: formats.load_mappings(folder))
    lake = LocalLake(tmp_path / "lake")
    put(lake, WEATHER, lines(US_OBS_HEADER, "2134,01/31/2026,50,32,0,"))
    m = ingest(lake, WEATHER)
    assert m["error"]["reason"] == "several_matching_formats"
    assert m["error"]["details"]["candidates"] == ["weather_us_obs_copy", "weather_us_obs_csv"]


def test_a_latin1_vendor_is_read_when_its_mapping_declares_the_encoding(tmp_path, monkeypatch):
    from shared.ingestion import formats

    folder = tmp_path / "mappings"
    folder.mkdir()
    text = (formats.MAPPINGS_DIR / "demographics_store_master_csv.toml").read_text()
    text = text.replace('id = "demographics_store_master_csv"', 'id = "demographics_latin1"').replace(
        'reader = "csv"', 'reader = "csv"\nencoding = "latin-1"'
    )
    (folder / "demographics_latin1.toml").write_text(text)
    monkeypatch.setattr("shared.ingestion.service.current_mappings", lambda: formats.load_mappings(folder))
    lake = LocalLake(tmp_path / "lake")
    content = (STORE_MASTER_HEADER + "\nS1,2134,Montréal,Large,1,1,1,1\n").encode("latin-1")
    # named in the path, and found by its columns alone (the only latin-1 mapping in this folder)
    for path in ("raw/demographics/format=demographics_latin1/m.csv", "raw/demographics/found_by_content.csv"):
        put(lake, path, content)
        m = ingest(lake, path)
        assert m["status"] == "ingested", m
        assert read_csv(lake, m["outputs"]["curated"]["path"])[0]["region"] == "montréal"


def test_a_path_outside_raw_sources_is_refused(local_lake):
    with pytest.raises(ValueError, match="raw/<source>/<file>"):
        ingest(local_lake, "raw/sales/x.csv")
    with pytest.raises(ValueError, match="not a lake path"):
        ingest(local_lake, "raw/weather/../x.csv")
    with pytest.raises(NotFoundError):
        ingest(local_lake, "raw/weather/missing.csv")


# idempotency and atomicity --------------------------------------------------------------------
def _snapshot(lake, out):
    return {p: lake.read_bytes(p) for p in (out.curated, out.rejected, out.manifest) if lake.exists(p)}


def test_the_same_raw_file_twice_leaves_byte_identical_outputs_and_manifest(lake):
    put(lake, WEATHER, lines(US_OBS_HEADER, "2134,01/31/2026,50,32,0,", "2134,01/31/2026,50,32,0,"))
    first = ingest(lake, WEATHER)
    before = _snapshot(lake, outputs_for(WEATHER))
    again = ingest(lake, WEATHER)
    assert again["unchanged"] is True and again["invocation_id"] == first["invocation_id"]
    assert _snapshot(lake, outputs_for(WEATHER)) == before and len(before) == 3


def test_a_redelivered_copy_rewrites_the_same_data_bytes(lake):
    content = lines(US_OBS_HEADER, "2134,01/31/2026,50,32,0,", "2134,02/01/2026,x,32,0,")
    put(lake, WEATHER, content)
    ingest(lake, WEATHER)
    out = outputs_for(WEATHER)
    data_before = (lake.read_bytes(out.curated), lake.read_bytes(out.rejected))
    put(lake, WEATHER, content)  # new ETag, same bytes
    m = ingest(lake, WEATHER)
    assert "unchanged" not in m
    assert (lake.read_bytes(out.curated), lake.read_bytes(out.rejected)) == data_before


def test_a_new_version_of_the_raw_file_replaces_every_output(lake):
    put(lake, WEATHER, lines(US_OBS_HEADER, "2134,01/31/2026,50,32,0,", "2134,02/01/2026,x,32,0,"))
    ingest(lake, WEATHER)
    out = outputs_for(WEATHER)
    put(lake, WEATHER, lines(US_OBS_HEADER, "2134,03/01/2026,50,32,0,"))
    m = ingest(lake, WEATHER)
    assert [r["date"] for r in read_csv(lake, out.curated)] == ["2026-03-01"]
    assert not lake.exists(out.rejected) and m["outputs"]["rejected"] is None
    put(lake, WEATHER, b"")  # the vendor now sends garbage: the stale outputs go, the error stays
    assert ingest(lake, WEATHER)["status"] == "quarantined"
    assert not lake.exists(out.curated) and not lake.exists(out.manifest) and lake.exists(out.error)
    put(lake, WEATHER, lines(US_OBS_HEADER, "2134,03/01/2026,50,32,0,"))
    assert ingest(lake, WEATHER)["status"] == "ingested" and not lake.exists(out.error)


def test_two_raw_files_with_the_same_stem_do_not_overwrite_each_other(lake):
    put(lake, "raw/weather/us_obs/2026.csv", lines(US_OBS_HEADER, "2134,01/31/2026,50,32,0,"))
    put(lake, "raw/weather/us_obs/2026.csv.gz", lines(US_OBS_HEADER, "2134,02/01/2026,50,32,0,"), gz=True)
    ingest(lake, "raw/weather/us_obs/2026.csv")
    m = ingest(lake, "raw/weather/us_obs/2026.csv.gz")
    assert m["error"]["reason"] == "output_collision"
    assert [r["date"] for r in read_csv(lake, "curated/weather_daily/v1/us_obs/2026.csv")] == ["2026-01-31"]
    # the quarantined file has its error record, beside the other file's outputs, not over them
    record = "quarantine/weather_daily/v1/us_obs/2026.csv.gz.collision.error.json"
    assert m["error_record"] == record and read_json(lake, record) == m
    assert m["raw"]["path"] == "raw/weather/us_obs/2026.csv.gz" and "2026.csv" in m["error"]["message"]
    assert not lake.exists(outputs_for("raw/weather/us_obs/2026.csv").error)
    assert read_json(lake, outputs_for("raw/weather/us_obs/2026.csv").manifest)["status"] == "ingested"


def test_a_failure_mid_file_leaves_no_half_written_output(local_lake, monkeypatch):
    from shared.ingestion import convert as normalise

    rows = [f"{z},01/{d:02d}/2026,50,32,0," for z in range(10000, 10010) for d in range(1, 29)]
    put(local_lake, WEATHER, lines(US_OBS_HEADER, *rows))
    monkeypatch.setattr(readers, "CSV_BLOCK_BYTES", 1024)
    real, calls = normalise.Converter.convert, []

    def dies_on_the_third_batch(self, batch):
        calls.append(batch.num_rows)
        if len(calls) == 3:
            raise RuntimeError("worker died")
        return real(self, batch)

    monkeypatch.setattr(normalise.Converter, "convert", dies_on_the_third_batch)
    with pytest.raises(RuntimeError, match="worker died"):
        ingest(local_lake, WEATHER)
    written = [p for top in ("curated", "quarantine") for p in (local_lake.root / top).rglob("*") if p.is_file()]
    assert written == []  # not even a temporary file
    assert len(calls) == 3


class FlakyLake(LocalLake):
    """A lake whose storage fails ``failures`` times before it answers."""

    def __init__(self, root, failures):
        super().__init__(root)
        self.failures = failures

    def stat(self, path):
        if self.failures:
            self.failures -= 1
            raise TransientLakeError("storage answered 503: Server Busy")
        return super().stat(path)


def test_transient_storage_errors_are_retried_and_then_raised_for_the_host(tmp_path, monkeypatch):
    monkeypatch.setattr("shared.ingestion.service.time.sleep", lambda s: None)
    lake = FlakyLake(tmp_path, failures=2)
    put(lake, WEATHER, lines(US_OBS_HEADER, "2134,01/31/2026,50,32,0,"))
    assert ingest(lake, WEATHER, retries=3)["status"] == "ingested"
    lake.failures = 5
    with pytest.raises(TransientLakeError):
        ingest(lake, WEATHER, retries=3, force=True)
    assert lake.failures == 2


def test_a_number_too_large_for_a_whole_number_is_rejected_not_a_crash(local_lake):
    path = "raw/shipments/erp/huge.csv"
    put(local_lake, path, lines(ERP_HEADER, "S0001,SKU-1,2026/01/31,1e20,12,0", "S0001,SKU-2,2026/01/31,3,12,0"))
    m = ingest(local_lake, path)
    assert m["status"] == "ingested" and m["rows"]["written"] == 1
    assert m["rows"]["rejected_by_rule"] == {"above_maximum": 1}


def test_a_value_no_rule_foresaw_quarantines_the_file(local_lake, monkeypatch):
    import pyarrow as pa

    from shared.ingestion import convert as normalise

    def boom(self, batch):
        raise pa.ArrowInvalid("Float value 1e400 was truncated")

    monkeypatch.setattr(normalise.Converter, "convert", boom)
    put(local_lake, WEATHER, lines(US_OBS_HEADER, "2134,01/31/2026,50,32,0,"))
    m = ingest(local_lake, WEATHER)
    assert m["status"] == "quarantined" and m["error"]["reason"] == "unconvertible_value"


def test_a_file_quarantined_for_its_format_is_retried_once_a_mapping_fits(tmp_path, monkeypatch):
    from shared.ingestion import formats

    lake = LocalLake(tmp_path / "lake")
    put(lake, "raw/demographics/new_vendor.csv", "Store,Postcode\nS1,2134\n")
    assert ingest(lake, "raw/demographics/new_vendor.csv")["error"]["reason"] == "no_matching_format"
    assert ingest(lake, "raw/demographics/new_vendor.csv")["unchanged"] is True  # same file, same mappings
    folder = tmp_path / "mappings"
    folder.mkdir()
    for m in formats.MAPPINGS_DIR.glob("*.toml"):
        (folder / m.name).write_bytes(m.read_bytes())
    (folder / "demographics_new_vendor.toml").write_text(
        'id = "demographics_new_vendor"\ndataset = "store_demographics"\ndescription = "onboarded"\nreader = "csv"\n'
        '[columns]\nstore_id = { column = "Store" }\nzip_code = { column = "Postcode", pad = 5 }\nregion = { const = "x" }\n'
        'store_format = { const = "large" }\npopulation = { const = "" }\nhouseholds = { const = "" }\n'
        'median_household_income = { const = "" }\nmedian_age = { const = "" }\n'
    )
    monkeypatch.setattr("shared.ingestion.service.current_mappings", lambda: formats.load_mappings(folder))
    m = ingest(lake, "raw/demographics/new_vendor.csv")
    assert m["status"] == "ingested" and m["format"]["id"] == "demographics_new_vendor"


# required values ---------------------------------------------------------------------------
def test_a_noaa_row_with_empty_tmax_tmin_or_prcp_is_rejected_as_missing_not_written_empty(lake):
    header = '"STATION","NAME","DATE","PRCP","SNOW","SNWD","TMAX","TMIN"'
    path = "raw/weather/ghcn/zip=75001/USW00003927.csv"
    put(
        lake,
        path,
        lines(
            header,
            '"USW00003927","DALLAS","2026-01-30","0.50","","","68","41"',
            '"USW00003927","DALLAS","2026-01-31","","","","",""',
            '"USW00003927","DALLAS","2026-02-01","0.1","","","","40"',
        ),
    )
    m = ingest(lake, path)
    assert m["rows"]["read"] == 3 and m["rows"]["written"] == 1 and m["rows"]["rejected"] == 2
    assert m["rows"]["rejected_by_rule"] == {"missing_value": 4}
    rejected = read_csv(lake, m["outputs"]["rejected"]["path"])
    assert [(r["line"], r["column"], r["rule"]) for r in rejected] == [
        ("3", "tmax_c", "missing_value"),
        ("3", "tmin_c", "missing_value"),
        ("3", "precip_mm", "missing_value"),
        ("4", "tmax_c", "missing_value"),
    ]
    assert [r["date"] for r in read_csv(lake, m["outputs"]["curated"]["path"])] == ["2026-01-30"]


# a raw file that changes while it is ingested ---------------------------------------------------
def test_a_file_copied_over_with_the_same_size_and_mtime_is_ingested_again(local_lake):
    import os
    import time

    put(local_lake, WEATHER, lines(US_OBS_HEADER, "2134,01/31/2026,50,32,0,"))
    ingest(local_lake, WEATHER)
    file = local_lake.root / WEATHER
    before = file.stat()
    time.sleep(0.05)  # past the file system's timestamp granularity
    with open(file, "r+b") as f:  # cp -p onto the file: new bytes, same size, mtime set back
        f.write(lines(US_OBS_HEADER, "2134,02/28/2026,50,32,0,").encode())
    os.utime(file, ns=(before.st_atime_ns, before.st_mtime_ns))
    m = ingest(local_lake, WEATHER)
    assert "unchanged" not in m
    assert [r["date"] for r in read_csv(local_lake, m["outputs"]["curated"]["path"])] == ["2026-02-28"]


def test_a_slow_ingest_of_an_old_version_never_overwrites_the_newer_versions_outputs(lake, monkeypatch):
    """Version 1 is read; meanwhile version 2 arrives and is ingested in full; then version 1's
    ingest reaches its commit. It must find the raw file changed and let version 2 win."""
    from shared.ingestion import convert

    put(lake, WEATHER, lines(US_OBS_HEADER, "2134,01/31/2026,50,32,0,"))
    real, events = convert.Converter.convert, []

    def v2_arrives_and_is_ingested_while_v1_is_converted(self, batch):
        if not events:
            events.append("v2")
            put(lake, WEATHER, lines(US_OBS_HEADER, "2134,02/28/2026,50,32,0,", "2134,03/01/2026,50,32,0,"))
            events.append(ingest(lake, WEATHER, invocation_id="fast-v2"))
        return real(self, batch)

    monkeypatch.setattr(convert.Converter, "convert", v2_arrives_and_is_ingested_while_v1_is_converted)
    m = ingest(lake, WEATHER, invocation_id="slow-v1")
    out = outputs_for(WEATHER)
    assert [r["date"] for r in read_csv(lake, out.curated)] == ["2026-02-28", "2026-03-01"]
    manifest = read_json(lake, out.manifest)
    assert manifest["invocation_id"] == "fast-v2" and manifest["raw"]["etag"] == lake.stat(WEATHER).etag
    assert m["invocation_id"] == "fast-v2" and m["unchanged"] is True  # the slow call answers the newest


def test_a_version_replaced_after_its_outputs_were_committed_is_rewritten_from_the_newest(lake, monkeypatch):
    from shared.ingestion import service

    put(lake, WEATHER, lines(US_OBS_HEADER, "2134,01/31/2026,50,32,0,"))
    real, calls = service.check_current, []

    def replaced_just_before_the_manifest(lake_, path, etag, committed=False):
        if committed and not calls:
            calls.append(path)
            put(lake, WEATHER, lines(US_OBS_HEADER, "2134,02/28/2026,50,32,0,"))
        return real(lake_, path, etag, committed)

    monkeypatch.setattr(service, "check_current", replaced_just_before_the_manifest)
    m = ingest(lake, WEATHER)
    assert m["status"] == "ingested" and m["raw"]["etag"] == lake.stat(WEATHER).etag
    assert [r["date"] for r in read_csv(lake, outputs_for(WEATHER).curated)] == ["2026-02-28"]


def test_a_file_that_never_stops_changing_is_left_to_the_hosts_retry(local_lake, monkeypatch):
    from shared.ingestion import convert

    put(local_lake, WEATHER, lines(US_OBS_HEADER, "2134,01/31/2026,50,32,0,"))
    real, n = convert.Converter.convert, [0]

    def always_rewritten(self, batch):
        n[0] += 1
        put(local_lake, WEATHER, lines(US_OBS_HEADER, f"2134,01/{n[0]:02d}/2026,50,32,0,"))
        return real(self, batch)

    monkeypatch.setattr(convert.Converter, "convert", always_rewritten)
    with pytest.raises(TransientLakeError, match="kept changing"):
        ingest(local_lake, WEATHER)
    assert not local_lake.exists(outputs_for(WEATHER).curated)


# files that used to crash the batch or quarantine with words only pyarrow understands ----------
def test_a_first_line_longer_than_the_csv_field_limit_is_quarantined_not_raised(lake):
    content = b"x" * 200_000 + b",y\n1,2\n"
    put(lake, WEATHER, content)
    m = ingest(lake, WEATHER)
    assert m["status"] == "quarantined" and m["error"]["reason"] == "record_too_long"
    assert "longer than 128 KiB" in m["error"]["message"] and m["raw"]["bytes"] == len(content)
    assert read_json(lake, outputs_for(WEATHER).error) == m


def test_a_record_longer_than_the_readers_block_is_quarantined_in_words_a_data_engineer_reads(lake):
    content = lines(US_OBS_HEADER, "2134,01/31/2026,50,32,0,", '2134,"' + "x" * (5 << 20) + '",50,32,0,')
    put(lake, WEATHER, content)
    m = ingest(lake, WEATHER)
    assert m["status"] == "quarantined" and m["error"]["reason"] == "record_too_long"
    assert "a record (one row" in m["error"]["message"] and "longer than 2 MiB" in m["error"]["message"]
    assert "straddl" not in m["error"]["message"]


def test_a_header_that_names_a_column_the_mapping_reads_twice_is_refused(lake):
    put(lake, WEATHER, lines(US_OBS_HEADER + ",zip ", "2134,01/31/2026,50,32,0,,99999"))
    m = ingest(lake, WEATHER)
    assert m["status"] == "quarantined" and m["error"]["reason"] == "duplicate_column"
    assert "'zip' at columns 1, 7" in m["error"]["message"]
    # a repeated column the mapping does not read is harmless
    put(lake, WEATHER, lines(US_OBS_HEADER + ",note,note", "2134,01/31/2026,50,32,0,,a,b"))
    assert ingest(lake, WEATHER)["status"] == "ingested"


def test_a_vendor_layout_in_the_extra_mappings_folder_is_used_by_the_ingest(tmp_path, monkeypatch):
    from shared.settings import get_settings
    from tests.ingestion.test_formats import NEW_VENDOR

    folder = tmp_path / "my-mappings"
    folder.mkdir()
    (folder / "demographics_new_vendor.toml").write_text(NEW_VENDOR)
    monkeypatch.setenv("FORECASTOPS_EXTRA_MAPPINGS", str(folder))
    get_settings.cache_clear()
    lake = LocalLake(tmp_path / "lake")
    put(lake, "raw/demographics/new_vendor.csv", "Store,Postcode\nS1,2134\n")
    m = ingest(lake, "raw/demographics/new_vendor.csv")
    assert m["status"] == "ingested" and m["format"]["id"] == "demographics_new_vendor"


def test_a_gzip_json_lines_file_cut_after_its_first_mib_is_quarantined_not_raised(local_lake):
    import gzip as gz
    import json as js

    lines = "".join(
        js.dumps({"store_id": f"S{i:05d}", "zip": "02134", "region": "northeast", "format": "Large", "pad": "x" * 40})
        + "\n"
        for i in range(60_000)
    )
    data = gz.compress(lines.encode(), mtime=0)
    put(local_lake, "raw/demographics/cut.jsonl.gz", data[: len(data) * 2 // 3])
    m = ingest(local_lake, "raw/demographics/cut.jsonl.gz")
    assert m["status"] == "quarantined" and m["error"]["reason"] == "truncated"
    assert local_lake.exists("quarantine/store_demographics/v1/cut.jsonl.error.json")


def test_a_pass_that_fails_commits_none_of_its_rejected_rows(local_lake, monkeypatch):
    """Rejected rows are written as they come; a pass interrupted after some of them (Ctrl-C,
    a superseded version, a storage error) must leave no rejected.csv behind."""
    rows = [f"{z},01/{d:02d}/2026,50,32,0," for z in range(10000, 10010) for d in range(1, 29)]
    rows[3] = "10000,01/04/2026,50,999,0,"  # tmin above tmax: a rejected row in the first batch
    put(local_lake, WEATHER, lines(US_OBS_HEADER, *rows))
    monkeypatch.setattr(readers, "CSV_BLOCK_BYTES", 1024)
    calls = []

    def interrupt(rows_read, nbytes):
        calls.append(rows_read)
        if len(calls) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ingest(local_lake, WEATHER, progress=interrupt)
    out = outputs_for(WEATHER)
    assert not local_lake.exists(out.rejected) and not local_lake.exists(out.curated)
    assert not local_lake.exists(out.manifest)


def test_a_newer_version_ingested_while_the_manifest_is_written_still_wins(lake, monkeypatch):
    """Version 2 arrives and is ingested in full just as version 1's ingest writes its manifest
    (after its last check): no event would come to correct the old manifest, so the ingest
    checks once more after writing, and the newest version wins."""
    put(lake, WEATHER, lines(US_OBS_HEADER, "2134,01/31/2026,50,32,0,"))
    out = outputs_for(WEATHER)
    real, done = lake.write_bytes, []

    def v2_lands_first(path, data):
        if path == out.manifest and not done:
            done.append(True)
            put(lake, WEATHER, lines(US_OBS_HEADER, "2134,02/28/2026,50,32,0,"))
            ingest(lake, WEATHER, invocation_id="fast-v2")
        return real(path, data)

    monkeypatch.setattr(lake, "write_bytes", v2_lands_first)
    ingest(lake, WEATHER, invocation_id="slow-v1")
    manifest = read_json(lake, out.manifest)
    assert manifest["raw"]["etag"] == lake.stat(WEATHER).etag
    assert [r["date"] for r in read_csv(lake, out.curated)] == ["2026-02-28"]
