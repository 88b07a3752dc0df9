"""The booster a worker serves: loaded once per process, used by every request it handles.

Loading happens in ``create_app``, which Gunicorn runs in each worker after the fork
(``preload_app`` is off), so no OpenMP thread pool is ever shared across a fork, and XGBoost is
pinned to one thread: with one worker per core, more threads would only fight each other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

import numpy as np
from flask import Flask, current_app

from flask_app.errors import ApiError
from flask_app.explain import Explainer
from training.artifacts import Artifact, load_artifact

EXTENSION = "delay_model"


class DelayModel:
    """An artifact plus the prediction call the views use."""

    def __init__(self, artifact: Artifact) -> None:
        self.artifact = artifact
        self.spec = artifact.spec
        self.booster = artifact.booster
        self.version = artifact.version
        self.threshold = artifact.threshold
        self.metadata = artifact.metadata

    def predict(self, flights: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Probabilities of a >15 min delay, in the order of ``flights``."""
        matrix = self.spec.encode(flights)
        return self.booster.inplace_predict(matrix, validate_features=False)

    @cached_property
    def explainer(self) -> Explainer:
        return Explainer(self.booster, self.spec)

    def explain(self, flights: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Per-field log-odds contributions for each flight (``POST /predict?explain=true``)."""
        return self.explainer.explain(self.spec.encode(flights), list(flights))


def init_app(app: Flask) -> None:
    """Load the model named by ``MODEL_DIR``; a bad artifact raises and stops start-up."""
    app.extensions[EXTENSION] = (
        DelayModel(load_artifact(app.config["MODEL_DIR"])) if app.config["LOAD_MODEL"] else None)


def get_model() -> DelayModel:
    model = current_app.extensions.get(EXTENSION)
    if model is None:
        raise ApiError(503, "the model is not loaded yet; retry shortly")
    return model
