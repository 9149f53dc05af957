"""A model version of a scoring run's production folder, read: ``<group>/`` (or its ``previous/``)
holds the version's files as the registry has them, either an MLflow model (``MLmodel`` at the top:
loaded with ``mlflow.pyfunc.load_model``, issue 23) or, for a version registered before the models
were MLflow models, its pickle (``model.pkl``) and the run's booster (``lgbm.txt``, ``lgbm.json``).
Both forecast the same rows alike (:class:`Loaded`); whatever a version lacks or cannot read is a
:class:`ProductionError` saying so in one line, which costs its group only (score_production.py).

An MLflow model runs the code saved inside it (its ``code/``: ``forecast_pyfunc.py``, ``models.py``,
``backtest.py``, ``forecast_lib.py``), not the step's, though the step has imported modules of the
same names: it is loaded and it predicts with its own modules in ``sys.modules`` and its ``code/``
first on ``sys.path`` (:class:`ModelCode`), and the step's modules are put back after each. So a
previous version trained by older code forecasts what it did when it was trained, and what a
notebook gets from the version. A pickle of before has no code with it: it runs the step's.

A reason is published (the summary, the batch's fallback_why, lineage, the report): it names the
error's type and paths relative to the production folder (``<group>/artifacts/model/model.pkl``),
never the node's; the error's whole text goes to the node's log (stderr).
"""

from __future__ import annotations

import pickle
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pandas as pd
from backtest import Booster, Data
from mlflow_model import model_frame, public_error
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
    forecast is its ``predict`` of the rows' model frame (mlflow_model.model_frame). It loads and
    predicts with its own code (:class:`ModelCode`)."""
    try:
        code = ModelCode(_code_folder(where))
        with code.active(), warnings.catch_warnings():  # MLflow's notices about itself are not the step's (-W error)
            warnings.simplefilter("ignore")
            import mlflow.pyfunc

            pyfunc = mlflow.pyfunc.load_model(str(where))
    except Exception as e:  # a corrupt MLmodel, a missing artifact, a model that does not unpickle or import
        raise ProductionError(
            f"{group}: {_label(where, group)}/MLmodel cannot be read ({public(e, where, group)})"
        ) from None
    meta = pyfunc.metadata.metadata or {}
    if meta.get("group") != group:
        raise ProductionError(f"{group}: {group}/MLmodel is the model of {meta.get('group')!r}")
    classes = meta.get("velocity_classes")
    skus = {str(k) for k in classes} if isinstance(classes, list) else None

    def predict(data: Data, rows: pd.DataFrame, origin: str) -> pd.DataFrame:
        frame = model_frame(data, rows, origin)  # the input, by the signature every version shares
        with code.active():
            return pyfunc.predict(frame)

    return Loaded(group, skus, predict, "mlflow")


#: one model's code in sys.modules at a time (the steps score one group at a time; a thread may not)
_SWAP = threading.RLock()


@dataclass
class ModelCode:
    """A model version's own code: the modules of its ``code/`` folder (``folder``; None: it has
    none). While :meth:`active`, the names of those modules are the model's (imported from its
    folder the first time, its very module objects after) and its folder is first on ``sys.path``;
    on leaving, the step's modules of those names (and ``sys.path``) are back as they were. No byte
    code is written into the version's folder (it stays file for file as registered)."""

    folder: Path | None
    modules: dict[str, ModuleType] = field(default_factory=dict)

    def names(self) -> set[str]:
        """The top-level module names the code folder provides (``x.py``, a package ``x/``)."""
        if self.folder is None or not self.folder.is_dir():
            return set()
        found = {p.stem for p in self.folder.glob("*.py")}
        return found | {p.name for p in self.folder.iterdir() if (p / "__init__.py").is_file()}

    @contextmanager
    def active(self) -> Iterator[None]:
        names = self.names()

        def own(name: str) -> bool:
            return name.partition(".")[0] in names

        with _SWAP:
            step = {n: m for n, m in sys.modules.items() if own(n)}
            path, bytecode = list(sys.path), sys.dont_write_bytecode
            for n in step:
                del sys.modules[n]
            sys.modules.update(self.modules)
            if self.folder is not None:
                sys.path.insert(0, str(self.folder))
            sys.dont_write_bytecode = True
            try:
                yield
            finally:
                mine = {n: m for n, m in sys.modules.items() if own(n)}
                for n in mine:
                    del sys.modules[n]
                self.modules.update(mine)  # kept: the loaded model's classes and functions use them
                sys.modules.update(step)
                sys.path[:] = path  # load_model puts the model's code/ first on sys.path too
                sys.dont_write_bytecode = bytecode


def _code_folder(where: Path) -> Path | None:
    """The folder of the model's code (its MLmodel's ``python_function.code``), None without one."""
    import yaml

    with open(where / "MLmodel", encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    flavors = doc.get("flavors") if isinstance(doc, dict) else None
    flavor = flavors.get("python_function") if isinstance(flavors, dict) else None
    code = flavor.get("code") if isinstance(flavor, dict) else None
    return where / code if isinstance(code, str) and code else None


def public(error: BaseException, where: Path, group: str) -> str:
    """``error`` as a published reason says it (mlflow_model.public_error: its type and first line,
    the version's folder named as the production folder does, ``<group>`` or ``<group>/previous``);
    its whole text goes to stderr, the node's log."""
    print(f"model_versions: {group}: {where}: {type(error).__name__}: {error}", file=sys.stderr)
    return public_error(error, where, _label(where, group))


def _label(where: Path, group: str) -> str:
    """The version's folder as the production folder names it: ``<group>`` or ``<group>/<sub>``."""
    parts = Path(where).parts
    if group not in parts:
        return group
    return "/".join(parts[len(parts) - 1 - parts[::-1].index(group) :])


def load_pickle(where: Path, group: str) -> tuple[GroupModel, Booster | None]:
    """A version's pickled model and its booster (None when the version has no booster files)."""
    path = where / "model.pkl"
    if not path.is_file():
        raise ProductionError(f"{group}: {group}/model.pkl is missing")
    try:
        with open(path, "rb") as f:
            model = pickle.load(f)
    except Exception as e:  # a pickle can fail in any way its classes do
        raise ProductionError(f"{group}: {group}/model.pkl cannot be read ({public(e, where, group)})") from None
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
        raise ProductionError(f"{group}: its booster cannot be read ({public(e, where, group)})") from None
    return model, booster


def _classes(model: GroupModel) -> set[str] | None:
    """The SKUs whose velocity class put them in the model's group at training (None: a model
    trained before the classes were stored with it)."""
    skus = getattr(model, "skus", None)
    return set(skus) if skus is not None else None
