"""Raw formats: declarative mapping files, one per vendor layout, and how a file finds its own.

A mapping file (TOML, in ``shared/ingestion/mappings/`` or the extra folder the settings
name) says which raw columns, JSON paths, path fields or constants feed which standard
column, in which unit and date format, and how rows fold into the dataset's key. docs/raw-formats.md
documents the language; :class:`Mapping` is its schema, so a mistake in a mapping file
fails loudly when the mappings are loaded, naming the file.
"""

from __future__ import annotations

import codecs
import hashlib
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.ingestion.datasets import MODELS, spec
from shared.settings import Settings, get_settings

MAPPINGS_DIR = Path(__file__).with_name("mappings")

#: unit spellings -> (dimension, canonical name)
UNITS: dict[str, tuple[str, str]] = {
    **{u: ("temperature", "degC") for u in ("degc", "°c", "c", "celsius")},
    **{u: ("temperature", "degF") for u in ("degf", "°f", "f", "fahrenheit")},
    **{u: ("temperature", "tenths_degC") for u in ("tenths_degc", "0.1°c")},
    **{u: ("length", "mm") for u in ("mm", "millimetre", "millimeter", "millimetres", "millimeters")},
    **{u: ("length", "cm") for u in ("cm", "centimetre", "centimeter", "centimetres", "centimeters")},
    **{u: ("length", "in") for u in ("in", "inch", "inches", '"')},
    **{u: ("length", "tenths_mm") for u in ("tenths_mm", "0.1mm")},
}
#: the unit each standard column is stored in, by the column name's suffix
STANDARD_UNITS = {"_c": ("temperature", "degC"), "_mm": ("length", "mm")}
#: x_standard = x * scale + offset
CONVERSIONS: dict[str, tuple[float, float]] = {
    "degC": (1.0, 0.0),
    "degF": (5 / 9, -32 * 5 / 9),
    "tenths_degC": (0.1, 0.0),
    "mm": (1.0, 0.0),
    "cm": (10.0, 0.0),
    "in": (25.4, 0.0),
    "tenths_mm": (0.1, 0.0),
}
AGGREGATES = ("sum", "min", "max", "mean")


