"""The score pipeline's step: the production models forecast the ``future`` weeks (the weeks
after the lake, from the week after the lake, as score's future rows), each group with its own
model and its own booster (models of different runs have different boosters).

``--production`` is a folder:

    production.json          {"week": "<YYYY-MM-DD>",
                              "models": {"<group>": {"name": "<group>", "version": <int>}}}
    <group>/model.pkl        the group's model (train's ``<group>.pkl``)
    <group>/lgbm.txt         the booster of the run that trained it, and its categories
    <group>/lgbm.json        (optional: both or neither; without them the LightGBM member is
                             the pooled seasonal naive, as in a run too short for a booster)

Writes ``<out>/forecasts/<group>.csv`` for every group production.json lists: exactly the
columns ``store_id,sku,week_start,forecast,model,model_version`` (model: the group,
model_version: the registry's version), sorted by store_id, sku, week_start, the forecast in
units rounded to 3 decimals (non-negative, finite); a group the lake has no rows of gets the
header only. And ``<out>/forecasts/summary.json``: ``week`` (production.json's), ``groups``
(rows per group listed) and ``missing`` (groups of the lake with no production model, not
scored). production.json missing or invalid, or a model file missing or unreadable: exit 2
with one line.
"""

from __future__ import annotations

import argparse
import json
import pickle
import re
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from backtest import Booster, Data
from forecast_lib import log_metrics, write_json
from models import GroupModel, forecast

#: the columns of a forecast file (the standard dataset ``forecasts`` v1)
COLUMNS = ["store_id", "sku", "week_start", "forecast", "model", "model_version"]
#: a group's name, also a folder name: <region>.<format>.<velocity>, no path separators
GROUP_NAME = re.compile(r"^[^./\\\s]+\.[^./\\\s]+\.[^./\\\s]+$")
BOOSTER_FILES = ("lgbm.txt", "lgbm.json")


class ProductionError(ValueError):
    """The production folder cannot be scored with; the message says why, in one line."""


def read_production(folder: Path) -> tuple[str, dict[str, int]]:
    """production.json's week and its models (group -> registry version)."""
    path = Path(folder) / "production.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProductionError(f"no production.json in {folder}") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ProductionError(f"production.json is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ProductionError("production.json must be an object with week and models")
    week = doc.get("week")
    if not isinstance(week, str) or not _is_date(week):
        raise ProductionError(f"production.json: week must be a date YYYY-MM-DD, not {week!r}")
    listed = doc.get("models")
    if not isinstance(listed, dict) or not listed:
        raise ProductionError("production.json: models must be an object naming at least one group")
    models: dict[str, int] = {}
    for group, entry in listed.items():
        if not GROUP_NAME.match(group):
            raise ProductionError(f"production.json: {group!r} is not a group name (<region>.<format>.<velocity>)")
        if not isinstance(entry, dict) or entry.get("name") != group:
            raise ProductionError(f"production.json: models.{group} must be an object with name {group!r}")
        version = entry.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ProductionError(f"production.json: models.{group}.version must be an integer >= 1, not {version!r}")
        models[group] = version
    return week, models


def _is_date(text: str) -> bool:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def load_model(folder: Path, group: str) -> tuple[GroupModel, Booster | None]:
    """A group's model and its booster (None when the version has no booster files)."""
    where = Path(folder) / group
    path = where / "model.pkl"
    if not path.is_file():
        raise ProductionError(f"{group}: {group}/model.pkl is missing")
    try:
        with open(path, "rb") as f:
            model = pickle.load(f)
    except Exception as e:  # a pickle can fail in any way its classes do
        raise ProductionError(f"{group}: {group}/model.pkl cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(model, GroupModel):
        raise ProductionError(f"{group}: {group}/model.pkl holds a {type(model).__name__}, not a group model")
    if model.group != group:
        raise ProductionError(f"{group}: {group}/model.pkl is the model of {model.group}")
    present = [(where / name).is_file() for name in BOOSTER_FILES]
    if not any(present):
        return model, None
    if not all(present):
        absent = next(name for name, ok in zip(BOOSTER_FILES, present, strict=True) if not ok)
        raise ProductionError(f"{group}: {group}/{absent} is missing (lgbm.txt and lgbm.json go together)")
    try:
        booster = Booster.load(where)
    except Exception as e:  # LightGBM raises its own error; a bad lgbm.json a KeyError or ValueError
        raise ProductionError(f"{group}: its booster cannot be read ({type(e).__name__}: {e})") from None
    return model, booster


def score_group(
    model: GroupModel, booster: Booster | None, data: Data, rows: pd.DataFrame, origin: str, version: int
) -> pd.DataFrame:
    """One group's forecast file: its rows of ``rows`` (horizon rows of ``origin``) forecast by
    its own model and booster, in the dataset's columns and order."""
    rows = rows[rows["group"] == model.group]
    if rows.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    pred = forecast({model.group: model}, booster, data, rows, origin)
    out = pred[["store_id", "sku", "week_start"]].copy()
    out["forecast"] = np.round(pred["forecast"].to_numpy(float), 3)
    out["model"] = model.group
    out["model_version"] = int(version)
    out = out.sort_values(["store_id", "sku", "week_start"], kind="stable").reset_index(drop=True)
    values = out["forecast"].to_numpy(float)
    if not (np.isfinite(values).all() and (values >= 0).all()):
        raise ArithmeticError(f"{model.group}: a forecast is negative or not a finite number")
    return out[COLUMNS]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--features", type=Path, required=True, help="prepare's output folder")
    p.add_argument("--production", type=Path, required=True, help="production.json and <group>/model.pkl, ...")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    t0 = time.monotonic()
    try:
        week, versions = read_production(a.production)
        loaded = {group: load_model(a.production, group) for group in sorted(versions)}
    except ProductionError as e:
        print(f"score_production: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    data = Data(a.features)
    origin = data.meta["future_from"]
    rows = data.horizon_rows(origin, int(data.meta["future_weeks"]))
    for group, (model, booster) in loaded.items():
        if booster is None and model.weights.get("lgbm", 0) > 0:
            print(f"score_production: {group} has no booster: its LightGBM weight goes to the seasonal naive",
                  file=sys.stderr)  # fmt: skip
    folder = a.out / "forecasts"
    folder.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for group, (model, booster) in loaded.items():
        try:
            out = score_group(model, booster, data, rows, origin, versions[group])
        except ArithmeticError as e:
            print(f"score_production: {e}", file=sys.stderr)
            return 1
        out.to_csv(folder / f"{group}.csv", index=False)
        counts[group] = len(out)
    missing = sorted(set(rows["group"]) - set(versions))
    write_json(folder / "summary.json", {"week": week, "groups": counts, "missing": missing})
    empty = sorted(g for g, n in counts.items() if n == 0)
    if missing:
        print(f"score_production: no production model for {len(missing)} group(s): {', '.join(missing)}",
              file=sys.stderr)  # fmt: skip
    if empty:
        print(f"score_production: no rows in the lake for {', '.join(empty)}", file=sys.stderr)
    total = sum(counts.values())
    seconds = time.monotonic() - t0
    log_metrics(
        {"forecast_rows": total, "groups_scored": len(counts) - len(empty), "groups_missing": len(missing),
         "score_seconds": seconds},
        run_name="score_production",
        params={"week": week, "future_from": origin},
    )  # fmt: skip
    print(
        f"score_production: week {week}, {total} rows from {origin}, {len(counts) - len(empty)} groups, "
        f"{len(missing)} without a model, {seconds:.1f}s",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
