"""Raw text columns to the standard dataset, vectorised over record batches.

The checks are derived from the dataset's pydantic model (:func:`shared.datasets.spec`): a
test holds this engine's verdict equal to ``Model.model_validate`` row by row, while the
work here runs as pyarrow compute kernels so that millions of rows go through in seconds and
in constant memory.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from shared import clock
from shared.ingestion.datasets import (
    MAX_MAGNITUDE,
    ColumnSpec,
    DatasetSpec,
    EqualWhen,
    LessEqual,
    Weekday,
    spec,
)
from shared.ingestion.dates import parse_dates, sales_weeks
from shared.ingestion.formats import CONVERSIONS, Mapping, Source, canonical_unit, normalise_header, standard_unit
from shared.ingestion.readers import BadRecord, DataError, RawBatch
from shared.settings import Settings, get_settings

REJECT_SCHEMA = pa.schema(
    [
        ("line", pa.int64()),
        ("column", pa.string()),
        ("rule", pa.string()),
        ("raw_value", pa.string()),
        ("message", pa.string()),
    ]
)
_ARROW_TYPES = {"string": pa.string(), "date": pa.date32(), "float": pa.float64(), "int": pa.int64()}
_NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"


def latest_date(settings: Settings | None = None, now: dt.datetime | None = None) -> dt.date:
    """The last date a row may carry: the clock's today (UTC) plus ``future_days_max``
    (``FORECASTOPS_FUTURE_DAYS_MAX``); a row dated after it is rejected as ``future_date``."""
    today = (now or clock.now()).astimezone(dt.UTC).date()
    return today + dt.timedelta(days=(settings or get_settings()).future_days_max)


def output_schema(ds: DatasetSpec) -> pa.Schema:
    """The Arrow schema of the dataset's curated files."""
    return pa.schema([(c.name, _ARROW_TYPES[c.type]) for c in ds.columns])


@dataclass
class Context:
    """What a conversion knows of the file beyond its rows."""

    fields: dict[str, str]
    document: Any = None


@dataclass
class Violation:
    """Rows breaking one rule of one column: their mask, raw values and the message."""

    column: str
    rule: str
    mask: pa.Array
    raw: pa.Array
    message: str


@dataclass
class Converted:
    """One batch converted: its good rows, its rejects and the counts by rule."""

    good: pa.Table
    rejects: pa.Table
    rows_read: int
    rejected_rows: int
    per_rule: dict[str, int] = field(default_factory=dict)
    #: the line of each row of ``good``
    kept_lines: pa.Array | None = None


def _broadcast(value: Any, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(None if value is None else str(value), pa.string()), n)


