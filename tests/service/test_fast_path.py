"""The ONNX fast path gives the booster's probabilities, serves only small calls, and steps aside
(with a log line) whenever it cannot be trusted.

The reference is always the XGBoost booster itself, called directly; the fast path is never
compared with itself.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT, build_tiny_artifact, synthetic_flights

import locustfile
from flask_app import create_app, fast_path
from training.artifacts import FAST_PATH_FILE, METADATA_FILE, ArtifactError, load_artifact
from training.features import INPUT_LEVELS, mask_optional
from training.onnx_export import ExportError, booster_to_onnx

SHIPPED = REPO_ROOT / "model_artifacts"
# Float32 rounding: two libraries summing 800+ leaves in different orders (measured ~5e-7).
FLOAT32_GAP = 2e-6


def booster_and_fast(model_dir: Path):
    artifact = load_artifact(model_dir)
    predictor = fast_path.build(artifact)
    assert predictor is not None, "the artifact's fast path was refused"
    return artifact, predictor


def profile_flights(spec, n: int, seed: int) -> list[dict]:
    """Flights with SCL's real routes, months and schedules (load/traffic_profile.json)."""
    profile = json.loads(locustfile.PROFILE_PATH.read_text(encoding="utf-8"))
    traffic = locustfile.Traffic(profile, spec.to_dict())
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        flight = traffic.flight(rng)
        if flight.get("Fecha-I"):
            flight["Fecha-I"] = datetime.fromisoformat(flight["Fecha-I"])
        out.append(flight)
    return out


def assert_same_probabilities(artifact, predictor, flights: list[dict]) -> None:
    for level, keep in INPUT_LEVELS.items():
        matrix = artifact.spec.encode(mask_optional(flights, keep))
        expected = artifact.booster.inplace_predict(matrix, validate_features=False)
        # In the sizes the service sends it (one row, a few, the largest small call).
        for size in (1, 7, fast_path.MAX_ROWS):
            got = np.concatenate([predictor.predict(matrix[i:i + size])
                                  for i in range(0, len(matrix), size)])
            gap = float(np.max(np.abs(got - expected)))
            assert gap <= FLOAT32_GAP, (level, size, gap)


def test_the_shipped_models_fast_path_matches_its_booster_on_thousands_of_flights() -> None:
    artifact, predictor = booster_and_fast(SHIPPED)
    assert_same_probabilities(artifact, predictor, profile_flights(artifact.spec, 2000, 7))


@pytest.mark.real_data
def test_the_fast_path_matches_the_booster_on_the_real_flights(real_data: Path) -> None:
    from training.data import load_flights

    artifact, predictor = booster_and_fast(SHIPPED)
    frame, _ = load_flights(real_data)
    rows = frame.sample(n=3000, random_state=3).to_dict("records")
    flights = [{"OPERA": r["OPERA"], "TIPOVUELO": r["TIPOVUELO"], "MES": int(r["MES"]),
                "Fecha-I": r["Fecha-I"].to_pydatetime(), "SIGLADES": r["SIGLADES"]}
               for r in rows if r["OPERA"] in artifact.spec.airlines
               and r["SIGLADES"] in artifact.spec.destinations]
    assert len(flights) > 2900
    assert_same_probabilities(artifact, predictor, flights)


def test_small_calls_go_to_onnx_runtime_and_large_ones_to_the_booster(tiny_model_dir) -> None:
    app = create_app({"TESTING": True, "MODEL_DIR": str(tiny_model_dir),
                      "PREDICT_COALESCING": "off"})
    model = app.extensions["delay_model"]
    assert model.fast is not None
    flights, _ = synthetic_flights(fast_path.MAX_ROWS + 1, seed=4)
    matrix = model.spec.encode(flights)
    onnx = model.fast.predict(matrix)
    booster = model.booster.inplace_predict(matrix, validate_features=False)
    assert not np.array_equal(onnx, booster)  # the two runtimes are told apart by their bits
    small = model.predict(flights[:fast_path.MAX_ROWS])
    np.testing.assert_array_equal(small, onnx[:fast_path.MAX_ROWS])
    np.testing.assert_array_equal(model.predict(flights), booster)


