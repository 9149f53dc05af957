"""Train's parts: the once-per-batch LightGBM members, the per-group fit, and the blend of them.

The train step is three parts, so that its per-group work fans out (AML's parallel job, or
the local backend's process pool, over one work file per group):

1. ``fit_boosters``: the global LightGBM member at every origin (one model across every group),
   saved with ``save_boosters`` (``<folder>/boosters.json`` and ``<origin>/lgbm.txt|json``);
   ``write_work`` names each group to fit in a file of its own (``<group>.json``) and
   ``write_parts`` writes each group's data beside the boosters (``<folder>/groups/<group>.pkl``,
   ``Data.part``): a worker reads its group's rows alone (``read_part``), never the whole table,
   so its memory follows its group, not the batch.
2. ``fit_one``: one group, at every origin: its LASSO and MLP, and every member's forecast of
   its rows of the origin's horizon. It never raises: an exception is the group's failure,
   with a one-line reason (``outcome`` ``failed``); a group too small for its members at the
   holdout's origin is ``not_fitted``; else ``ok``. ``save_fit`` writes ``<group>.pkl``.
3. ``blend_all`` (in train.py): the blend weights of every group at every origin (a group's
   are steadied by every group's, so they are chosen once every group is fitted) and the
   models folder score and evaluate read.
"""

from __future__ import annotations

import json
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from backtest import Booster, Data
from forecast_lib import without_paths
from models import GroupModel, fit_group, member_forecasts, too_few_rows
from threadpoolctl import threadpool_limits


@dataclass
class GroupFit:
    """One group's fit at every origin: the holdout origin's model (None: not fitted there, or
    failed), its members' forecasts of each origin's horizon (bounded, before the blend), and
    per origin its train rows, seconds and, when not fitted there, why."""

    group: str
    outcome: str = "ok"
    reason: str = ""
    model: GroupModel | None = None
    members: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: dict[str, dict] = field(default_factory=dict)
    seconds: float = 0.0

    def row(self) -> dict[str, str]:
        """The parallel step's row of this group: group, outcome, one-line reason."""
        return {"group": self.group, "outcome": self.outcome, "reason": self.reason}


def one_line(error: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message, with no
    absolute path of the node (``forecast_lib.without_paths``: the line is published)."""
    text = without_paths(str(error)).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".strip().rstrip(":")[:300]


def fit_boosters(data: Data, seed: int) -> tuple[dict[str, Booster | None], list[dict]]:
    """The global LightGBM member at every origin (None: too short a history there), and per
    origin its train rows and seconds."""
    boosters: dict[str, Booster | None] = {}
    notes = []
    with threadpool_limits(limits=1):
        for origin in data.origins:
            t0 = time.monotonic()
            boosters[origin] = Booster.fit(data, origin, seed, threads=1)
            notes.append(
                {
                    "origin": origin,
                    "lgbm": boosters[origin] is not None,
                    "train_rows": int(len(data.train_rows(origin))),
                    "lgbm_seconds": round(time.monotonic() - t0, 2),
                }
            )
    return boosters, notes


def save_boosters(folder: Path, boosters: dict[str, Booster | None], meta: dict) -> None:
    """``boosters.json`` (``meta`` with ``origins``: the notes of ``fit_boosters``) and each
    origin's booster under ``<origin>/``."""
    folder.mkdir(parents=True, exist_ok=True)
    for origin, booster in boosters.items():
        if booster is not None:
            (folder / origin).mkdir(exist_ok=True)
            booster.save(folder / origin)
    (folder / "boosters.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")


def load_boosters(folder: Path) -> tuple[dict[str, Booster | None], dict]:
    """What ``save_boosters`` wrote: the booster of each origin (None: none there) and the meta."""
    meta = json.loads((folder / "boosters.json").read_text(encoding="utf-8"))
    boosters = {o["origin"]: Booster.load(folder / o["origin"]) if o["lgbm"] else None for o in meta["origins"]}
    return boosters, meta


def work_groups(data: Data, wanted: list[str] | None) -> list[str]:
    """The groups to fit: those with train rows before the holdout's origin (the last), all
    of them or the ``wanted`` ones."""
    present = set(data.train_rows(data.origins[-1])["group"]) if data.origins else set()
    return sorted(g for g in present if wanted is None or g in wanted)


def write_work(folder: Path, groups: list[str], fields: dict[str, dict] | None = None) -> None:
    """One work file per group (``<group>.json``: ``{"group"}`` and the group's ``fields``, if
    any): a parallel step's mini-batches (train's and score's)."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.json"):
        stale.unlink()
    for g in groups:
        doc = {"group": g, **(fields or {}).get(g, {})}
        (folder / f"{g}.json").write_text(json.dumps(doc), encoding="utf-8")


#: the subfolder of train_global's boosters holding each group's data (``write_parts``)
PARTS = "groups"


class PartError(ValueError):
    """A group's data cannot be read (missing, unreadable, another group's): one line, the
    group's failure."""


