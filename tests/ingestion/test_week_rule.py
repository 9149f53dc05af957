"""One week rule (shared/weeks/calendar.py ``week_start``): a sales week runs Sunday..Saturday
and is named by its Monday, and a mapping's ``week = "sales_week"`` sums a row into the week the
index of weeks puts its day in, for both shipments layouts (daily deliveries, ERP week-ending)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from shared.ingestion.convert import Context, Converter
from shared.ingestion.formats import MappingFileError, current_mappings, load_mapping
from shared.ingestion.readers import RawBatch
from shared.ingestion.service import ingest
from shared.weeks.calendar import week_of, week_start
from tests.drivers import DELIVERIES_HEADER, ERP_HEADER, lines, put, read_csv

SUNDAY, MONDAY, SATURDAY = dt.date(2026, 11, 22), dt.date(2026, 11, 23), dt.date(2026, 11, 28)
WEEK = "2026-11-23"  # Sunday 2026-11-22 .. Saturday 2026-11-28


def _deliveries(day: dt.date) -> str:
    return lines(DELIVERIES_HEADER, f"S1,K1,{day.isoformat()}T06:30:00,5,1")


def _erp(day: dt.date) -> str:
    return lines(ERP_HEADER, f"S1,K1,{day:%Y/%m/%d},2,6,1")


LAYOUTS = {
    "shipments_daily_deliveries_csv": ("raw/shipments/deliveries/d.csv", _deliveries),
    "shipments_erp_weekly_csv": ("raw/shipments/erp/w.csv", _erp),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("day", [SUNDAY, MONDAY, SATURDAY], ids=["sunday", "monday", "saturday"])
def test_a_row_lands_in_the_week_the_index_puts_its_day_in(lake, layout, day):
    path, make = LAYOUTS[layout]
    put(lake, path, make(day))
    m = ingest(lake, path)
    assert m["status"] == "ingested" and m["format"]["id"] == layout
    rows = read_csv(lake, m["outputs"]["curated"]["path"])
    assert [r["week_start"] for r in rows] == [week_of(day)] == [WEEK]
    assert m["coverage"]["weeks"] == [WEEK]


def test_a_sunday_monday_and_saturday_delivery_are_summed_into_one_week(local_lake):
    path = "raw/shipments/deliveries/week.csv"
    rows = [f"S1,K1,{d.isoformat()},{q},0" for d, q in ((SUNDAY, 1), (MONDAY, 2), (SATURDAY, 4))]
    put(local_lake, path, lines(DELIVERIES_HEADER, *rows))
    m = ingest(local_lake, path)
    curated = read_csv(local_lake, m["outputs"]["curated"]["path"])
    assert [(r["week_start"], r["units_shipped"]) for r in curated] == [(WEEK, "7")]
    assert m["coverage"]["weeks"] == [WEEK]


def test_an_erp_week_ending_saturday_names_the_same_week_as_the_days_it_ends(local_lake):
    put(local_lake, "raw/shipments/erp/w.csv", _erp(SATURDAY))
    put(local_lake, "raw/shipments/deliveries/d.csv", lines(DELIVERIES_HEADER, *(f"S1,K1,{d},1,0" for d in _week())))
    weeks = set()
    for path in ("raw/shipments/erp/w.csv", "raw/shipments/deliveries/d.csv"):
        m = ingest(local_lake, path)
        weeks |= {r["week_start"] for r in read_csv(local_lake, m["outputs"]["curated"]["path"])}
    assert weeks == {WEEK} == {week_of(d) for d in _week()}


def _week() -> list[dt.date]:
    return [SUNDAY + dt.timedelta(days=k) for k in range(7)]


def _convert(mapping_id: str, column: str, texts: list[str]) -> list[dt.date]:
    mapping = current_mappings()[mapping_id]
    header = {
        "shipments_daily_deliveries_csv": DELIVERIES_HEADER,
        "shipments_erp_weekly_csv": ERP_HEADER,
    }[mapping_id]
    n = len(texts)
    raw = {name.lower(): pa.array(["1"] * n, pa.string()) for name in header.split(",")}
    raw |= {"store": pa.array(["S1"] * n), "store nbr": pa.array(["S1"] * n), column.lower(): pa.array(texts)}
    res = Converter(mapping, Context({}), latest=dt.date(2030, 1, 1)).convert(
        RawBatch(raw, pa.array(range(2, n + 2), pa.int64()))
    )
    assert res.rejected_rows == 0
    return res.good.column("week_start").to_pylist()


def test_every_day_of_two_years_converts_to_the_calendars_week_in_both_layouts():
    days = [dt.date(2025, 12, 20) + dt.timedelta(days=k) for k in range(400)]  # two year ends
    want = [week_start(d) for d in days]
    assert _convert("shipments_daily_deliveries_csv", "delivery_date", [d.isoformat() for d in days]) == want
    assert _convert("shipments_erp_weekly_csv", "Week Ending", [f"{d:%Y/%m/%d}" for d in days]) == want
    assert all(w.weekday() == 0 and -5 <= (w - d).days <= 1 for w, d in zip(want, days, strict=True))


def test_the_week_rule_holds_at_the_ends_of_the_calendar():
    assert week_start(dt.date(9999, 12, 31)) == dt.date(9999, 12, 27)  # no overflow past 9999
    assert week_start(dt.date(1, 1, 1)) == dt.date(1, 1, 1)
    assert week_of(dt.datetime(2026, 11, 22, 23, 59)) == WEEK


def test_the_former_name_monday_is_read_as_the_sales_week(tmp_path):
    old = (tmp_path / "mine.toml", 'week = "monday"')
    bad = (tmp_path / "bad.toml", 'week = "iso_monday"')
    for file, week in (old, bad):
        file.write_text(
            f'id = "{file.stem}"\ndataset = "shipments_weekly"\ndescription = "x"\nreader = "csv"\n'
            '[columns]\nstore_id = { column = "s" }\nsku = { column = "k" }\n'
            f'week_start = {{ column = "d", {week} }}\nunits_shipped = {{ column = "q" }}\n'
            'units_returned = { column = "r" }\n'
        )
    assert load_mapping(old[0]).columns["week_start"].week == "sales_week"
    with pytest.raises(MappingFileError, match="bad.toml.*week"):
        load_mapping(bad[0])
    shipped = [m for m in current_mappings().values() if m.dataset == "shipments_weekly"]
    assert {m.columns["week_start"].week for m in shipped} == {"sales_week"}
