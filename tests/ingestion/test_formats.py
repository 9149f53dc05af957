"""The mapping files: they load, they say what is wrong with them, and files find theirs."""

from __future__ import annotations

import pytest

from shared.ingestion.formats import (
    MAPPINGS_DIR,
    MappingFileError,
    load_mapping,
    load_mappings,
    normalise_header,
    path_fields,
    rank,
)


def test_every_shipped_mapping_loads_and_is_named_after_its_id():
    mappings = load_mappings()
    assert sorted(mappings) == sorted(p.stem for p in MAPPINGS_DIR.glob("*.toml"))
    assert {m.dataset for m in mappings.values()} == {"weather_daily", "shipments_weekly", "store_demographics"}
    assert len(mappings) >= 7


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ('id = "x"\ndataset = "weather_daily"\n', "description"),
        ('id = "x"\ndataset = "sales"\ndescription = ""\nreader = "csv"\n[columns]\n', "unknown dataset 'sales'"),
        (
            'id = "x"\ndataset = "store_demographics"\ndescription = ""\nreader = "csv"\n[columns]\nstore_id = { column = "a" }\n',
            "no source for store_demographics column(s): households",
        ),
        (
            'id = "x"\ndataset = "store_demographics"\ndescription = ""\nreader = "csv"\n[columns]\n'
            'store_id = { column = "a", const = "b" }\n',
            "exactly one of column, path, field, const",
        ),
        (
            'id = "x"\ndataset = "weather_daily"\ndescription = ""\nreader = "csv"\n[columns]\ntmax_c = { column = "a", unit = "furlong" }\n',
            "unknown unit 'furlong'",
        ),
        (
            'id = "x"\ndataset = "weather_daily"\ndescription = ""\nreader = "csv"\n[columns]\nprecip_mm = { column = "a", unit = "degF" }\n',
            "is not a length",
        ),
        ("id = ", "not valid TOML"),
    ],
    ids=[
        "missing-keys",
        "unknown-dataset",
        "missing-columns",
        "two-sources",
        "unknown-unit",
        "wrong-dimension",
        "toml",
    ],
)
def test_a_broken_mapping_file_names_itself_and_the_problem(tmp_path, body, words):
    file = tmp_path / "x.toml"
    file.write_text(body)
    with pytest.raises(MappingFileError) as e:
        load_mapping(file)
    assert str(file) in str(e.value) and words in str(e.value)


def test_aggregating_mappings_must_fold_every_non_key_column(tmp_path):
    text = (MAPPINGS_DIR / "shipments_daily_deliveries_csv.toml").read_text().replace('units_returned = "sum"', "")
    (tmp_path / "shipments_daily_deliveries_csv.toml").write_text(text)
    with pytest.raises(MappingFileError, match="say how to fold units_returned"):
        load_mappings(tmp_path)


def test_a_file_named_differently_from_its_id_is_refused(tmp_path):
    (tmp_path / "other.toml").write_bytes((MAPPINGS_DIR / "weather_us_obs_csv.toml").read_bytes())
    with pytest.raises(MappingFileError, match="named after its id"):
        load_mappings(tmp_path)


def test_path_fields_are_the_hive_style_segments():
    assert path_fields("raw/weather/ghcn/zip=75001/format=weather_ghcn_cdo_metric/x.csv") == {
        "zip": "75001",
        "format": "weather_ghcn_cdo_metric",
    }
    assert path_fields("raw/weather/zip=98101.csv") == {"zip": "98101"}
    assert path_fields("raw/weather/a/b.csv") == {}


def test_headers_match_case_and_whitespace_insensitively():
    assert normalise_header("  High   (F) ") == normalise_header("high (f)")
    us = load_mappings()["weather_us_obs_csv"]
    (best,) = rank([us], {normalise_header(h) for h in ["ZIP", "obs  date", "HIGH (F)", "low (f)", "Rain (IN)"]})
    assert best.missing == []


def _weather_mapping(**overrides: str) -> str:
    """The US observation mapping with some of its column lines replaced."""
    text = (MAPPINGS_DIR / "weather_us_obs_csv.toml").read_text()
    for column, line in overrides.items():
        text = "\n".join(line if row.startswith(f"{column} ") else row for row in text.splitlines()) + "\n"
    return text


@pytest.mark.parametrize(
    ("column", "line", "words"),
    [
        ("precip_mm", 'precip_mm = { column = "Rain (in)", unit = "in", optional = true }', "precip_mm is required"),
        ("tmax_c", 'tmax_c = { const = "" }', "tmax_c is required in weather_daily"),
        ("tmin_c", 'tmin_c = { const = "NA" }', "tmin_c is required"),
    ],
    ids=["optional-precip", "null-const", "declared-null-const"],
)
def test_a_mapping_that_cannot_fill_a_required_column_is_refused_when_mappings_load(tmp_path, column, line, words):
    (tmp_path / "weather_us_obs_csv.toml").write_text(_weather_mapping(**{column: line}))
    with pytest.raises(MappingFileError, match=words):
        load_mappings(tmp_path)


