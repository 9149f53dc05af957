"""Shared helpers of the forecast pipeline's steps: reading the curated lake, the calendar,
the feature lists, the metrics and their logging.

Every step is a plain script (``python <step>.py ...``) run from this folder, so this module
is imported as a sibling. It depends on numpy, pandas and scikit-learn only (mlflow is
optional and imported on first use).
"""

from __future__ import annotations

import json
import math
import os
import re
from datetime import date, timedelta
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd

# the product-velocity rule: a SKU is "fast" when its mean weekly units shipped per
# (store, week) over the training weeks, all stores and regions of the lake together, is at
# least this; otherwise "slow"
FAST_UNITS_PER_STORE_WEEK = 20.0
#: weeks after the last observed week that are forecast from the latest weather forecast
FUTURE_WEEKS = 2
#: rolling windows (weeks) of the level features
ROLL_WINDOWS = (4, 13)
#: backtest: forecast origins whose horizons (``holdout_weeks`` each, back to back) end at the
#: last week of the lake; one more origin before them only serves as the first one's validation
BACKTEST_ORIGINS = 4
#: weeks of history a backtest origin needs before it, and the validation-only origin in front
MIN_TRAIN_WEEKS = 26
MIN_VALIDATION_WEEKS = 16
#: climatology: observed weeks of the same zip within this many weeks of the year
CLIMATE_WINDOW = 2
WEATHER_OBSERVED = ("tmax_c", "tmin_c", "precip_mm", "snow_mm")

HOLIDAYS = (
    "super_bowl",
    "easter",
    "memorial_day",
    "july_4th",
    "labor_day",
    "thanksgiving",
    "pre_christmas",
    "christmas",
    "new_year",
)
WEATHER = ("tmax_c", "tmin_c", "precip_mm", "snow_mm", "tmax_anom")
SEASON = ("woy_sin1", "woy_cos1", "woy_sin2", "woy_cos2")
#: numeric model inputs (the level features are log1p of units)
LEVEL = ("lag", "roll4", "roll13", "expmean")
NUMERIC = (*LEVEL, *SEASON, "trend", *HOLIDAYS, *WEATHER, "log_population", "income_k", "median_age")
CATEGORICAL = ("series", "store_id", "sku", "region", "store_format")
#: LASSO only: per-SKU slopes of these (seasonality, weather, events differ by product)
SKU_INTERACTIONS = ("woy_sin1", "woy_cos1", "woy_sin2", "woy_cos2", "tmax_c", "precip_mm", *HOLIDAYS)
#: the prepared table's key and label columns
KEYS = ("group", "series", "store_id", "sku", "region", "store_format", "velocity", "zip_code", "week_start", "split")
TARGET = "units"


# ---------------------------------------------------------------------------------------
# reading the curated lake
# ---------------------------------------------------------------------------------------


def now_epoch() -> float:
    """The current time in epoch seconds, moved by FORECASTOPS_TEST_CLOCK_OFFSET_DAYS where the
    tests set it (the app's clock, shared/clock.py, reads the same setting)."""
    import time

    try:
        days = float(os.environ.get("FORECASTOPS_TEST_CLOCK_OFFSET_DAYS") or 0)
    except ValueError:
        days = 0.0
    return time.time() + (days * 86400 if math.isfinite(days) and abs(days) < 36500 else 0.0)


def read_dataset(
    curated: Path, name: str, dtype: dict[str, str] | None = None, empty: tuple[str, ...] | None = None
) -> pd.DataFrame:
    """Every CSV of ``<curated>/<name>/v1/**`` as one frame (the files share one header). No
    file at all: FileNotFoundError, unless ``empty`` names the columns of an empty frame to
    answer instead (a dataset the lake may lack)."""
    files = sorted((Path(curated) / name / "v1").rglob("*.csv"))
    if not files and empty is not None:
        return pd.DataFrame({c: pd.Series(dtype=(dtype or {}).get(c, object)) for c in empty})
    if not files:
        raise FileNotFoundError(f"no {name} files under {curated}/{name}/v1")
    header = None
    parts: list[str] = []
    for f in files:
        text = f.read_text(encoding="utf-8")
        first, _, body = text.partition("\n")
        first = first.strip()
        if header is None:
            header = first
        elif first != header:
            raise ValueError(f"{f}: header {first!r} differs from {header!r}")
        if body and not body.endswith("\n"):
            body += "\n"
        parts.append(body)
    return pd.read_csv(StringIO(header + "\n" + "".join(parts)), dtype=dtype)


