"""Part of stage 5: the booster as an ONNX tree ensemble, the service's fast path for small calls.

XGBoost's ``inplace_predict`` pays a fixed cost per call (~200 µs for the shipped model) that
dwarfs one flight's share; ONNX Runtime's tree-ensemble kernel scores one flight in ~17 µs
(docs/performance.md). The XGBoost booster stays the model of record: training, the artifact's
version, TreeSHAP explanations and large batches use it; this file is derived from it by
onnxmltools (a training-side dependency only) and written beside it, hash-checked, so the
service never converts anything at start-up.

``python -m training.onnx_export model_artifacts`` adds (or rewrites) the fast path of an
existing artifact without retraining.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import xgboost as xgb

#: The newest opset onnxmltools' XGBoost converter emits; ONNX Runtime reads it.
TARGET_OPSET = 15
INPUT_NAME = "input"
#: The output holding [P(on time), P(delayed)] per row.
PROBABILITIES = "probabilities"


class ExportError(Exception):
    """The booster could not be converted (missing converter, unsupported objective)."""


def booster_to_onnx(booster: xgb.Booster, n_features: int, name: str) -> tuple[bytes, dict]:
    """The booster as serialized ONNX, and what to record of the conversion in the metadata.

    ``name`` becomes the graph's name (onnxmltools would put a random UUID there), so the same
    booster always gives the same bytes and ``make train`` stays reproducible.
    """
    try:
        import onnxmltools
        from onnxmltools.convert import convert_xgboost
        from onnxmltools.convert.common.data_types import FloatTensorType
    except ImportError as exc:
        raise ExportError(f"onnxmltools is not installed ({exc}); "
                          "install requirements-dev.txt to write the fast path") from exc
    objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
    if objective != "binary:logistic":
        raise ExportError(f"only binary:logistic boosters are exported, not {objective}")
    try:
        model = convert_xgboost(booster, name=name,
                                initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
                                target_opset=TARGET_OPSET)
    except Exception as exc:  # the converter raises many types; each means "no fast path"
        raise ExportError(f"onnxmltools could not convert the booster: {exc}") from exc
    model.graph.name = name
    info = {"format": "onnx", "opset": TARGET_OPSET, "input": INPUT_NAME,
            "output": PROBABILITIES, "converter": f"onnxmltools {onnxmltools.__version__}"}
    return model.SerializeToString(), info


def add_fast_path(model_dir: Path) -> dict[str, Any]:
    """Write the fast path of the artifact in ``model_dir`` and record it in its metadata."""
    from training.artifacts import load_artifact, write_fast_path

    artifact = load_artifact(model_dir)
    return write_fast_path(model_dir, artifact.booster, artifact.spec.n_features,
                           dict(artifact.metadata))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path, help="an artifact directory (model_artifacts)")
    args = parser.parse_args(argv)
    try:
        fast = add_fast_path(args.model_dir)["fast_path"]
    except ExportError as exc:
        print(f"no fast path written: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.model_dir / fast['file']} (sha256 {fast['sha256'][:16]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
