"""The standard datasets, schema version 1: the contract with training and scoring.

Each dataset is one pydantic model. The model is the single statement of its rules: field
types, ``ge``/``le`` bounds, patterns, ``Literal`` enums and the cross-field rules listed in
``__rules__``. Validating one row goes through pydantic (``Model.model_validate``); the
ingestion engine derives its vectorised checks from the same models (:func:`spec`), and a
test holds the two verdicts equal.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, ClassVar, Literal, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared import sources

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class LessEqual:
    """``low`` <= ``high`` whenever both are present; violations carry rule ``name``."""

    name: str
    low: str
    high: str

    def check(self, row: dict[str, Any]) -> bool:
        a, b = row.get(self.low), row.get(self.high)
        return a is None or b is None or a <= b


@dataclass(frozen=True)
class EqualWhen:
    """``left`` == ``right`` on rows where ``when_field`` == ``when_value``."""

    name: str
    left: str
    right: str
    when_field: str
    when_value: str

    def check(self, row: dict[str, Any]) -> bool:
        if row.get(self.when_field) != self.when_value:
            return True
        return row.get(self.left) == row.get(self.right)


@dataclass(frozen=True)
class Weekday:
    """The date in ``field`` falls on ISO weekday ``weekday`` (1 = Monday)."""

    name: str
    field: str
    weekday: int

    def check(self, row: dict[str, Any]) -> bool:
        value = row.get(self.field)
        return value is None or value.isoweekday() == self.weekday


Rule = LessEqual | EqualWhen | Weekday


#: what the engine rejects as ``control_character`` in a free-text column (an id, a region)
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: the engine's ``above_maximum`` / ``below_minimum`` for any number: beyond it nothing is a quantity
MAX_MAGNITUDE = 1e15
#: the first year a date may have (the engine's ``invalid_date`` for "06/28/26" read as 0026)
MIN_YEAR = 1000


class _Dataset(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    __dataset__: ClassVar[str]
    __key__: ClassVar[tuple[str, ...]]
    __rules__: ClassVar[tuple[Rule, ...]] = ()
    #: the date a row was known by, which cannot lie far beyond today: ingestion rejects a row
    #: dated more than ``future_days_max`` days after the clock's today (``future_date``)
    __as_of__: ClassVar[str | None] = None

    @model_validator(mode="after")
    def _cross_field_rules(self) -> _Dataset:
        row = self.__dict__
        for name, value in row.items():
            if isinstance(value, str) and name != "source" and CONTROL_CHARACTERS.search(value):
                raise ValueError(f"{name} holds a control character")
            if isinstance(value, int | float) and abs(value) > MAX_MAGNITUDE:
                raise ValueError(f"{name} is beyond {MAX_MAGNITUDE:g}")
            if isinstance(value, dt.date) and value.year < MIN_YEAR:
                raise ValueError(f"{name}: a year has four digits")
        broken = [rule.name for rule in self.__rules__ if not rule.check(row)]
        if broken:
            raise ValueError(f"breaks rule(s): {', '.join(broken)}")
        return self


ZipCode = Annotated[str, Field(pattern=r"^[0-9]{5}$")]
Celsius = Annotated[float, Field(ge=-90, le=60, json_schema_extra={"decimals": 2})]
Millimetres = Annotated[float, Field(ge=0, json_schema_extra={"decimals": 2})]
Units = Annotated[int, Field(ge=0)]
Count = Annotated[int, Field(ge=0)]


class WeatherDaily(_Dataset):
    """One day of weather for one zip code: observed, or forecast as issued on a date."""

    __dataset__ = "weather_daily"
    __key__ = ("zip_code", "date", "kind", "issued_on")
    __rules__ = (
        LessEqual("tmin_above_tmax", "tmin_c", "tmax_c"),
        EqualWhen("observed_issued_on_not_date", "issued_on", "date", "kind", "observed"),
    )
    # a forecast's date runs up to 16 days past its issue: the issue date is the one known
    __as_of__ = "issued_on"

    zip_code: ZipCode
    date: dt.date
    kind: Literal["observed", "forecast"]
    issued_on: dt.date
    tmax_c: Celsius
    tmin_c: Celsius
    precip_mm: Millimetres
    #: the one weather value that may be missing (many stations do not measure snow)
    snow_mm: Millimetres | None
    source: str


class ShipmentsWeekly(_Dataset):
    """Units shipped to and returned by one store for one SKU in the week from ``week_start``."""

    __dataset__ = "shipments_weekly"
    __key__ = ("store_id", "sku", "week_start")
    __rules__ = (Weekday("week_start_not_monday", "week_start", 1),)
    __as_of__ = "week_start"

    store_id: Annotated[str, Field(min_length=1)]
    sku: Annotated[str, Field(min_length=1)]
    week_start: dt.date
    units_shipped: Units
    units_returned: Units
    source: str


class StoreDemographics(_Dataset):
    """A store's location, format and the census figures of its zip code."""

    __dataset__ = "store_demographics"
    __key__ = ("store_id",)

    store_id: Annotated[str, Field(min_length=1)]
    zip_code: ZipCode
    region: Annotated[str, Field(min_length=1)]
    store_format: Literal["large", "small"]
    population: Count | None
    households: Count | None
    median_household_income: Annotated[float, Field(ge=0)] | None
    median_age: Annotated[float, Field(ge=0, le=120)] | None
    source: str


