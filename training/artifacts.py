"""Stage 5: the model artifact on disk, written by training and read by every service worker.

An artifact is a directory with the booster in XGBoost's own UBJ format (``model.ubj``) and
``metadata.json`` (version, provenance, feature spec, threshold, holdout metrics), plus, where
the converter is installed, the same trees as ONNX (``model.onnx``, the service's fast path for
small calls: training/onnx_export.py). Nothing in it is executable: loading parses JSON and
hands bytes to XGBoost (and ONNX Runtime), never pickle. The model version
is a content hash of the booster file, and loading checks that hash, so a truncated or swapped
file is refused with a clear message instead of serving wrong answers.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xgboost as xgb

from training.features import FeatureSpec

MODEL_FILE = "model.ubj"
METADATA_FILE = "metadata.json"
FAST_PATH_FILE = "model.onnx"


class ArtifactError(Exception):
    """The artifact directory cannot be served; the message says what is wrong and where."""


@dataclass(frozen=True)
class Artifact:
    booster: xgb.Booster
    metadata: dict[str, Any]
    spec: FeatureSpec
    #: The serialized ONNX form of ``booster`` (hash-checked), or None if the artifact has none.
    fast_path: bytes | None = None

    @property
    def version(self) -> str:
        return str(self.metadata["model_version"])

    @property
    def threshold(self) -> float:
        return float(self.metadata["threshold"])


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_json(path: Path, data: Any) -> None:
    """Stable JSON (sorted keys, fixed indent) so identical content gives identical bytes."""
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                    encoding="utf-8")


def save_artifact(out_dir: str | os.PathLike, booster: xgb.Booster, spec: FeatureSpec,
                  threshold: float, metadata: dict[str, Any]) -> dict[str, Any]:
    """Write ``model.ubj``, ``model.onnx`` (when it can be made) and ``metadata.json``; return
    the metadata as written.

    The files are written atomically-enough for a reload: each goes to a temporary name in the
    same directory and is renamed into place, models first, so a reader never pairs new
    metadata with an old model without the hash check noticing.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    raw = bytes(booster.save_raw(raw_format="ubj"))
    digest = sha256_bytes(raw)
    full = {
        **metadata,
        "model_file": MODEL_FILE,
        "model_format": "xgboost-ubj",
        "model_sha256": digest,
        "model_version": digest[:16],
        "feature_spec": spec.to_dict(),
        "threshold": float(threshold),
    }
    full.pop("fast_path", None)
    _replace(out / MODEL_FILE, raw)
    return write_fast_path(out, booster, spec.n_features, full)


def write_fast_path(out: Path, booster: xgb.Booster, n_features: int,
                    metadata: dict[str, Any]) -> dict[str, Any]:
    """Convert ``booster`` to ONNX beside it and write ``metadata`` naming it (its sha256);
    if it cannot be converted, say why on stderr and write ``metadata`` without it (the
    service then predicts with XGBoost alone)."""
    from training.onnx_export import ExportError, booster_to_onnx

    full = dict(metadata)
    try:
        onnx, info = booster_to_onnx(booster, n_features, str(full["model_version"]))
    except ExportError as exc:
        print(f"model artifact without a fast path: {exc}", file=sys.stderr)
        full.pop("fast_path", None)
        (out / FAST_PATH_FILE).unlink(missing_ok=True)
    else:
        _replace(out / FAST_PATH_FILE, onnx)
        full["fast_path"] = {**info, "file": FAST_PATH_FILE, "sha256": sha256_bytes(onnx)}
    tmp_meta = out / f".{METADATA_FILE}.tmp"
    write_json(tmp_meta, full)
    os.replace(tmp_meta, out / METADATA_FILE)
    return full


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def load_artifact(model_dir: str | os.PathLike, nthread: int = 1) -> Artifact:
    """Load and verify an artifact; raise :class:`ArtifactError` on anything unservable."""
    directory = Path(model_dir)
    meta_path = directory / METADATA_FILE
    if not meta_path.is_file():
        raise ArtifactError(f"no {METADATA_FILE} in MODEL_DIR={directory} "
                            "(run `make train` or point MODEL_DIR at a trained artifact)")
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{meta_path} is not valid JSON: {exc}") from exc
    if not isinstance(metadata, dict):
        raise ArtifactError(f"{meta_path} must hold a JSON object")
    for key in ("model_file", "model_sha256", "model_version", "feature_spec", "threshold"):
        if key not in metadata:
            raise ArtifactError(f"{meta_path} lacks the key {key!r}")

    model_path = directory / str(metadata["model_file"])
    raw = _read_checked(model_path, metadata["model_sha256"], "model file", meta_path)
    try:
        spec = FeatureSpec.from_dict(metadata["feature_spec"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"feature_spec in {meta_path} is unusable: {exc}") from exc
    try:
        booster = xgb.Booster(params={"nthread": nthread}, model_file=bytearray(raw))
    except xgb.core.XGBoostError as exc:
        raise ArtifactError(f"XGBoost cannot read {model_path}: {exc}") from exc
    if booster.num_features() != spec.n_features:
        raise ArtifactError(f"{model_path} expects {booster.num_features()} features but the "
                            f"feature spec in {meta_path} defines {spec.n_features}")
    threshold = metadata["threshold"]
    if not isinstance(threshold, int | float) or not 0.0 < float(threshold) < 1.0:
        raise ArtifactError(f"threshold {threshold!r} in {meta_path} is not a probability")
    return Artifact(booster=booster, metadata=metadata, spec=spec,
                    fast_path=_read_fast_path(directory, metadata, meta_path))


def _read_fast_path(directory: Path, metadata: dict[str, Any], meta_path: Path) -> bytes | None:
    """The ONNX bytes the metadata names, checked like the booster: a named file that is
    missing or altered makes the whole artifact unservable, as a bad booster does."""
    fast = metadata.get("fast_path")
    if fast is None:
        return None
    if not isinstance(fast, dict) or not {"file", "sha256"} <= fast.keys():
        raise ArtifactError(f"fast_path in {meta_path} must name a file and its sha256")
    return _read_checked(directory / str(fast["file"]), fast["sha256"], "fast-path file",
                         meta_path)


def _read_checked(path: Path, sha256: str, what: str, meta_path: Path) -> bytes:
    """The bytes of a file the metadata names, if they have the sha256 it gives."""
    if not path.is_file():
        raise ArtifactError(f"{what} {path} named in {meta_path} does not exist")
    data = path.read_bytes()
    if sha256_bytes(data) != sha256:
        raise ArtifactError(f"{path} does not match the sha256 in {meta_path}: "
                            "the file is corrupt or belongs to another model")
    return data
