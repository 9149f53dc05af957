"""The pydantic models are the one statement of the rules: the vectorised engine must reach
the same verdict as ``Model.model_validate`` on every row."""

from __future__ import annotations

import datetime as dt
import itertools
import random

import pyarrow as pa
import pytest
from pydantic import ValidationError

from shared.ingestion.convert import Context, Converter
from shared.ingestion.datasets import MODELS, spec
from shared.ingestion.formats import Mapping, Source
from shared.ingestion.readers import RawBatch

EDGE_VALUES = {
    "zip_code": ["98101", "02134", "1234", "123456", "abcde", ""],
    "date": ["2026-01-31", "2026-02-30", "31/01/2026", "", "0026-01-31", "0000-01-01", "10000-01-01"],
    "issued_on": ["2026-01-31", "2026-01-30", ""],
    "kind": ["observed", "forecast", "Observed", ""],
    "tmax_c": ["20", "60", "60.01", "-90", "-90.5", "x", ""],
    "tmin_c": ["10", "25", "-91", ""],
    "precip_mm": ["0", "-0.1", "3.5", "", "1e309", "1e308", "2e15"],
    "snow_mm": ["0", "-1", ""],
    "store_id": ["S1", "", "S\x001", "S1\nS2"],
    "sku": ["K-1", ""],
    "week_start": ["2026-01-26", "2026-01-27", "nope"],
    "units_shipped": ["0", "12", "-1", "1.5", "7.0", ""],
    "units_returned": ["0", "3", ""],
    "region": ["west", "", "we\x1bst"],
    "store_format": ["large", "small", "medium", ""],
    "population": ["100", "-5", "2.5", "", "1e20", "-1e309"],
    "households": ["40", ""],
    "median_household_income": ["50000", "-1", ""],
    "median_age": ["38.5", "121", ""],
}


def identity_mapping(dataset: str) -> Mapping:
    cols = {c: Source(column=c) for c in spec(dataset).column_names if c != "source"}
    return Mapping(id="standard", dataset=dataset, description="the standard layout itself", reader="csv", columns=cols)


def _python_value(column_type: str, text: str):
    """What a careful hand-written reader would hand pydantic for one raw text."""
    if text == "":
        return None
    if column_type in ("float", "int"):
        try:
            return float(text)
        except ValueError:
            return text
    if column_type == "date":
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            return text
    return text


def pydantic_verdict(dataset: str, row: dict[str, str]) -> bool:
    ds = spec(dataset)
    values = {c.name: _python_value(c.type, row[c.name]) for c in ds.columns if c.name != "source"}
    try:
        MODELS[dataset].model_validate({**values, "source": "standard"})
    except ValidationError:
        return False
    return True


def engine_verdicts(dataset: str, rows: list[dict[str, str]]) -> list[bool]:
    conv = Converter(identity_mapping(dataset), Context({}))
    names = [c for c in spec(dataset).column_names if c != "source"]
    batch = RawBatch(
        {n: pa.array([r[n] for r in rows], pa.string()) for n in names},
        pa.array(range(2, len(rows) + 2), pa.int64()),
    )
    res = conv.convert(batch)
    bad_lines = set(res.rejects.column("line").to_pylist())
    return [line not in bad_lines for line in range(2, len(rows) + 2)]


def sample_rows(dataset: str, n: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    names = [c for c in spec(dataset).column_names if c != "source"]
    good = {name: EDGE_VALUES[name][0] for name in names}
    rows = [good]
    # every single edge value on an otherwise good row, then random combinations
    for name in names:
        rows += [{**good, name: v} for v in EDGE_VALUES[name][1:]]
    rows += [{name: rng.choice(EDGE_VALUES[name]) for name in names} for _ in range(n)]
    return rows


@pytest.mark.parametrize("dataset", sorted(MODELS))
def test_vectorised_checks_agree_with_the_pydantic_model_row_by_row(dataset):
    rows = sample_rows(dataset, 400, seed=42)
    expected = [pydantic_verdict(dataset, r) for r in rows]
    got = engine_verdicts(dataset, rows)
    disagreements = [(r, e) for r, e, g in zip(rows, expected, got, strict=True) if e != g]
    assert disagreements == []
    assert any(expected) and not all(expected)  # the sample exercises both verdicts


def test_spec_is_derived_from_the_model():
    weather = spec("weather_daily")
    assert weather.column_names == [
        "zip_code",
        "date",
        "kind",
        "issued_on",
        "tmax_c",
        "tmin_c",
        "precip_mm",
        "snow_mm",
        "source",
    ]
    assert weather.key == ("zip_code", "date", "kind", "issued_on")
    tmax = weather.column("tmax_c")
    assert (tmax.type, tmax.nullable, tmax.ge, tmax.le, tmax.decimals) == ("float", False, -90, 60, 2)
    assert weather.column("kind").choices == ("observed", "forecast")
    assert weather.column("zip_code").pattern == "^[0-9]{5}$"
    assert spec("shipments_weekly").column("units_shipped").type == "int"
    assert [r.name for r in spec("shipments_weekly").rules] == ["week_start_not_monday"]
    with pytest.raises(KeyError, match="unknown dataset"):
        spec("sales")


def test_every_combination_of_weather_rules_is_judged_alike():
    names = ["tmax_c", "tmin_c", "kind", "issued_on"]
    base = {n: EDGE_VALUES[n][0] for n in spec("weather_daily").column_names if n != "source"}
    rows = [
        dict(base, **dict(zip(names, combo, strict=True)))
        for combo in itertools.product(*(EDGE_VALUES[n] for n in names))
    ]
    assert engine_verdicts("weather_daily", rows) == [pydantic_verdict("weather_daily", r) for r in rows]