def write_parts(folder: Path, data: Data, groups: list[str]) -> None:
    """``<folder>/<group>.pkl`` per group: ``data.part(group)`` (its rows of the features and
    what is pooled over the lake), each written whole or not at all; no other group's file stays."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.pkl"):
        stale.unlink()
    for g in groups:
        tmp = folder / f".{g}.pkl.tmp"
        with open(tmp, "wb") as f:
            pickle.dump(data.part(g), f, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(folder / f"{g}.pkl")


def read_part(folder: Path, group: str) -> Data:
    """``group``'s data as ``write_parts`` wrote it (a ``Data`` of its rows alone); PartError
    with one line when its file is missing, cannot be read or is another group's."""
    path = Path(folder) / f"{group}.pkl"
    try:
        with open(path, "rb") as f:
            part = pickle.load(f)
    except FileNotFoundError:
        raise PartError(f"no data: {path.name} is missing from the batch's group files") from None
    except Exception as e:  # a truncated or foreign file fails in any way unpickling can
        raise PartError(f"unreadable data: {path.name}: {one_line(e)}") from None
    if not isinstance(part, dict) or part.get("group") != group:
        raise PartError(f"{path.name} is not the data of {group}")
    try:
        return Data.of_part(part)
    except Exception as e:
        raise PartError(f"unreadable data: {path.name}: {one_line(e)}") from None


def read_work_doc(path: Path) -> dict:
    """A work file as it was written: ``group`` and the group's fields."""
    return dict(json.loads(Path(path).read_text(encoding="utf-8")))


def read_work(path: Path) -> str:
    """The group a work file names."""
    return str(read_work_doc(path)["group"])


def fit_one(data: Data, group: str, boosters: dict[str, Booster | None], seed: int, trained_at: float) -> GroupFit:
    """``group`` at every origin of ``data``: its members fit on its rows before the origin and
    their forecasts of its horizon rows (``boosters``: the origin's LightGBM). Never raises."""
    t0 = time.monotonic()
    fit = GroupFit(group)
    try:
        frames = []
        with threadpool_limits(limits=1):
            for origin in data.origins:
                t1 = time.monotonic()
                train = data.train_rows(origin, group)
                if len(train) == 0:
                    fit.model = None
                    continue
                reason = too_few_rows(len(train))
                note = {"n_train": int(len(train)), "not_fitted": reason}
                fit.model = None if reason else fit_group(group, train, seed, trained_at, origin)
                if fit.model is not None:
                    horizon = data.horizon_rows(origin, group=group)
                    frames.append(member_forecasts({group: fit.model}, boosters.get(origin), data, horizon, origin))
                note["seconds"] = round(time.monotonic() - t1, 2)
                fit.notes[origin] = note
        fit.members = pd.concat([f for f in frames if len(f)]) if any(len(f) for f in frames) else pd.DataFrame()
        last = fit.notes.get(data.origins[-1]) if data.origins else None
        if last and last["not_fitted"]:
            fit.outcome, fit.reason = "not_fitted", last["not_fitted"]
    except Exception as e:  # a group's failure is data: every other group goes on
        fit = GroupFit(group, outcome="failed", reason=one_line(e))
    fit.seconds = round(time.monotonic() - t0, 2)
    return fit


def save_fit(folder: Path, fit: GroupFit) -> None:
    """``<folder>/<group>.pkl``, written whole or not at all."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{fit.group}.pkl.tmp"
    with open(tmp, "wb") as f:
        pickle.dump(fit, f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(folder / f"{fit.group}.pkl")


def load_fits(folder: Path, groups: list[str]) -> dict[str, GroupFit]:
    """Each of ``groups``' fits in ``folder``; a group without one (its mini-batch never
    finished) or with an unreadable one is a failed fit saying so."""
    fits = {}
    for g in groups:
        path = folder / f"{g}.pkl"
        try:
            with open(path, "rb") as f:
                fits[g] = pickle.load(f)
        except FileNotFoundError:
            fits[g] = GroupFit(g, "failed", "no result: its mini-batch failed (see the parallel step's logs)")
        except Exception as e:  # a corrupt file costs its group only
            fits[g] = GroupFit(g, "failed", f"unreadable fit: {one_line(e)}")
    return fits
