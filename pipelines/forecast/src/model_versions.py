"""A model version of a scoring run's production folder, read: ``<group>/`` (or its ``previous/``)
holds the version's files as the registry has them, either an MLflow model (``MLmodel`` at the top:
loaded with ``mlflow.pyfunc.load_model``, issue 23) or, for a version registered before the models
were MLflow models, its pickle (``model.pkl``) and the run's booster (``lgbm.txt``, ``lgbm.json``).
Both forecast the same rows alike (:class:`Loaded`); whatever a version lacks or cannot read is a
:class:`ProductionError` saying so in one line, which costs its group only (score_production.py).
"""

from __future__ import annotations

import pickle
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from backtest import Booster, Data
from mlflow_model import model_frame
from models import GroupModel, forecast

BOOSTER_FILES = ("lgbm.txt", "lgbm.json")


class ProductionError(ValueError):
    """The production folder cannot be scored with; the message says why, in one line."""


@dataclass(frozen=True)
class Loaded:
    """A model version read from the production folder: its group, the SKUs of its velocity
    classes (None: a model trained before they were stored with it) and how it forecasts rows
    (``(data, rows, origin)`` -> a frame with ``store_id``, ``sku``, ``week_start``, ``forecast``)."""

    group: str
    skus: set[str] | None
    forecast: Callable[[Data, pd.DataFrame, str], pd.DataFrame]
    #: ``mlflow`` (an MLmodel, loaded with mlflow.pyfunc.load_model) or ``pickle`` (model.pkl)
    kind: str


def load_model(folder: Path, group: str, sub: str = "") -> Loaded:
    """A group's model version; ``sub``: a subfolder of the group's (``previous``). A version with
    an ``MLmodel`` is an MLflow model (:func:`load_mlflow`); one without, registered before the
    models were (issue 23), is read from its ``model.pkl`` and booster files (:func:`load_pickle`)."""
    where = Path(folder) / group / sub if sub else Path(folder) / group
    if (where / "MLmodel").is_file():
        return load_mlflow(where, group)
    model, booster = load_pickle(where, group)
    return Loaded(
        model.group, _classes(model), lambda data, rows, origin: forecast({group: model}, booster, data, rows, origin),
        "pickle",
    )  # fmt: skip


def load_mlflow(where: Path, group: str) -> Loaded:
    """The MLflow model in ``where`` (``mlflow.pyfunc.load_model``), checked to be ``group``'s; its
    forecast is its ``predict`` of the rows' model frame (mlflow_model.model_frame)."""
    before = list(sys.path)
    try:
        with warnings.catch_warnings():  # MLflow's notices about itself are not the step's (-W error)
            warnings.simplefilter("ignore")
            import mlflow.pyfunc

            pyfunc = mlflow.pyfunc.load_model(str(where))
    except Exception as e:  # a corrupt MLmodel, a missing artifact, a model that does not unpickle
        raise ProductionError(f"{group}: {group}/MLmodel cannot be read ({type(e).__name__}: {e})") from None
    finally:
        # load_model puts the model's code/ first on sys.path: the step's own modules (imported
        # already, the same code when the model was trained by this code) stay the ones found
        sys.path[:] = before
    meta = pyfunc.metadata.metadata or {}
    if meta.get("group") != group:
        raise ProductionError(f"{group}: {group}/MLmodel is the model of {meta.get('group')!r}")
    classes = meta.get("velocity_classes")
    skus = {str(k) for k in classes} if isinstance(classes, list) else None

    def predict(data: Data, rows: pd.DataFrame, origin: str) -> pd.DataFrame:
        return pyfunc.predict(model_frame(data, rows, origin))

    return Loaded(group, skus, predict, "mlflow")


def load_pickle(where: Path, group: str) -> tuple[GroupModel, Booster | None]:
    """A version's pickled model and its booster (None when the version has no booster files)."""
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


def _classes(model: GroupModel) -> set[str] | None:
    """The SKUs whose velocity class put them in the model's group at training (None: a model
    trained before the classes were stored with it)."""
    skus = getattr(model, "skus", None)
    return set(skus) if skus is not None else None