def canonical_unit(unit: str) -> tuple[str, str]:
    """The unit's canonical form and kind; ValueError if the unit is unknown."""
    try:
        return UNITS[unit.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown unit {unit!r}; known: {', '.join(sorted(set(UNITS)))}") from None


def standard_unit(column: str) -> tuple[str, str] | None:
    """The unit a column's name suffix implies, or None."""
    return next((u for suffix, u in STANDARD_UNITS.items() if column.endswith(suffix)), None)


def normalise_header(name: str) -> str:
    """Raw headers match case- and whitespace-insensitively."""
    return " ".join(name.split()).lower()


class Source(BaseModel):
    """Where one standard column comes from, and how its raw text becomes a value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str | None = None
    path: str | None = None
    field: str | None = None
    const: str | float | int | None = None
    #: the raw column may be absent from a file (the standard column is then null)
    optional: bool = False
    unit: str | None = None
    unit_path: str | None = None
    multiply_by: str | None = None
    date_format: str | list[str] = "iso"
    #: ``sales_week``: the date stands for its sales week (Sunday..Saturday), stored as the
    #: week's Monday (:func:`shared.weeks.calendar.week_start`); ``monday``, its former name,
    #: is read as ``sales_week``
    week: Literal["sales_week", "monday"] | None = None
    case: Literal["lower", "upper"] | None = None
    values: dict[str, str] = Field(default_factory=dict)
    pad: int | None = Field(None, ge=1, le=64)

    @field_validator("date_format")
    @classmethod
    def _some_date_format(cls, v: str | list[str]) -> str | list[str]:
        formats = [v] if isinstance(v, str) else v
        if not formats or any(not f.strip() for f in formats):
            raise ValueError("date_format is 'iso', a strptime format or a non-empty list of them, none empty")
        return v

    @field_validator("week")
    @classmethod
    def _one_week_rule(cls, v: str | None) -> str | None:
        # one rule for every mapping: the old name is an alias, never a second rule
        return "sales_week" if v == "monday" else v

    @model_validator(mode="after")
    def _one_source(self) -> Source:
        given = [k for k in ("column", "path", "field", "const") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of column, path, field, const (got {given or 'none'})")
        if self.unit is not None:
            canonical_unit(self.unit)
        if self.unit and self.unit_path:
            raise ValueError("give unit or unit_path, not both")
        return self

    @property
    def date_formats(self) -> list[str]:
        formats = [self.date_format] if isinstance(self.date_format, str) else self.date_format
        return ["%Y-%m-%d" if f == "iso" else f for f in formats]


class Mapping(BaseModel):
    """One raw layout of one dataset."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9_]+$")
    dataset: str
    description: str
    reader: Literal["csv", "json", "jsonl"]
    #: ``content``: found by its required raw columns; ``path-only``: only when the raw path
    #: names it (``format=<id>``), for layouts whose columns are the same as another's
    detect: Literal["content", "path-only"] = "content"
    encoding: str = "utf-8"
    delimiter: str = Field(",", min_length=1, max_length=1)
    null_values: list[str] = Field(default_factory=lambda: [""])
    #: json: the dotted path of the records, either an array of objects or an object of
    #: equally long arrays (Open-Meteo's ``daily``)
    records: str | None = None
    columns: dict[str, Source]
    aggregate: dict[str, Literal["sum", "min", "max", "mean"]] = Field(default_factory=dict)

    sha256: str = ""
    file: str = ""

    @field_validator("encoding")
    @classmethod
    def _text_encoding(cls, v: str) -> str:
        try:
            info = codecs.lookup(v)
        except LookupError:
            raise ValueError(f"unknown encoding {v!r}") from None
        if not getattr(info, "_is_text_encoding", True):
            raise ValueError(f"{v!r} is not a text encoding (bytes to text); name one such as 'utf-8' or 'latin-1'")
        return v

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        if v not in MODELS:
            raise ValueError(f"unknown dataset {v!r}; known: {', '.join(MODELS)}")
        return v

    @model_validator(mode="after")
    def _fits_dataset(self) -> Mapping:
        ds = spec(self.dataset)
        names = set(ds.column_names)
        problems = []
        unknown = sorted(set(self.columns) - names)
        if unknown:
            problems.append(f"columns not in {self.dataset}: {', '.join(unknown)}")
        missing = sorted(names - set(self.columns) - {"source"})
        if missing:
            problems.append(f"no source for {self.dataset} column(s): {', '.join(missing)}")
        for name, src in self.columns.items():
            if name in names:
                problems += self._source_problems(name, src, ds.column(name).type)
                if not ds.column(name).nullable:
                    problems += self._required_problems(name, src)
        if self.aggregate:
            key = set(ds.key)
            free = sorted(names - key - set(self.aggregate) - {"source"})
            if free:
                problems.append(f"aggregating to the key: say how to fold {', '.join(free)}")
            if key & set(self.aggregate):
                problems.append("key columns cannot be aggregated")
        if self.reader == "json" and not self.records:
            problems.append("reader = 'json' needs 'records' (the dotted path of the records)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _source_problems(self, name: str, src: Source, column_type: str) -> list[str]:
        problems = []
        unit = standard_unit(name)
        if (src.unit or src.unit_path) and unit is None:
            problems.append(f"{name} has no unit, so it takes no 'unit'")
        elif src.unit and unit is not None and canonical_unit(src.unit)[0] != unit[0]:
            problems.append(f"{name}: unit {src.unit!r} is not a {unit[0]}")
        if src.week and column_type != "date":
            problems.append(f"{name}: 'week' applies to dates only")
        if src.path is not None and self.reader != "json":
            problems.append(f"{name}: 'path' (a document-level JSON path) needs reader = 'json'")
        return problems

    def _required_problems(self, name: str, src: Source) -> list[str]:
        """A required standard column must be filled on every row the mapping can write."""
        if src.optional:
            return [
                f"{name} is required in {self.dataset}, so its source cannot be optional "
                "(a file without that raw column would write every row without it)"
            ]
        if src.const is not None and str(src.const).strip() in {"", *self.null_values}:
            return [f"{name} is required in {self.dataset}, so it cannot be the constant null {src.const!r}"]
        return []

    @property
    def required_columns(self) -> list[str]:
        """Raw columns (or record paths) a file must have for this mapping to apply."""
        need = [s.column for s in self.columns.values() if s.column is not None and not s.optional]
        need += [s.multiply_by for s in self.columns.values() if s.multiply_by]
        return sorted({n for n in need if n is not None}, key=need.index)

    @property
    def path_fields(self) -> list[str]:
        return [s.field for s in self.columns.values() if s.field is not None]


class MappingFileError(ValueError):
    """A mapping file is not valid; the message names the file and every problem."""


def load_mapping(file: Path) -> Mapping:
    """The mapping in a TOML file; MappingFileError naming every problem."""
    raw = file.read_bytes()
    try:
        data = tomllib.loads(raw.decode("utf-8"))
        return Mapping(**data, sha256=hashlib.sha256(raw).hexdigest(), file=file.name)
    except UnicodeDecodeError as e:
        raise MappingFileError(f"{file}: not UTF-8 (byte {e.start} cannot be decoded); save it as UTF-8") from e
    except RecursionError as e:
        raise MappingFileError(f"{file}: not a mapping: nested too deep to read") from e
    except tomllib.TOMLDecodeError as e:
        raise MappingFileError(f"{file}: not valid TOML: {e}") from e
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, p['loc'])) or '(file)'}: {p['msg']}" for p in e.errors())
        raise MappingFileError(f"{file}: {problems}") from e


