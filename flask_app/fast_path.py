"""ONNX Runtime for small prediction calls, built from the artifact's ``model.onnx``.

An XGBoost ``inplace_predict`` call costs ~200 µs however few rows it scores; ONNX Runtime's
tree-ensemble kernel scores one flight in ~17 µs and stays cheaper up to a few dozen rows, while
XGBoost is faster on large batches (docs/performance.md). So a prediction call of few rows
(after the coalescer has gathered concurrent requests: outside it, one-row calls cost more CPU
under load) goes to ONNX Runtime, and everything larger goes to the booster. The booster stays
the model of record: before the session is used, it must give the booster's probabilities on
probe flights covering every airline, destination and input level; anything else (ONNX Runtime
missing, a session that fails, a disagreement) leaves the worker on XGBoost alone, with one
log line saying why.

onnxruntime is imported here, in the worker: its native library starts a thread when loaded,
and the Gunicorn master, which forks the workers, must hold none.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import xgboost as xgb

from training.artifacts import Artifact
from training.features import FLIGHT_TYPES, TIME_COLUMNS, FeatureSpec

log = logging.getLogger(__name__)

#: Calls of at most this many rows go to ONNX Runtime (crossover measured in
#: docs/performance.md: ~10x cheaper for one row, even at ~32, slower beyond).
MAX_ROWS = 32
#: Largest difference from the booster allowed on the probe flights: float32 rounding of the
#: two libraries' sums of 800+ leaves differ by ~1e-7; a wrong conversion differs by far more.
TOLERANCE = 1e-5


class OnnxPredictor:
    """A one-thread ONNX Runtime session giving P(delayed) per row, as the booster does."""

    def __init__(self, model: bytes, info: dict[str, Any]) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # One worker per core: a thread pool would only compete with the other worker.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only: its warnings are not this log's format
        self._session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self._input = str(info.get("input", "input"))
        self._outputs = [str(info.get("output", "probabilities"))]
        self._run = self._session.run

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """P(delayed) for each row of a float32 matrix (NaN = missing, as for the booster)."""
        return self._run(self._outputs, {self._input: matrix})[0][:, 1]


def probe_rows(spec: FeatureSpec) -> np.ndarray:
    """Rows that reach every airline, destination, flight type, month and input level.

    The departure columns get a deterministic spread of the values they take (weekday, hour,
    0/1 flags, capped day counts) instead of encoded dates: the check is about the trees, and
    building Chile's holiday calendar for it would add ~0.15 s to every worker's start.
    """
    flights = []
    for n, airline in enumerate(spec.airlines):
        for kind in FLIGHT_TYPES:
            flights.append({"OPERA": airline, "TIPOVUELO": kind, "MES": 1 + (2 * n + 1) % 12})
    for n, destination in enumerate(spec.destinations):
        flights.append({"OPERA": spec.airlines[n % len(spec.airlines)],
                        "TIPOVUELO": FLIGHT_TYPES[n % 2], "MES": 1 + n % 12,
                        "SIGLADES": destination})
    plain = spec.encode(flights)
    timed = plain.copy()
    n = np.arange(len(timed))
    spread = {"day_of_week": n % 7, "hour": (n * 37 % 240) / 10, "high_season": n % 2,
              "holiday": n // 2 % 2, "days_to_holiday": n % 9, "days_since_holiday": n // 3 % 9,
              "long_weekend": n // 5 % 2}
    for column in TIME_COLUMNS:
        timed[:, spec.feature_names.index(column)] = spread[column]
    return np.concatenate([plain, timed])


def build(artifact: Artifact) -> OnnxPredictor | None:
    """The artifact's fast path, checked against its booster; None (and why, in the log) if
    there is none or it cannot be trusted."""
    if artifact.fast_path is None:
        log.info("model %s has no fast path (model.onnx): XGBoost serves every call",
                 artifact.version)
        return None
    try:
        predictor = OnnxPredictor(artifact.fast_path, artifact.metadata["fast_path"])
        gap = disagreement(predictor, artifact.booster, probe_rows(artifact.spec))
    except Exception as exc:  # ImportError, ONNX Runtime's own errors: fall back either way
        log.warning("fast path of model %s unusable, XGBoost serves every call: %s: %s",
                    artifact.version, type(exc).__name__, exc)
        return None
    if not gap <= TOLERANCE:
        log.warning("fast path of model %s disagrees with its booster by %.3g on the probe "
                    "flights (allowed %g): XGBoost serves every call", artifact.version, gap,
                    TOLERANCE)
        return None
    log.info("model %s: ONNX Runtime serves calls of up to %d flights (probe gap %.2g)",
             artifact.version, MAX_ROWS, gap)
    return predictor


def disagreement(predictor: OnnxPredictor, booster: xgb.Booster, rows: np.ndarray) -> float:
    """Largest absolute difference between the two runtimes' probabilities on ``rows``."""
    expected = booster.inplace_predict(rows, validate_features=False)
    return float(np.max(np.abs(predictor.predict(rows) - expected)))