def test_fast_path_off_serves_every_call_with_the_booster(tiny_model_dir) -> None:
    app = create_app({"TESTING": True, "MODEL_DIR": str(tiny_model_dir), "FAST_PATH": "off"})
    model = app.extensions["delay_model"]
    assert model.fast is None
    flights, _ = synthetic_flights(5, seed=5)
    np.testing.assert_array_equal(
        model.predict(flights),
        model.booster.inplace_predict(model.spec.encode(flights), validate_features=False))


def test_the_fast_path_is_refused_when_it_disagrees_with_the_booster(tmp_path, caplog) -> None:
    """Another model's trees, with a metadata hash that matches them: only the probe can tell."""
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    build_tiny_artifact(ours, seed=1)
    build_tiny_artifact(theirs, seed=2, rounds=30)
    shutil.copy(theirs / FAST_PATH_FILE, ours / FAST_PATH_FILE)
    meta = json.loads((ours / METADATA_FILE).read_text())
    meta["fast_path"]["sha256"] = json.loads((theirs / METADATA_FILE).read_text())[
        "fast_path"]["sha256"]
    (ours / METADATA_FILE).write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="flask_app.fast_path"):
        app = create_app({"TESTING": True, "MODEL_DIR": str(ours)})
    assert app.extensions["delay_model"].fast is None
    assert "disagrees with its booster" in caplog.text
    answer = app.test_client().post("/predict", json={"OPERA": "Sky Airline",
                                                      "TIPOVUELO": "N", "MES": 3})
    assert answer.status_code == 200


def test_without_onnx_runtime_the_worker_falls_back_with_a_log_line(
        tiny_model_dir, monkeypatch, caplog) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with caplog.at_level(logging.WARNING, logger="flask_app.fast_path"):
        app = create_app({"TESTING": True, "MODEL_DIR": str(tiny_model_dir)})
    assert app.extensions["delay_model"].fast is None
    assert "unusable" in caplog.text and "onnxruntime" in caplog.text


def test_an_altered_or_missing_fast_path_file_makes_the_artifact_unservable(tmp_path) -> None:
    build_tiny_artifact(tmp_path)
    data = (tmp_path / FAST_PATH_FILE).read_bytes()
    (tmp_path / FAST_PATH_FILE).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ArtifactError, match="does not match the sha256"):
        load_artifact(tmp_path)
    (tmp_path / FAST_PATH_FILE).unlink()
    with pytest.raises(ArtifactError, match="does not exist"):
        load_artifact(tmp_path)


def test_an_artifact_without_a_fast_path_is_served_by_xgboost(tmp_path, caplog) -> None:
    build_tiny_artifact(tmp_path)
    meta = json.loads((tmp_path / METADATA_FILE).read_text())
    del meta["fast_path"]
    (tmp_path / METADATA_FILE).write_text(json.dumps(meta))
    (tmp_path / FAST_PATH_FILE).unlink()
    with caplog.at_level(logging.INFO, logger="flask_app.fast_path"):
        app = create_app({"TESTING": True, "MODEL_DIR": str(tmp_path)})
    assert app.extensions["delay_model"].fast is None
    assert "no fast path" in caplog.text


def test_only_logistic_boosters_are_exported(tiny_model_dir) -> None:
    import xgboost as xgb

    flights, labels = synthetic_flights(50, seed=6)
    spec = load_artifact(tiny_model_dir).spec
    regression = xgb.train({"objective": "reg:squarederror", "nthread": 1},
                           xgb.DMatrix(spec.encode(flights), labels), num_boost_round=2)
    with pytest.raises(ExportError, match="binary:logistic"):
        booster_to_onnx(regression, spec.n_features, "r")