def _load_folder(folder: Path, found: dict[str, Mapping]) -> None:
    for file in sorted(folder.glob("*.toml")):
        m = load_mapping(file)
        if m.id in found:
            raise MappingFileError(f"{file}: id {m.id!r} is also used by {found[m.id].file}")
        if file.stem != m.id:
            raise MappingFileError(f"{file}: the file must be named after its id ({m.id}.toml)")
        found[m.id] = m.model_copy(update={"file": str(file)})


@cache
def load_mappings(folder: Path = MAPPINGS_DIR, extra: Path | None = None) -> dict[str, Mapping]:
    """Every mapping in ``folder`` and then in the ``extra`` folder (a user's own layouts,
    outside the package), by id, each validated the same way; a duplicate id (within or
    across the folders) or a bad file raises :class:`MappingFileError` naming the file."""
    found: dict[str, Mapping] = {}
    _load_folder(folder, found)
    if extra is not None:
        if not extra.is_dir():
            raise MappingFileError(f"the extra mappings folder {extra} does not exist or is not a folder")
        _load_folder(extra, found)
    return found


def current_mappings(settings: Settings | None = None) -> dict[str, Mapping]:
    """The mappings the settings name: the shipped ones and ``FORECASTOPS_EXTRA_MAPPINGS``."""
    return load_mappings(MAPPINGS_DIR, (settings or get_settings()).extra_mappings_dir)


_FIELD = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def path_fields(path: str) -> dict[str, str]:
    """Hive-style ``key=value`` segments of a raw path (folders, and the file name's stem)."""
    *folders, name = path.split("/")
    stem = name.split(".", 1)[0]
    fields: dict[str, str] = {}
    for seg in [*folders, stem]:
        if m := _FIELD.match(seg):
            fields[m.group(1)] = m.group(2)
    return fields


@dataclass(frozen=True)
class Candidate:
    """A mapping that might read a file, with the required columns the file lacks."""

    mapping: Mapping
    missing: list[str]


def rank(mappings: Iterable[Mapping], available: set[str]) -> list[Candidate]:
    """Each mapping with the required columns ``available`` lacks, best fit first."""
    out = [Candidate(m, [c for c in m.required_columns if normalise_header(c) not in available]) for m in mappings]
    return sorted(out, key=lambda c: (len(c.missing), c.mapping.id))
