"""A second runtime for small calls: the booster's trees as ONNX, scored by ONNX Runtime.

Every XGBoost ``inplace_predict`` call pays a fixed setup (array interface and configuration
as JSON, predictor set-up) of about 0.4 ms however few rows it scores, which made a single new
flight cost twice a ``/health`` request. ONNX Runtime's tree-ensemble kernel scores the same
trees for one row in tens of microseconds, but is slower per row on large batches, so the
service uses it for calls of up to :data:`MAX_ROWS` rows and XGBoost above that
(docs/performance.md has the measurements).

The XGBoost booster stays the model of record: training writes it, its hash names the model
version, explanations (TreeSHAP) come from it. ``model.onnx`` is derived from it by
``make onnx`` (``python -m flask_app.onnx_model --model-dir DIR``, with onnxmltools, a dev
dependency) and written beside it with ``model.onnx.json``, which records the sha256 of the
booster it was converted from and of its own bytes. A worker uses the ONNX file only if both
hashes match the artifact it loaded and the two runtimes agree on a set of probe rows built
through the feature spec; otherwise it logs why and serves everything with XGBoost. Converting
at start-up instead would cost seconds per worker (onnxmltools walks every node in Python).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from training.artifacts import Artifact

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
ONNX_META_FILE = "model.onnx.json"
#: Calls of at most this many rows go to ONNX Runtime, larger ones to XGBoost.
MAX_ROWS = 32
#: Largest difference allowed between the runtimes on the probe rows at load time: both sum
#: the same float32 leaf values, in different orders, so they differ in the 7th decimal.
PROBE_TOLERANCE = 1e-5
PROBE_ROWS = 256
INPUT_NAME = "input"


@dataclass(frozen=True)
class OnnxPredictor:
    """An ONNX Runtime session over the booster's trees, one thread, no spinning."""

    session: Any
    output: str

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Probabilities of class 1 (float32), as the booster's ``inplace_predict`` gives."""
        return self.session.run([self.output], {INPUT_NAME: matrix})[0][:, 1]


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def probe_matrix(artifact: Artifact, rows: int = PROBE_ROWS, seed: int = 0) -> np.ndarray:
    """Encoded flights that cover every airline, destination, month and input level, built
    through the feature spec so that they follow whatever columns the model has."""
    spec = artifact.spec
    rng = random.Random(seed)
    start = datetime(2017, 1, 1)
    flights = []
    for i in range(rows):
        when = start + timedelta(minutes=rng.randrange(365 * 24 * 60))
        flight: dict[str, Any] = {"OPERA": spec.airlines[i % len(spec.airlines)],
                                  "TIPOVUELO": "IN"[i % 2], "MES": when.month}
        if i % 4 in (1, 3):
            flight["Fecha-I"] = when
        if i % 4 in (2, 3):
            flight["SIGLADES"] = spec.destinations[i % len(spec.destinations)]
        flights.append(flight)
    return spec.encode(flights)


def load_onnx(model_dir: str | os.PathLike, artifact: Artifact) -> OnnxPredictor | None:
    """The ONNX predictor for ``artifact`` if ``model_dir`` has a matching, working one;
    else ``None`` and one log line saying why (the service then uses XGBoost alone)."""
    directory = Path(model_dir)
    onnx_path, meta_path = directory / ONNX_FILE, directory / ONNX_META_FILE
    if not onnx_path.is_file() or not meta_path.is_file():
        log.warning("no %s in %s: every prediction goes through XGBoost (run `make onnx` for "
                    "the fast path)", ONNX_FILE, directory)
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("source_model_sha256") != artifact.metadata["model_sha256"]:
            raise ValueError(f"it was converted from another booster "
                             f"({str(meta.get('source_model_sha256'))[:16]}, not "
                             f"{artifact.version}); run `make onnx`")
        raw = onnx_path.read_bytes()
        if hashlib.sha256(raw).hexdigest() != meta.get("onnx_sha256"):
            raise ValueError(f"{ONNX_FILE} does not match the sha256 in {ONNX_META_FILE}")
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Small tensors only: no arena that grows to the largest call and keeps it.
        options.enable_cpu_mem_arena = False
        # One tree-ensemble node: nothing to optimize, and skipping it halves session set-up.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(raw, options, providers=["CPUExecutionProvider"])
        predictor = OnnxPredictor(session, meta.get("probabilities_output", "probabilities"))
        probe = probe_matrix(artifact)
        expected = artifact.booster.inplace_predict(probe, validate_features=False)
        worst = float(np.max(np.abs(predictor.predict(probe) - expected)))
        if not worst <= PROBE_TOLERANCE:
            raise ValueError(f"it disagrees with the booster by {worst:.2e} on probe rows")
    except Exception as exc:  # any failure: serve with XGBoost, say why
        log.warning("not using %s (every prediction goes through XGBoost): %s",
                    onnx_path, exc)
        return None
    return predictor


def export_onnx(model_dir: str | os.PathLike) -> dict[str, Any]:
    """Convert the artifact's booster to ``model.onnx`` + ``model.onnx.json`` beside it."""
    import onnxmltools
    from onnxmltools.convert import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    from training.artifacts import load_artifact, write_json

    directory = Path(model_dir)
    artifact = load_artifact(directory)
    model = convert_xgboost(
        artifact.booster, name=f"scl-delay-{artifact.version}",
        initial_types=[(INPUT_NAME, FloatTensorType([None, artifact.spec.n_features]))])
    raw = model.SerializeToString()
    meta = {
        "source_model_sha256": artifact.metadata["model_sha256"],
        "onnx_sha256": hashlib.sha256(raw).hexdigest(),
        "probabilities_output": model.graph.output[1].name,
        "converter": f"onnxmltools {onnxmltools.__version__}",
        "regenerate": "make onnx",
    }
    (directory / ONNX_FILE).write_bytes(raw)
    write_json(directory / ONNX_META_FILE, meta)
    return meta


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write model.onnx beside an artifact's booster.")
    parser.add_argument("--model-dir", default=os.environ.get("MODEL_DIR", "model_artifacts"))
    args = parser.parse_args(argv)
    meta = export_onnx(args.model_dir)
    print(f"{args.model_dir}/{ONNX_FILE}: from booster {meta['source_model_sha256'][:16]}")


if __name__ == "__main__":
    main()
