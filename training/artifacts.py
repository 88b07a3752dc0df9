"""Stage 5: the model artifact on disk, written by training and read by every service worker.

An artifact is a directory with the booster in XGBoost's own UBJ format (``model.ubj``) and
``metadata.json`` (version, provenance, feature spec, threshold, holdout metrics). Nothing in it
is executable: loading parses JSON and hands bytes to XGBoost, never pickle. The model version
is a content hash of the booster file, and loading checks that hash, so a truncated or swapped
file is refused with a clear message instead of serving wrong answers.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xgboost as xgb

from training.features import FeatureSpec

MODEL_FILE = "model.ubj"
METADATA_FILE = "metadata.json"


class ArtifactError(Exception):
    """The artifact directory cannot be served; the message says what is wrong and where."""


@dataclass(frozen=True)
class Artifact:
    booster: xgb.Booster
    metadata: dict[str, Any]
    spec: FeatureSpec

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
    """Write ``model.ubj`` and ``metadata.json``; return the metadata as written.

    The file is written atomically-enough for a reload: both files go to temporary names in the
    same directory and are renamed into place, model first, so a reader never pairs new
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
    tmp_model = out / f".{MODEL_FILE}.tmp"
    tmp_meta = out / f".{METADATA_FILE}.tmp"
    tmp_model.write_bytes(raw)
    write_json(tmp_meta, full)
    os.replace(tmp_model, out / MODEL_FILE)
    os.replace(tmp_meta, out / METADATA_FILE)
    return full


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
    if not model_path.is_file():
        raise ArtifactError(f"model file {model_path} named in {meta_path} does not exist")
    raw = model_path.read_bytes()
    if sha256_bytes(raw) != metadata["model_sha256"]:
        raise ArtifactError(f"{model_path} does not match the sha256 in {meta_path}: "
                            "the file is corrupt or belongs to another model")
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
    return Artifact(booster=booster, metadata=metadata, spec=spec)