def test_a_nullable_column_may_be_optional_or_always_null(tmp_path):
    (tmp_path / "weather_us_obs_csv.toml").write_text(_weather_mapping(snow_mm='snow_mm = { const = "" }'))
    assert load_mappings(tmp_path)["weather_us_obs_csv"].columns["snow_mm"].const == ""


NEW_VENDOR = (
    'id = "demographics_new_vendor"\ndataset = "store_demographics"\ndescription = "onboarded"\nreader = "csv"\n'
    '[columns]\nstore_id = { column = "Store" }\nzip_code = { column = "Postcode", pad = 5 }\nregion = { const = "x" }\n'
    'store_format = { const = "large" }\npopulation = { const = "" }\nhouseholds = { const = "" }\n'
    'median_household_income = { const = "" }\nmedian_age = { const = "" }\n'
)


def test_an_extra_mappings_folder_outside_the_package_is_loaded_with_the_shipped_ones(tmp_path, monkeypatch):
    from shared.ingestion.formats import current_mappings
    from shared.settings import get_settings

    (tmp_path / "demographics_new_vendor.toml").write_text(NEW_VENDOR)
    monkeypatch.setenv("FORECASTOPS_EXTRA_MAPPINGS", str(tmp_path))
    get_settings.cache_clear()
    mappings = current_mappings()
    assert "demographics_new_vendor" in mappings and "weather_us_obs_csv" in mappings
    assert mappings["demographics_new_vendor"].file == str(tmp_path / "demographics_new_vendor.toml")


@pytest.mark.parametrize(
    ("name", "body", "words"),
    [
        ("weather_us_obs_csv.toml", None, "id 'weather_us_obs_csv' is also used by"),
        ("x.toml", 'id = "x"\ndataset = "sales"\n', "unknown dataset 'sales'"),
        ("demographics_other.toml", NEW_VENDOR, "named after its id"),
    ],
    ids=["shadows-a-shipped-id", "invalid", "misnamed"],
)
def test_the_extra_mappings_are_validated_like_the_shipped_ones(tmp_path, name, body, words):
    text = body if body is not None else (MAPPINGS_DIR / name).read_text()
    (tmp_path / name).write_text(text)
    with pytest.raises(MappingFileError, match=words) as e:
        load_mappings(MAPPINGS_DIR, tmp_path)
    assert str(tmp_path) in str(e.value)


def test_an_extra_mappings_folder_that_does_not_exist_is_refused(tmp_path):
    with pytest.raises(MappingFileError, match="does not exist"):
        load_mappings(MAPPINGS_DIR, tmp_path / "nope")


GOOD_MASTER = (
    'id = "x"\ndataset = "store_demographics"\ndescription = ""\nreader = "csv"\n{extra}\n[columns]\n'
    'store_id = {{ column = "a"{date} }}\nzip_code = {{ column = "b" }}\nregion = {{ column = "c" }}\n'
    'store_format = {{ column = "d" }}\npopulation = {{ column = "e" }}\nhouseholds = {{ column = "f" }}\n'
    'median_household_income = {{ column = "g" }}\nmedian_age = {{ column = "h" }}\n'
)


@pytest.mark.parametrize(
    ("extra", "date", "words"),
    [
        ('encoding = "base64"', "", "not a text encoding"),
        ('encoding = "rot13"', "", "not a text encoding"),
        ('encoding = "no-such-codec"', "", "unknown encoding"),
        ("", ", date_format = []", "date_format"),
        ("", ', date_format = [""]', "date_format"),
        ("encoding = 8", "", "encoding"),
    ],
    ids=["base64", "rot13", "unknown", "empty-date-formats", "empty-date-format", "int-encoding"],
)
def test_a_mapping_with_a_bad_encoding_or_date_format_is_refused_when_loaded_naming_the_file(
    tmp_path, extra, date, words
):
    file = tmp_path / "x.toml"
    file.write_text(GOOD_MASTER.format(extra=extra, date=date))
    with pytest.raises(MappingFileError) as e:
        load_mapping(file)
    assert str(file) in str(e.value) and words in str(e.value) and "\n" not in str(e.value)


def test_the_good_mapping_of_those_tests_loads(tmp_path):
    file = tmp_path / "x.toml"
    file.write_text(GOOD_MASTER.format(extra='encoding = "latin-1"', date=""))
    assert load_mapping(file).encoding == "latin-1"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ('id = "x"\ndescription = "caf\xe9"\n'.encode("latin-1"), "not UTF-8"),
        (b"a = " + b"[" * 20_000 + b"]" * 20_000 + b"\n", "nested too deep"),
    ],
    ids=["latin1-file", "deep-toml"],
)
def test_a_mapping_file_that_cannot_be_read_is_refused_in_one_line_naming_it(tmp_path, body, words):
    file = tmp_path / "x.toml"
    file.write_bytes(body)
    with pytest.raises(MappingFileError) as e:
        load_mapping(file)
    assert str(file) in str(e.value) and words in str(e.value) and "\n" not in str(e.value)