# CSV files for people: the app's rule (shared/ingestion/write.py's neutralise_formulas, on Arrow
# tables) held here again, as the steps run on AML from this folder alone and cannot import the
# app's ``shared`` package; tests/pipelines/test_forecast_score_csv.py holds both to one answer.
#: a cell a spreadsheet would take for a formula (OWASP's CSV-injection list) ...
_FORMULA = re.compile(r"[=+\-@\t\r]")
#: ... unless it is a number (``-5``, ``+3.25``, ``-1e5``)
_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def for_people(value: object) -> object:
    """A text value that starts like a formula (``=``, ``+``, ``-``, ``@``, a tab, a carriage
    return) and is not a number, behind a single quote; anything else as it is."""
    if isinstance(value, str) and _FORMULA.match(value) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with :func:`for_people` on every text column (numbers untouched), for a CSV
    people open in a spreadsheet or Power BI; ``frame`` itself is not changed."""
    text = [c for c in frame.columns if pd.api.types.is_string_dtype(frame[c]) or frame[c].dtype == object]
    return frame.assign(**{c: frame[c].map(for_people) for c in text}) if text else frame


def week_start_of(days: pd.Series) -> pd.Series:
    """The Monday-named sales week (Sunday..Saturday) of each date: Sunday belongs to the
    week that starts the next day, as in the shipments' ``week_start``."""
    d = pd.to_datetime(days)
    sunday = d - pd.to_timedelta((d.dt.day_of_week + 1) % 7, unit="D")
    return sunday + pd.Timedelta(days=1)


# ---------------------------------------------------------------------------------------
# calendar
# ---------------------------------------------------------------------------------------


def _easter(y: int) -> date:
    a, b, c = y % 19, y // 100, y % 100
    d, e = b // 4, b % 4
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    la = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * la) // 451
    month = (h + la - 7 * m + 114) // 31
    day = (h + la - 7 * m + 114) % 31 + 1
    return date(y, month, day)


def _nth_weekday(y: int, month: int, weekday: int, n: int) -> date:
    d = date(y, month, 1)
    return d + timedelta(days=(weekday - d.weekday()) % 7 + 7 * (n - 1))


def _last_weekday(y: int, month: int, weekday: int) -> date:
    d = date(y, month + 1, 1) - timedelta(days=1)
    return d - timedelta(days=(d.weekday() - weekday) % 7)


def event_days(year: int) -> dict[str, date]:
    """US holidays and special events that move food demand."""
    return {
        "super_bowl": _nth_weekday(year, 2, 6, 2),  # second Sunday of February (since 2022)
        "easter": _easter(year),
        "memorial_day": _last_weekday(year, 5, 0),
        "july_4th": date(year, 7, 4),
        "labor_day": _nth_weekday(year, 9, 0, 1),
        "thanksgiving": _nth_weekday(year, 11, 3, 4),
        "pre_christmas": date(year, 12, 18),
        "christmas": date(year, 12, 25),
        "new_year": date(year, 12, 31),
    }


def calendar_features(weeks: pd.Series) -> pd.DataFrame:
    """Seasonality and event flags of Monday-named weeks. An event flags the sales week
    (Sunday..Saturday) that holds its shopping day (the day before the event)."""
    ws = pd.to_datetime(weeks)
    out = pd.DataFrame(index=weeks.index)
    mid = ws + pd.Timedelta(days=2)
    angle = 2 * np.pi * (mid.dt.day_of_year.to_numpy() - 1) / 365.25
    out["woy_sin1"], out["woy_cos1"] = np.sin(angle), np.cos(angle)
    out["woy_sin2"], out["woy_cos2"] = np.sin(2 * angle), np.cos(2 * angle)
    flags = {h: set() for h in HOLIDAYS}
    for y in range(ws.dt.year.min() - 1, ws.dt.year.max() + 2):
        for name, day in event_days(y).items():
            shop = pd.Timestamp(day - timedelta(days=1))
            flags[name].add(week_start_of(pd.Series([shop])).iloc[0])
    for name in HOLIDAYS:
        out[name] = ws.isin(flags[name]).astype(float).to_numpy()
    return out


def origin_indices(n_weeks: int, horizon: int, n_origins: int = BACKTEST_ORIGINS) -> list[int]:
    """Week indices of the forecast origins (each the first week of its horizon), oldest
    first: the last one is the holdout (the last ``horizon`` weeks), each earlier one
    ``horizon`` weeks before the next, so that an origin's validation window (the
    ``horizon`` weeks before it) is the previous origin's horizon. Up to ``n_origins``
    backtest origins with MIN_TRAIN_WEEKS of history (at least the holdout), plus one
    validation-only origin in front when it has MIN_VALIDATION_WEEKS."""
    last = n_weeks - horizon
    backtest = [i for i in (last - horizon * k for k in range(n_origins)) if i >= MIN_TRAIN_WEEKS] or [last]
    first = min(backtest) - horizon
    return ([first] if first >= MIN_VALIDATION_WEEKS else []) + sorted(backtest)


