"""The training code's version: which code a model was trained by, so that a plan retrains the
groups whose production model was trained by other code (issue 23).

The forecast pipeline's components already have content versions (:mod:`shared.aml.assets`: the
component's YAML, every file of its code folder, ``pipelines/forecast/src/``, and the environment);
the ``azureml`` backend submits exactly those versions and tags the job with them
(``forecastops.components``). The training code's version is one hash over them: a changed line
of the pipeline's sources changes every component that ships them, and so this version.
"""

from __future__ import annotations

import hashlib

from shared.aml import assets
from shared.aml.catalog import load_catalog
from shared.mlops.batch import TRAIN_PIPELINE
from shared.mlops.cards import TrainingCode

__all__ = ["training_code"]


def training_code(pipeline: str = TRAIN_PIPELINE) -> TrainingCode:
    """The code ``pipeline`` trains with now: its components at the versions the repo's content
    gives (those the ``azureml`` backend pins), and one hash over ``name:version`` of each."""
    local = load_catalog()[pipeline].local
    every = assets.components()
    versions = {name: every[name].version for name in sorted(local.components if local else {})}
    text = ",".join(f"{name}:{version}" for name, version in versions.items())
    return TrainingCode(version=hashlib.sha256(text.encode()).hexdigest()[:16], components=versions)
