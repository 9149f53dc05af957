"""A raw file mostly rejected is quarantined whole (``too_many_rejects``): its first rejects
as samples, the counts per rule and every row accounted for, and no curated output or rejects
file left behind; a file under the limit keeps every reject (issue 24, item 18)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from typing import Any, BinaryIO

import pytest

from shared.ingestion import readers
from shared.ingestion.layout import outputs_for
from shared.ingestion.service import ingest
from shared.ingestion.write import REJECT_SAMPLES, RejectLimit
from shared.lake import LocalLake
from shared.settings import get_settings
from tests.drivers import ROOT_DIR, US_OBS_HEADER, lines, put, read_csv, read_json

WEATHER = "raw/weather/us_obs/2026.csv"
#: a row that breaks rules five times: the zip's pattern, the date (and the issue date taken
#: from it), two numbers
BAD = "x,13/45/2026,hot,cold,0.10,"
PER_ROW = 5


def good(i: int) -> str:
    return f"{10000 + i},01/31/2026,50,32,0,"


@pytest.fixture
def limit_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORECASTOPS_REJECT_RATIO_MAX", "0.5")
    monkeypatch.setenv("FORECASTOPS_REJECT_FILE_MIN_ROWS", "10")
    get_settings.cache_clear()


def test_a_file_mostly_rejected_is_quarantined_whole_with_samples_counts_and_every_row(lake, limit_settings):
    put(lake, WEATHER, lines(US_OBS_HEADER, *[BAD] * 20, *(good(i) for i in range(10))))
    m = ingest(lake, WEATHER)
    out = outputs_for(WEATHER)
    assert m["status"] == "quarantined" and m["error"]["reason"] == "too_many_rejects"
    details = m["error"]["details"]
    assert details["rows"] == {"read": 30, "passed": 10, "rejected": 20, "written": 0}
    assert details["rejected_by_rule"] == {"invalid_date": 40, "invalid_number": 40, "pattern_mismatch": 20}
    assert len(details["samples"]) == REJECT_SAMPLES
    assert details["samples"][0]["line"] == 2 and {s["raw_value"] for s in details["samples"]} <= {
        "x",
        "13/45/2026",
        "hot",
        "cold",
    }
    assert "20 of the 30 rows" in m["error"]["message"]
    assert read_json(lake, out.error) == m and m["error_record"] == out.error
    for left in (out.curated, out.manifest, out.rejected):
        assert not lake.exists(left), left


def test_samples_are_short_and_escaped(local_lake, limit_settings):
    long_zip = "=cmd\x07" + "A" * 200
    put(local_lake, WEATHER, lines(US_OBS_HEADER, *[f"{long_zip},01/31/2026,50,32,0,"] * 12))
    m = ingest(local_lake, WEATHER)
    sample = m["error"]["details"]["samples"][0]
    assert m["error"]["reason"] == "too_many_rejects"
    assert sample["raw_value"].startswith("=cmd\\x07AAA") and len(sample["raw_value"]) <= readers.SAMPLE_CHARS


def test_a_file_under_the_ratio_keeps_every_reject(lake, limit_settings):
    put(lake, WEATHER, lines(US_OBS_HEADER, *[BAD] * 14, *(good(i) for i in range(16))))
    m = ingest(lake, WEATHER)
    assert m["status"] == "ingested" and m["rows"]["rejected"] == 14 and m["rows"]["written"] == 16
    assert len(read_csv(lake, outputs_for(WEATHER).rejected)) == 14 * PER_ROW


def test_a_small_file_under_the_minimum_is_rejected_row_by_row(lake, limit_settings):
    put(lake, WEATHER, lines(US_OBS_HEADER, *[BAD] * 9))
    m = ingest(lake, WEATHER)
    assert m["status"] == "ingested" and m["rows"]["rejected"] == 9 and m["rows"]["output"] == 0
    assert len(read_csv(lake, outputs_for(WEATHER).rejected)) == 9 * PER_ROW


def test_bad_rows_first_and_good_after_still_write_every_reject(local_lake, monkeypatch, limit_settings):
    """The first pass stops writing rejects once the rows so far pass the limit; the file ends
    under it, so a second pass writes them all."""
    monkeypatch.setattr(readers, "CSV_BLOCK_BYTES", 1024)
    put(local_lake, WEATHER, lines(US_OBS_HEADER, *[BAD] * 40, *(good(i) for i in range(200))))
    m = ingest(local_lake, WEATHER)
    assert m["status"] == "ingested" and m["rows"]["rejected"] == 40 and m["rows"]["written"] == 200
    rejects = read_csv(local_lake, outputs_for(WEATHER).rejected)
    assert len(rejects) == 40 * PER_ROW and [r["line"] for r in rejects[::PER_ROW]] == [str(n) for n in range(2, 42)]


class CountingLake(LocalLake):
    """Counts the bytes each path's writers are given (whether committed or not)."""

    def __init__(self, root: Any) -> None:
        super().__init__(root)
        self.written: dict[str, int] = {}

    @contextlib.contextmanager
    def writer(self, path: str) -> Iterator[BinaryIO]:
        lake = self

        class Counted:
            def __init__(self, inner: BinaryIO) -> None:
                self.inner = inner

            def write(self, b: Any) -> int:
                lake.written[path] = lake.written.get(path, 0) + len(memoryview(b).cast("B"))
                return self.inner.write(b)

            def __getattr__(self, name: str) -> Any:
                return getattr(self.inner, name)

        with super().writer(path) as sink:
            yield Counted(sink)  # type: ignore[misc]


def test_a_file_of_bad_rows_writes_a_few_rejects_not_one_per_row(tmp_path, monkeypatch):
    """20,000 rows that are all rejected (the rejects file would be ~5 MB): once the rows
    read pass the limit no reject is written, and what was is discarded."""
    monkeypatch.setattr(readers, "CSV_BLOCK_BYTES", 16 * 1024)
    lake = CountingLake(tmp_path / "lake")
    put(lake, WEATHER, lines(US_OBS_HEADER, *[BAD] * 20_000))
    m = ingest(lake, WEATHER, limit=RejectLimit(0.5, 1000))
    out = outputs_for(WEATHER)
    assert m["error"]["reason"] == "too_many_rejects" and m["error"]["details"]["rows"]["read"] == 20_000
    assert lake.written[out.rejected] < 500_000  # the first batches' rejects, not 20,000 rows' worth
    assert not lake.exists(out.rejected) and not lake.exists(out.curated)


def test_the_setting_of_one_makes_every_reject_written(local_lake, monkeypatch):
    monkeypatch.setenv("FORECASTOPS_REJECT_RATIO_MAX", "1")
    get_settings.cache_clear()
    put(local_lake, WEATHER, lines(US_OBS_HEADER, *[BAD] * 1500))
    m = ingest(local_lake, WEATHER)
    assert m["status"] == "ingested" and m["rows"]["rejected"] == 1500
    assert len(read_csv(local_lake, outputs_for(WEATHER).rejected)) == 1500 * PER_ROW


def test_the_rejects_benchmark_runs_at_a_small_size(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT_DIR / "bench" / "bench_rejects.py"), "--rows", "3000", "--data", str(tmp_path)],
        cwd=ROOT_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {line[:18].strip(): line for line in done.stdout.splitlines()[2:]}
    assert rows["good"].endswith("ingested") and rows["bad, every reject"].endswith("ingested")
    assert rows["bad"].endswith("quarantined (too_many_rejects)")