MODELS: dict[str, type[_Dataset]] = {m.__dataset__: m for m in (WeatherDaily, ShipmentsWeekly, StoreDemographics)}
#: raw source folder (``raw/<source>/``) -> the dataset it feeds (the registry's, :mod:`shared.sources`)
SOURCES: dict[str, str] = {s.name: s.dataset for s in sources.SOURCES}
if set(MODELS) != set(sources.DATASETS):
    raise RuntimeError(f"the registry's datasets {sorted(sources.DATASETS)} are not the models' {sorted(MODELS)}")


@dataclass(frozen=True)
class ColumnSpec:
    """What the vectorised engine needs to know of one standard column."""

    name: str
    type: Literal["string", "date", "float", "int"]
    nullable: bool
    ge: float | None = None
    le: float | None = None
    pattern: str | None = None
    min_length: int | None = None
    choices: tuple[str, ...] | None = None
    decimals: int | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """One curated dataset: its columns, key, rules and row model."""

    name: str
    columns: tuple[ColumnSpec, ...]
    key: tuple[str, ...]
    rules: tuple[Rule, ...]
    model: type[_Dataset]
    #: the column whose date may not lie beyond the clock (the model's ``__as_of__``), or None
    as_of: str | None = None

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> ColumnSpec:
        return next(c for c in self.columns if c.name == name)


_TYPES: dict[Any, Literal["string", "date", "float", "int"]] = {
    str: "string",
    dt.date: "date",
    float: "float",
    int: "int",
}


def _column_spec(name: str, annotation: Any, metadata: list[Any], extra: Any) -> ColumnSpec:
    nullable = False
    args = get_args(annotation)
    if args and type(None) in args:  # Optional[...] / X | None
        nullable = True
        (annotation,) = [a for a in args if a is not type(None)]
    while get_origin(annotation) is Annotated:
        annotation, *more = get_args(annotation)
        for item in more:
            metadata = [*metadata, *getattr(item, "metadata", [])]
            extra = getattr(item, "json_schema_extra", None) or extra
            if isinstance(item, at.BaseMetadata):
                metadata.append(item)
    choices = None
    if get_origin(annotation) is Literal:
        choices, annotation = tuple(get_args(annotation)), str
    found: dict[str, Any] = {}
    for m in metadata:
        for attr in ("ge", "le", "pattern", "min_length"):
            if getattr(m, attr, None) is not None:
                found[attr] = getattr(m, attr)
    return ColumnSpec(
        name=name,
        type=_TYPES[annotation],
        nullable=nullable,
        choices=choices,
        decimals=(extra or {}).get("decimals"),
        **found,
    )


@cache
def spec(dataset: str) -> DatasetSpec:
    """The dataset's columns (in contract order), key and rules, derived from its model."""
    try:
        model = MODELS[dataset]
    except KeyError:
        raise KeyError(f"unknown dataset {dataset!r}; known: {', '.join(MODELS)}") from None
    columns = tuple(
        _column_spec(name, f.annotation, list(f.metadata), f.json_schema_extra)
        for name, f in model.model_fields.items()
    )
    return DatasetSpec(dataset, columns, model.__key__, model.__rules__, model, model.__as_of__)
