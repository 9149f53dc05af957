"""A group's model saved in MLflow format (``mlflow.pyfunc``), and the input it predicts from.

:func:`save` writes one folder per group (train's ``<out>/mlflow/<group>/``; the registry's model
version is that folder, file for file)::

    MLmodel                  the flavors (python_function), the signature, the input example's name,
                             the code path, and metadata: group, origin, trained_at, the blend's
                             weights and the velocity classes (the SKUs of the group at training);
                             no path of the node that trained it (an artifact's uri is its path)
    python_model.pkl         the pyfunc (forecast_pyfunc.GroupForecaster: a class of code/, no state)
    artifacts/model/model.pkl    the GroupModel: encoder, LASSO, MLP, weights, velocity classes
    artifacts/model/lgbm.txt     the run's LightGBM booster and its categories (absent when the run
    artifacts/model/lgbm.json    had none: the LightGBM member is then the pooled seasonal naive)
    code/forecast_pyfunc.py, code/models.py, code/backtest.py, code/forecast_lib.py
    input_example.json, serving_input_example.json, requirements.txt, python_env.yaml, conda.yaml

and loads with MLflow alone: ``mlflow.pyfunc.load_model(folder).predict(frame)``, ``frame`` the
group's rows in :data:`forecast_pyfunc.INPUT`'s columns (:func:`model_frame`).
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from backtest import Booster, Data
from forecast_lib import NUMERIC, without_paths
from forecast_pyfunc import IDS, INPUT, OUTPUT, GroupForecaster
from models import GroupModel

SRC = Path(__file__).resolve().parent
#: the modules the model runs (its ``code_paths``): the pyfunc and what it imports
CODE = ("forecast_pyfunc.py", "models.py", "backtest.py", "forecast_lib.py")
#: what the model needs installed (given, so MLflow does not infer them model by model)
REQUIREMENTS = ("mlflow-skinny==3.17.2", "numpy==2.4.6", "pandas==3.1.1", "scikit-learn==1.9.1", "lightgbm==4.7.0")
#: rows of the input example (the first of the group's holdout rows)
EXAMPLE_ROWS = 5


def model_frame(data: Data, rows: pd.DataFrame, origin: str) -> pd.DataFrame:
    """``rows`` (horizon rows of ``origin``, as ``Data.horizon_rows`` gives them) as the model's
    input: the ids as text, every feature and what is known at ``origin`` as numbers."""
    frame = pd.DataFrame({c: rows[c].astype(str).to_numpy() for c in IDS})
    for c in NUMERIC:
        frame[c] = rows[c].to_numpy(float)
    frame["pooled_seasonal"] = np.asarray(data.pooled_seasonal(rows, origin), float)
    frame["upper"] = np.asarray(data.upper_bound(rows, origin), float)
    x, offset = data.lgbm_features(rows, origin)
    for c in x.columns:
        frame[f"lgbm_{c}"] = x[c].to_numpy(float)
    frame["lgbm_offset"] = np.asarray(offset, float)
    return frame[list(INPUT)]


def signature() -> Any:
    """The model's signature, the same for every group: every input column present (a number may
    be missing, NaN), the ids text and the rest numbers (float: MLflow does not take an integer
    column for a double one), and the output's columns (forecast_pyfunc.OUTPUT)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = [ColSpec("string", c) for c in IDS] + [ColSpec("double", c) for c in INPUT[len(IDS) :]]
    types = {"store_id": "string", "sku": "string", "week_start": "string", "new_sku": "boolean"}
    outputs = [ColSpec(types.get(c, "double"), c) for c in OUTPUT]
    return ModelSignature(Schema(inputs), Schema(outputs))


def save(folder: Path, model: GroupModel, booster: Booster | None, example: pd.DataFrame) -> None:
    """``model`` (and the run's ``booster``) as an MLflow model in ``folder`` (replaced), its
    signature and input example from ``example`` (the group's rows, :func:`model_frame`)."""
    from mlflow.pyfunc import save_model

    example = example.head(EXAMPLE_ROWS).reset_index(drop=True)
    metadata: dict[str, Any] = {
        "group": model.group,
        "origin": model.origin,
        "trained_at": model.trained_at,
        "n_train": model.n_train,
        "weights": model.weights,
        "velocity_classes": list(getattr(model, "skus", []) or []),
        "lgbm": booster is not None,
    }
    if folder.exists():
        shutil.rmtree(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        parts = Path(tmp) / "model"
        parts.mkdir()
        with open(parts / "model.pkl", "wb") as f:
            pickle.dump(model, f, protocol=pickle.HIGHEST_PROTOCOL)
        if booster is not None:
            booster.save(parts)
        # MLflow's notices (its schema hints, cloudpickle's caution, a progress bar) are not the step's
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        logger = logging.getLogger("mlflow")
        level = logger.level
        logger.setLevel(logging.ERROR)
        before = list(sys.path)  # MLflow's check of the input example loads the model: its code/ joins sys.path
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                save_model(
                    path=str(folder),
                    python_model=GroupForecaster(),
                    artifacts={"model": str(parts)},
                    code_paths=[str(SRC / name) for name in CODE],
                    signature=signature(),
                    input_example=example if len(example) else None,  # a group with no holdout rows: none
                    pip_requirements=list(REQUIREMENTS),
                    metadata=metadata,
                )
                _relative_artifacts(folder)
        finally:
            logger.setLevel(level)
            sys.path[:] = before


def _relative_artifacts(folder: Path) -> None:
    """The MLmodel of ``folder`` without the training node's temporary folder: MLflow records each
    artifact's source (``uri``, here ``/tmp/tmpXXXX/model``, read by nothing: a model loads its
    artifacts from their ``path`` in the model); it becomes that path (``artifacts/model``)."""
    from mlflow.models import Model

    mlmodel = Model.load(str(folder / "MLmodel"))
    for artifact in (mlmodel.flavors.get("python_function", {}).get("artifacts") or {}).values():
        artifact["uri"] = artifact["path"]
    mlmodel.save(str(folder / "MLmodel"))


def public_error(error: BaseException, base: Path, label: str) -> str:
    """``error`` in one line fit to publish (a reason goes to the batch's summary, lineage and the
    report): its type and the first line of its text, ``base`` (a model's folder on this node)
    named ``label`` (the folder as the models or production folder names it) and any other
    absolute path by its last part (``.../name``): a node's paths (``/mnt/azureml/cr/j/<job>/...``,
    a temporary folder) are never published."""
    text = str(error)
    for path in sorted({str(base), str(Path(base).resolve())}, key=len, reverse=True):
        text = text.replace(path, label)
    text = without_paths(text)
    first = (text.strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first}".strip().rstrip(":")[:240]