class Converter:
    """Converts raw batches of one file with one mapping into standard rows and rejects."""

    def __init__(self, mapping: Mapping, ctx: Context, *, latest: dt.date | None = None) -> None:
        """``latest``: the last date a row may carry in the dataset's as-of column (default
        :func:`latest_date`, the clock's today plus the setting's days)."""
        self.mapping = mapping
        self.ds = spec(mapping.dataset)
        self.ctx = ctx
        self.latest = latest if latest is not None else latest_date()
        self.schema = output_schema(self.ds)
        self._nulls = pa.array(mapping.null_values, pa.string())
        self._units = {name: self._unit(name, src) for name, src in mapping.columns.items()}
        missing = [f for f in mapping.path_fields if f not in ctx.fields]
        if missing:
            raise DataError(
                "missing_path_field",
                f"format {mapping.id} takes {', '.join(missing)} from the path "
                f"({', '.join(f'{m}=...' for m in missing)}), and this path has no such segment",
                fields=missing,
            )

    def _unit(self, name: str, src: Source) -> tuple[float, float] | None:
        unit = src.unit
        if src.unit_path:
            found = self.ctx.document
            for part in src.unit_path.split("."):
                found = found.get(part) if isinstance(found, dict) else None
            if not isinstance(found, str):
                if src.optional:
                    return None
                raise DataError("format_mismatch", f"no unit at {src.unit_path!r} for {name}")
            unit = found
        if unit is None:
            return None
        try:
            dim, canon = canonical_unit(unit)
        except ValueError as e:
            raise DataError("unknown_unit", f"{name}: {e}") from e
        want = standard_unit(name)
        if want is None or dim != want[0]:
            raise DataError("unknown_unit", f"{name}: {unit!r} is not a {want[0] if want else 'unit'}")
        return CONVERSIONS[canon]

    # raw text -----------------------------------------------------------------------------
    def _raw(self, src: Source, batch: RawBatch) -> pa.Array:
        n = batch.num_rows
        if src.column is not None:
            col = batch.columns.get(normalise_header(src.column))
            return col if col is not None else _broadcast(None, n)
        if src.field is not None:
            return _broadcast(self.ctx.fields.get(src.field), n)
        if src.path is not None:
            found = self.ctx.document
            for part in src.path.split("."):
                found = found.get(part) if isinstance(found, dict) else None
            return _broadcast(found, n)
        return _broadcast(src.const, n)

    def convert(self, batch: RawBatch) -> Converted:
        n = batch.num_rows
        values: dict[str, pa.Array] = {}
        raws: dict[str, pa.Array] = {}
        violations: list[Violation] = []
        # columns often read the same raw column (date and issued_on both from "Obs Date"):
        # clean and parse each raw column once per batch
        self._cache: dict[tuple[Any, ...], Any] = {}
        for col in self.ds.columns:
            if col.name == "source":
                values[col.name] = _broadcast(self.mapping.id, n)
                continue
            src = self.mapping.columns[col.name]
            raw = self._raw(src, batch)
            raws[col.name] = raw
            value, found = self._column(col, src, raw, batch)
            values[col.name] = value
            violations += found
        violations += self._rules(values, raws)
        bad = [v.mask for v in violations]
        any_bad = _any(bad, n)
        good = pa.Table.from_arrays([values[c.name] for c in self.ds.columns], schema=self.schema)
        kept_lines = batch.lines
        if bad:
            keep = pc.invert(any_bad)
            good, kept_lines = good.filter(keep), batch.lines.filter(keep)
        rejects, per_rule = _rejects(violations, batch.lines)
        extra, extra_rules = _bad_records(batch.bad)
        for rule, count in extra_rules.items():
            per_rule[rule] = per_rule.get(rule, 0) + count
        if extra.num_rows:
            rejects = pa.concat_tables([rejects, extra]).sort_by([("line", "ascending")])
        rejected = (pc.sum(any_bad.cast(pa.int64())).as_py() or 0) if bad else 0
        self._cache = {}
        return Converted(good, rejects, n + len(batch.bad), rejected + len(batch.bad), per_rule, kept_lines)

    # one column -----------------------------------------------------------------------------
    def _cached(self, key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def _clean(self, raw: pa.Array) -> pa.Array:
        """Trimmed text, null where empty or a declared null value."""
        text = pc.utf8_trim_whitespace(raw)
        isnull = pc.or_kleene(pc.is_null(text), pc.is_in(text, value_set=self._nulls))
        return pc.if_else(isnull, pa.scalar(None, pa.string()), text)

    def _column(self, col: ColumnSpec, src: Source, raw: pa.Array, batch: RawBatch) -> tuple[pa.Array, list[Violation]]:
        text = self._cached(("clean", id(raw)), lambda: self._clean(raw))
        out: list[Violation] = []
        if col.type == "string":
            value = self._string(src, text)
        elif col.type == "date":
            value, failed = self._cached(
                ("date", id(raw), tuple(src.date_formats)), lambda: parse_dates(text, src.date_formats)
            )
            if failed is not None:
                out.append(Violation(col.name, "invalid_date", failed, raw, _date_msg(src)))
            if col.name == self.ds.as_of:
                # a row dated far beyond today is a typo (2062), never the lake's latest week
                future = pc.fill_null(pc.greater(value, pa.scalar(self.latest, pa.date32())), False)
                if pc.any(future).as_py():
                    message = f"dated after {self.latest.isoformat()}, too far beyond today"
                    out.append(Violation(col.name, "future_date", future, raw, message))
            if src.week is not None:
                value = sales_weeks(value)
        else:
            value = self._number(col, src, text, raw, batch, out)
        out += _constraints(col, value, raw, text)
        return value, out

    def _number(
        self, col: ColumnSpec, src: Source, text: pa.Array, raw: pa.Array, batch: RawBatch, out: list[Violation]
    ) -> pa.Array:
        """A numeric column: parsed, multiplied, converted to the standard unit, rounded, and
        for whole numbers checked and cast; every violation is added to ``out``."""
        value, failed = _parse_numbers(text)
        if failed is not None:
            out.append(Violation(col.name, "invalid_number", failed, raw, "not a number"))
        if src.multiply_by:
            factor_raw = batch.columns.get(normalise_header(src.multiply_by), _broadcast(None, len(raw)))
            factor, f_failed = _parse_numbers(pc.utf8_trim_whitespace(factor_raw))
            if f_failed is not None:
                message = f"{src.multiply_by} is not a number"
                out.append(Violation(col.name, "invalid_number", f_failed, factor_raw, message))
            value = pc.multiply(value, factor)
        conv = self._units.get(col.name)
        if conv is not None and conv != (1.0, 0.0):
            value = pc.add(pc.multiply(value, conv[0]), conv[1])
        value = _bounded(col, value, raw, out)
        if col.decimals is not None:
            # + 0.0 turns the -0.0 that rounding can leave into 0.0
            value = pc.add(pc.round(value, col.decimals), 0.0)
        return _whole(col, value, raw, out) if col.type == "int" else value

    def _string(self, src: Source, text: pa.Array) -> pa.Array:
        if src.case == "lower":
            text = pc.utf8_lower(text)
        elif src.case == "upper":
            text = pc.utf8_upper(text)
        if src.values:
            keys = pa.array(list(src.values), pa.string())
            idx = pc.index_in(text, value_set=keys)
            mapped = pc.take(pa.array(list(src.values.values()), pa.string()), idx)
            text = pc.coalesce(mapped, text)
        if src.pad:
            text = pc.utf8_lpad(text, src.pad, "0")
        return text

    def _rules(self, values: dict[str, pa.Array], raws: dict[str, pa.Array]) -> list[Violation]:
        out = []
        for rule in self.ds.rules:
            if isinstance(rule, LessEqual):
                broken = pc.fill_null(pc.greater(values[rule.low], values[rule.high]), False)
                msg, column = f"{rule.low} is above {rule.high}", rule.low
            elif isinstance(rule, EqualWhen):
                applies = pc.fill_null(pc.equal(values[rule.when_field], rule.when_value), False)
                differs = pc.fill_null(pc.not_equal(values[rule.left], values[rule.right]), False)
                broken = pc.and_(applies, differs)
                msg = f"{rule.left} must equal {rule.right} when {rule.when_field} is {rule.when_value}"
                column = rule.left
            elif isinstance(rule, Weekday):
                broken = pc.fill_null(pc.not_equal(pc.day_of_week(values[rule.field]), rule.weekday - 1), False)
                msg, column = f"{rule.field} is not an ISO weekday {rule.weekday}", rule.field
            else:  # pragma: no cover - a new rule type needs its vectorised form here
                raise TypeError(f"no vectorised form for {rule!r}")
            if pc.any(broken).as_py():
                out.append(
                    Violation(column, rule.name, broken, raws.get(column, values[column]).cast(pa.string()), msg)
                )
        return out


def _bounded(col: ColumnSpec, value: pa.Array, raw: pa.Array, out: list[Violation]) -> pa.Array:
    """Values beyond +-MAX_MAGNITUDE (or made infinite by a unit or a factor) rejected and
    nulled, before rounding, which would overflow (1e308 inches in mm is inf)."""
    finite = pc.fill_null(pc.is_finite(value), True)
    high = pc.or_(pc.fill_null(pc.greater(value, MAX_MAGNITUDE), False), pc.invert(finite))
    high = pc.and_(high, pc.invert(pc.fill_null(pc.less(value, 0), False)))
    low = pc.or_(pc.fill_null(pc.less(value, -MAX_MAGNITUDE), False), pc.invert(finite))
    low = pc.and_(low, pc.invert(high))
    for rule, mask, msg in (
        ("above_maximum", high, f"too large: beyond {MAX_MAGNITUDE:g}"),
        ("below_minimum", low, f"too small: beyond {-MAX_MAGNITUDE:g}"),
    ):
        if pc.any(mask).as_py():
            out.append(Violation(col.name, rule, mask, raw, msg))
            value = pc.if_else(mask, pa.scalar(None, pa.float64()), value)
    return value


def _whole(col: ColumnSpec, value: pa.Array, raw: pa.Array, out: list[Violation]) -> pa.Array:
    """Whole numbers as int64; too large or fractional values rejected (and nulled)."""
    # beyond int64 (1e20 cases): too large, not a crash of the cast below
    huge = pc.fill_null(pc.greater(pc.abs(value), 9.0e18), False)
    if pc.any(huge).as_py():
        out.append(Violation(col.name, "above_maximum", huge, raw, "too large for a whole number"))
        value = pc.if_else(huge, pa.scalar(None, pa.float64()), value)
    integral = pc.equal(pc.floor(value), value)
    not_int = pc.invert(pc.fill_null(integral, True))
    if pc.any(not_int).as_py():
        out.append(Violation(col.name, "not_integer", not_int, raw, "not a whole number"))
        value = pc.if_else(not_int, pa.scalar(None, pa.float64()), value)
    return value.cast(pa.int64())


def _any(masks: list[pa.Array], n: int) -> pa.Array:
    if not masks:
        return pa.repeat(pa.scalar(False), n)
    acc = masks[0]
    for m in masks[1:]:
        acc = pc.or_(acc, m)
    return acc


def _date_msg(src: Source) -> str:
    return f"not a date in the format {' or '.join(src.date_formats)}"


def _parse_numbers(text: pa.Array) -> tuple[pa.Array, pa.Array | None]:
    """Text to float64; the mask of non-null text that is not a number (None when clean)."""
    try:
        value = pc.cast(text, pa.float64())
        finite = pc.is_finite(value)
        if pc.all(pc.fill_null(finite, True)).as_py():
            return value, None
    except pa.ArrowInvalid:
        pass
    # slow path, only for batches with bad values: find them, null them, keep the rest
    # ("1e309" is a number's spelling, but no finite float: rejected, never written as inf)
    ok = pc.fill_null(pc.match_substring_regex(text, _NUMBER), True)
    value = pc.cast(pc.if_else(ok, text, pa.scalar(None, pa.string())), pa.float64())
    ok = pc.and_(ok, pc.fill_null(pc.is_finite(value), True))
    value = pc.if_else(ok, value, pa.scalar(None, pa.float64()))
    return value, pc.invert(ok)


#: datasets.CONTROL_CHARACTERS in RE2's spelling, for Arrow's kernels (a test holds them equal)
CONTROL_CHARACTERS = r"[\x00-\x1f\x7f-\x{9f}\x{2028}\x{2029}]"


def _constraints(col: ColumnSpec, value: pa.Array, raw: pa.Array, text: pa.Array) -> list[Violation]:
    """``text``: the cleaned raw text, null where the raw value was empty or a declared null
    token (``M``, ``NA``): a required column is missing whichever way the null arrived."""
    out = []
    if not col.nullable:
        # a value that failed to parse is already reported; only report what was null
        missing = pc.fill_null(pc.and_(pc.is_null(value), pc.is_null(text)), True)
        if pc.any(missing).as_py():
            out.append(Violation(col.name, "missing_value", missing, raw, f"{col.name} is required"))
    checks: list[tuple[str, Callable[[], pa.Array], str]] = []
    if col.type == "string" and col.pattern is None and col.choices is None:
        checks.append(
            (
                "control_character",
                lambda: pc.match_substring_regex(value, CONTROL_CHARACTERS),
                "holds a control character (a NUL, a line break, an escape)",
            )
        )
    if col.ge is not None:
        checks.append(("below_minimum", lambda: pc.less(value, col.ge), f"below the minimum {col.ge:g}"))
    if col.le is not None:
        checks.append(("above_maximum", lambda: pc.greater(value, col.le), f"above the maximum {col.le:g}"))
    if col.pattern is not None:
        checks.append(
            (
                "pattern_mismatch",
                lambda: pc.invert(pc.match_substring_regex(value, col.pattern)),
                f"does not match {col.pattern}",
            )
        )
    if col.min_length is not None:
        checks.append(
            ("too_short", lambda: pc.less(pc.utf8_length(value), col.min_length), f"shorter than {col.min_length}")
        )
    if col.choices is not None:
        allowed = pa.array(col.choices, pa.string())
        checks.append(
            (
                "invalid_choice",
                lambda: pc.invert(pc.is_in(value, value_set=allowed)),
                f"not one of {', '.join(col.choices)}",
            )
        )
    for rule, make, msg in checks:
        broken = pc.fill_null(make(), False)
        if pc.any(broken).as_py():
            out.append(Violation(col.name, rule, broken, raw, msg))
    return out


def _rejects(violations: list[Violation], lines: pa.Array) -> tuple[pa.Table, dict[str, int]]:
    parts = []
    per_rule: dict[str, int] = {}
    for v in violations:
        idx = pc.indices_nonzero(v.mask)
        per_rule[v.rule] = per_rule.get(v.rule, 0) + len(idx)
        k = len(idx)
        parts.append(
            pa.table(
                [
                    pc.take(lines, idx),
                    pa.repeat(pa.scalar(v.column), k),
                    pa.repeat(pa.scalar(v.rule), k),
                    pc.take(v.raw.cast(pa.string()), idx),
                    pa.repeat(pa.scalar(v.message), k),
                ],
                schema=REJECT_SCHEMA,
            )
        )
    if not parts:
        return REJECT_SCHEMA.empty_table(), per_rule
    table = pa.concat_tables(parts)
    return table.sort_by([("line", "ascending")]), per_rule


def _bad_records(bad: list[BadRecord]) -> tuple[pa.Table, dict[str, int]]:
    per_rule: dict[str, int] = {}
    for b in bad:
        per_rule[b.rule] = per_rule.get(b.rule, 0) + 1
    table = pa.table(
        [
            pa.array([b.line for b in bad], pa.int64()),
            pa.array(["(row)"] * len(bad)),
            pa.array([b.rule for b in bad]),
            pa.array([b.text for b in bad]),
            pa.array([b.message for b in bad]),
        ],
        schema=REJECT_SCHEMA,
    )
    return table, per_rule