def week_of_year(weeks: pd.Series) -> np.ndarray:
    """0..52: the week of the year of a Monday-named sales week (by its Wednesday)."""
    mid = pd.to_datetime(weeks) + pd.Timedelta(days=2)
    return ((mid.dt.day_of_year.to_numpy() - 1) // 7).astype(int)


# ---------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------


def mape(actual: np.ndarray, forecast: np.ndarray, floor: float = 0.0) -> float:
    """Mean absolute percentage error over the rows whose actual is > ``floor`` (by default
    > 0: a zero actual has no percentage error, those rows are measured by RMSE_0). With a
    currency target, a floor (e.g. 10 currency units) keeps a few tiny actuals from
    dominating the mean. NaN when no actual is above the floor."""
    a, f = np.asarray(actual, float), np.asarray(forecast, float)
    pos = a > floor
    return float(np.mean(np.abs(f[pos] - a[pos]) / a[pos])) if pos.any() else math.nan


def wape(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Weighted absolute percentage error: sum |forecast - actual| / sum actual (NaN when the
    actuals sum to 0). Big weeks weigh more; zero and tiny actuals do not explode it."""
    a, f = np.asarray(actual, float), np.asarray(forecast, float)
    total = a.sum()
    return float(np.abs(f - a).sum() / total) if total > 0 else math.nan


def bias(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Forecast total / actual total (1.0 = unbiased; 0.9 = forecasts 10% low)."""
    a, f = np.asarray(actual, float), np.asarray(forecast, float)
    total = a.sum()
    return float(f.sum() / total) if total > 0 else math.nan


def mase(actual: np.ndarray, forecast: np.ndarray, scale: np.ndarray) -> float:
    """Mean absolute scaled error: mean over rows of |forecast - actual| / scale, ``scale``
    being the row's series' in-sample mean absolute week-on-week change (the one-step naive
    forecast's error) over the weeks before the forecast origin. Rows whose scale is not > 0
    are left out. Below 1: better than a naive forecast's in-sample error."""
    a, f, s = (np.asarray(x, float) for x in (actual, forecast, scale))
    ok = np.isfinite(s) & (s > 0)
    return float(np.mean(np.abs(f[ok] - a[ok]) / s[ok])) if ok.any() else math.nan


def rmse(actual: np.ndarray, forecast: np.ndarray) -> float:
    a, f = np.asarray(actual, float), np.asarray(forecast, float)
    return float(np.sqrt(np.mean((f - a) ** 2))) if len(a) else math.nan


def rmse_0(actual: np.ndarray, forecast: np.ndarray) -> float:
    """RMSE over the rows whose actual is 0 (NaN when there are none)."""
    a, f = np.asarray(actual, float), np.asarray(forecast, float)
    zero = a == 0
    return rmse(a[zero], f[zero]) if zero.any() else math.nan


def log_metrics(metrics: dict[str, float], *, run_name: str | None = None, params: dict | None = None) -> None:
    """To MLflow (AML shows them; locally MLFLOW_TRACKING_URI is a ``file:`` store) and to
    the local runner's FORECASTOPS_METRICS_FILE (one JSON object per line). NaNs are skipped."""
    clean = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
    path = os.environ.get("FORECASTOPS_METRICS_FILE")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            for k, v in clean.items():
                f.write(json.dumps({"name": k, "value": v}) + "\n")
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri:
        return
    if uri.startswith("file:"):
        # MLflow 3 refuses the file store unless asked: the local runner's store is one
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    try:
        import mlflow
    except ImportError:
        return
    items = sorted(clean.items())
    with mlflow.start_run(run_name=run_name):
        if params:
            mlflow.log_params(params)
        for i in range(0, len(items), 500):  # the tracking API's batch limit is 1000 metrics
            mlflow.log_metrics(dict(items[i : i + 500]))


def write_json(path: Path, doc: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


#: an absolute path in an error's text (POSIX or Windows): a node's, never to be published
_ABSOLUTE = re.compile(r"(?<![\w.~/-])(?:[A-Za-z]:)?[/\\][^\s'\"(),;:/\\]+(?:[/\\][^\s'\"(),;:/\\]+)*")


def without_paths(text: str) -> str:
    """``text`` with every absolute path named by its last part (``.../name``): a reason goes to
    the batch's summary, lineage and the report, and a node's paths (``/mnt/azureml/cr/j/<job>/
    ...``, a temporary folder) are never published."""
    return _ABSOLUTE.sub(lambda m: ".../" + re.split(r"[/\\]", m.group(0))[-1], text)
