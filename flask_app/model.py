"""The booster a worker serves: loaded once per process, used by every request it handles.

Loading happens in ``create_app``, which Gunicorn runs in each worker after the fork
(``preload_app`` is off), so no OpenMP thread pool is ever shared across a fork, and XGBoost is
pinned to one thread: with one worker per core, more threads would only fight each other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property, lru_cache
from typing import Any

import gevent.monkey
import numpy as np
from flask import Flask, current_app

from flask_app import fast_path
from flask_app.answers import AnswerCache
from flask_app.coalesce import PredictionCoalescer
from flask_app.errors import ApiError
from flask_app.explain import Explainer
from flask_app.metrics import BOOSTER_CALLS, BOOSTER_ROWS, FAST_PATH_CALLS, FAST_PATH_ROWS
from training.artifacts import Artifact, load_artifact

EXTENSION = "delay_model"
# Whole answers remembered per worker, by request body (~0.65 KB each when full: ~10 MiB).
ANSWER_CACHE = 16384
# Encoded rows remembered per worker (~0.75 KB each: the 376-byte row is the key). Fewer than
# answers: the answer cache takes every exact repeat first, and new bodies almost never share
# a row (the hour feature carries the minutes), so what is left for the row cache is one
# flight sent in differently written bodies (docs/performance.md, issue 15 round 4).
ROW_CACHE = 4096


class DelayModel:
    """An artifact plus the prediction call the views use."""

    def __init__(self, artifact: Artifact, coalesce: bool = False,
                 fast: fast_path.OnnxPredictor | None = None) -> None:
        self.artifact = artifact
        self.spec = artifact.spec
        self.booster = artifact.booster
        self.version = artifact.version
        self.threshold = artifact.threshold
        self.metadata = artifact.metadata
        # Small calls skip the booster's fixed cost through ONNX Runtime
        # (flask_app/fast_path.py); None: XGBoost serves every call.
        self.fast = fast
        # Under gevent, concurrent requests share prediction calls (flask_app/coalesce.py);
        # the runtime is chosen by the size of the shared call.
        self._coalescer = PredictionCoalescer(self._score) if coalesce else None
        # Per worker, per model: a reload builds a new DelayModel and so fresh caches.
        self._predict_row = lru_cache(maxsize=ROW_CACHE)(self._predict_encoded_row)
        # Whole answers to repeated single-flight bodies (flask_app/answers.py); they name this
        # model's version, so they live and die with it.
        self.answers = AnswerCache(ANSWER_CACHE)

    def predict(self, flights: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Probabilities of a >15 min delay, in the order of ``flights``."""
        matrix = self.spec.encode(flights)
        if len(matrix) == 1:
            return self._predict_row(matrix.tobytes())
        return self._run_booster(matrix)

    def _booster_predict(self, matrix: np.ndarray) -> np.ndarray:
        BOOSTER_CALLS.inc()
        BOOSTER_ROWS.inc(len(matrix))
        return self.booster.inplace_predict(matrix, validate_features=False)

    def _score(self, matrix: np.ndarray) -> np.ndarray:
        """One prediction call: ONNX Runtime for a few rows, the booster for more."""
        if self.fast is not None and len(matrix) <= fast_path.MAX_ROWS:
            FAST_PATH_CALLS.inc()
            FAST_PATH_ROWS.inc(len(matrix))
            return self.fast.predict(matrix)
        return self._booster_predict(matrix)

    def _run_booster(self, matrix: np.ndarray) -> np.ndarray:
        if self._coalescer is not None:
            return self._coalescer.predict(matrix)
        return self._score(matrix)

    def _predict_encoded_row(self, row: bytes) -> np.ndarray:
        """The booster's answer for one encoded row (the bytes of a float32 1 x n matrix).

        Each ``inplace_predict`` call pays a fixed setup cost (array interface and config as
        JSON, predictor setup) however small the input, which dominated single-flight requests
        in the profile. Single flights repeat (the same route and month, often with no
        departure time), so ``__init__`` wraps this in an LRU cache keyed by the exact encoded
        bytes: a hit returns the very array the booster returned for those bytes (read-only,
        so no caller can alter a cached answer).
        """
        matrix = np.frombuffer(row, dtype=np.float32).reshape(1, -1)
        # A copy: under coalescing the booster's output is a slice of an array shared with
        # other requests (up to thousands of rows), which a cached view would keep alive.
        out = self._run_booster(matrix).copy()
        out.setflags(write=False)
        return out

    @cached_property
    def explainer(self) -> Explainer:
        return Explainer(self.booster, self.spec)

    def explain(self, flights: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Per-field log-odds contributions for each flight (``POST /predict?explain=true``)."""
        return self.explainer.explain(self.spec.encode(flights), list(flights))


def init_app(app: Flask) -> None:
    """Load the model named by ``MODEL_DIR``; a bad artifact raises and stops start-up."""
    if not app.config["LOAD_MODEL"]:
        app.extensions[EXTENSION] = None
        return
    artifact = load_artifact(app.config["MODEL_DIR"])
    fast = fast_path.build(artifact) if app.config["FAST_PATH"] == "auto" else None
    app.extensions[EXTENSION] = DelayModel(
        artifact, coalesce=coalescing_enabled(app.config["PREDICT_COALESCING"]), fast=fast)


def coalescing_enabled(setting: str) -> bool:
    """``auto`` batches across requests only in a gevent-patched worker, where requests are
    greenlets; Flask's test client and threaded servers call the booster directly."""
    patched = gevent.monkey.is_module_patched("socket")
    if setting == "on" and not patched:
        raise ValueError("PREDICT_COALESCING=on needs gevent-patched workers (Gunicorn's gevent "
                         "worker); use auto or off elsewhere")
    return patched if setting == "auto" else setting == "on"


def get_model() -> DelayModel:
    model = current_app.extensions.get(EXTENSION)
    if model is None:
        raise ApiError(503, "the model is not loaded yet; retry shortly")
    return model
