"""Raw text to dates, vectorised: the formats a mapping declares, a trailing time of day
allowed, rolled-over days ("2026-02-30") and years beyond four digits refused; and a day to
its sales week by the calendar's one rule (:func:`shared.weeks.calendar.week_start`)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shared.ingestion.datasets import MIN_YEAR
from shared.weeks.calendar import week_start

#: "2026-01-27" + "T06:30:00Z" / " 10:00" / ""
_DATE_AND_TIME = (
    r"^(?P<d>[^ T]+)(?P<t>(?:[T ][0-9]{1,2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?(?:Z|[+-][0-9]{2}:?[0-9]{2})?)?)$"
)


def parse_dates(text: pa.Array, formats: list[str]) -> tuple[pa.Array, pa.Array | None]:
    """Text to date32 with the first format that fits (a trailing time is allowed).

    A batch holds few distinct dates (a day's weather for thousands of zips): the distinct
    texts are parsed, and the result spread back by index.
    """
    enc = pc.dictionary_encode(text)
    value, failed = _parse_distinct_dates(enc.dictionary, formats)
    value = pc.take(value, enc.indices)
    if failed is not None:
        failed = pc.fill_null(pc.take(failed, enc.indices), False)
    return value, failed


def _parse_distinct_dates(text: pa.Array, formats: list[str]) -> tuple[pa.Array, pa.Array | None]:
    if not formats:
        raise ValueError("a date column needs at least one date format")
    value = pc.strptime(text, format=formats[0], unit="s", error_is_null=True)
    for fmt in formats[1:]:
        value = pc.coalesce(value, pc.strptime(text, format=fmt, unit="s", error_is_null=True))
    parsed_text = text
    failed = pc.and_(pc.is_valid(text), pc.is_null(value))
    if pc.any(failed).as_py():
        # a date followed by a time of day ("2026-01-27T06:30:00", "01/31/2012 10:00"):
        # parse the date part, and accept the rest only if it is a time
        parts = pc.extract_regex(pc.if_else(failed, text, pa.scalar(None, pa.string())), _DATE_AND_TIME)
        date_part = pc.struct_field(parts, "d")
        for fmt in formats:
            value = pc.coalesce(value, pc.strptime(date_part, format=fmt, unit="s", error_is_null=True))
        parsed_text = pc.coalesce(date_part, text)
    value = _reject_rolled_over(value, parsed_text, formats)
    # strptime's %Y takes "26" as the year 26 and "10000" as 10000: a year is four digits,
    # and one Python's dates cannot hold (0, 10000) would crash whoever reads the row
    year = pc.year(value)
    four_digits = pc.fill_null(pc.and_(pc.greater_equal(year, MIN_YEAR), pc.less_equal(year, MAX_YEAR)), True)
    value = pc.if_else(four_digits, value, pa.scalar(None, value.type))
    failed = pc.and_(pc.is_valid(text), pc.is_null(value))
    return pc.cast(value, pa.date32(), safe=False), (failed if pc.any(failed).as_py() else None)


#: the last year a date may have: four digits, as ISO dates have them
MAX_YEAR = 9999
_LEADING_ZEROS = r"(^|[^0-9])0+([0-9])"


def _reject_rolled_over(value: pa.Array, text: pa.Array, formats: list[str]) -> pa.Array:
    """Null the dates strptime rolled over ("2026-02-30" -> March 2nd).

    Arrow's strptime does not check the day against the month; a rolled-over date lands on
    day 1 to 3 of the next month, so only those rows are checked, by formatting the parsed
    date back and comparing it with the text (leading zeros aside).
    """
    suspect = pc.fill_null(pc.less_equal(pc.day(value), 3), False)
    if not pc.any(suspect).as_py():
        return value
    idx = pc.indices_nonzero(suspect)
    ts, raw = pc.take(value, idx), pc.replace_substring_regex(pc.take(text, idx), _LEADING_ZEROS, r"\1\2")
    same = pa.repeat(pa.scalar(False), len(idx))
    for fmt in formats:
        back = pc.replace_substring_regex(pc.strftime(ts, format=fmt), _LEADING_ZEROS, r"\1\2")
        same = pc.or_(same, pc.fill_null(pc.equal(back, raw), False))
    bad = np.zeros(len(value), bool)
    bad[idx.to_numpy()[~same.to_numpy(zero_copy_only=False)]] = True
    return pc.if_else(pa.array(bad), pa.scalar(None, value.type), value)


def sales_weeks(value: pa.Array) -> pa.Array:
    """Each date's sales week, named by its Monday (date32): :func:`week_start` applied to
    the distinct dates of the batch (a few hundred at most) and spread back, so that the
    week a row is summed into is the week the index of weeks puts its day in."""
    enc = pc.dictionary_encode(value)
    starts = [None if d is None else week_start(d) for d in enc.dictionary.to_pylist()]
    return pc.take(pa.array(starts, pa.date32()), enc.indices)
