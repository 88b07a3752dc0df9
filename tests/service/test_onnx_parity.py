"""ONNX Runtime (the fast path for small calls) gives the booster's probabilities.

The reference is the booster itself, read from ``model.ubj`` and scored through
``xgb.DMatrix`` + ``Booster.predict``; flights are encoded by the feature spec training uses.
Both runtimes add the same float32 leaf values in different orders, so they may differ in the
last bits of a float32; the tolerance is a few float32 units at 1.0. The real data is used
when it is present (FLIGHT_DATA or ../shared/data/dataset_SCL.csv), synthetic flights always.
"""

from __future__ import annotations

import csv
import itertools
import logging
import os
import random
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from flask_app import create_app
from flask_app.onnx_model import ONNX_FILE, ONNX_META_FILE, export_onnx, load_onnx
from training.artifacts import METADATA_FILE, MODEL_FILE, load_artifact
from training.features import INPUT_LEVELS, mask_optional

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED = REPO_ROOT / "model_artifacts"
# float32 has 2**-24 ~ 6e-8 resolution near 1; sums of hundreds of leaves in another order
# move the last few bits.
FLOAT32_TOLERANCE = 2e-6
API_TOLERANCE = 0.5e-4 + FLOAT32_TOLERANCE


def real_data_path() -> Path | None:
    for candidate in (os.environ.get("FLIGHT_DATA"),
                      REPO_ROOT.parent / "shared" / "data" / "dataset_SCL.csv"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def real_flights(spec, count: int) -> list[dict]:
    """``count`` real departures (seeded sample) the model's vocabularies cover."""
    path = real_data_path()
    if path is None:
        pytest.skip("real data not found (set FLIGHT_DATA or put ../shared/data/dataset_SCL.csv)")
    rows = []
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["OPERA"] in spec.airlines and row["SIGLADES"] in spec.destinations:
                when = datetime.strptime(row["Fecha-I"], "%Y-%m-%d %H:%M:%S")
                rows.append({"OPERA": row["OPERA"], "TIPOVUELO": row["TIPOVUELO"],
                             "MES": when.month, "Fecha-I": when, "SIGLADES": row["SIGLADES"]})
    return random.Random(15).sample(rows, min(count, len(rows)))


def synthetic(spec, count: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        month = rng.randint(1, 12)
        out.append({"OPERA": rng.choice(spec.airlines), "TIPOVUELO": rng.choice("IN"),
                    "MES": month, "SIGLADES": rng.choice(spec.destinations),
                    "Fecha-I": datetime(2017, month, rng.randint(1, 28), rng.randint(0, 23),
                                        rng.randint(0, 59))})
    return out


def compare(model_dir: Path, flights: list[dict]) -> float:
    """Worst difference between ONNX Runtime and the booster over ``flights`` at every input
    level, the ONNX side in calls of 1 to 32 rows as the service makes them."""
    artifact = load_artifact(model_dir)
    fast = load_onnx(model_dir, artifact)
    assert fast is not None, "the ONNX model was refused"
    booster = xgb.Booster(model_file=str(model_dir / MODEL_FILE))
    worst = 0.0
    for keep in INPUT_LEVELS.values():
        matrix = artifact.spec.encode(mask_optional(flights, keep))
        expected = booster.predict(xgb.DMatrix(matrix, missing=np.nan))
        parts, start, sizes = [], 0, itertools.cycle((1, 7, 32))
        while start < len(matrix):
            size = next(sizes)
            parts.append(fast.predict(matrix[start:start + size]))
            start += size
        got = np.concatenate(parts)
        assert got.shape == expected.shape
        worst = max(worst, float(np.max(np.abs(got - expected))))
    return worst


@pytest.fixture(scope="module")
def tiny_onnx_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny_onnx")
    for name in (MODEL_FILE, METADATA_FILE):
        shutil.copy2(tiny_model_dir / name, out)
    export_onnx(out)
    return out


def test_the_shipped_onnx_model_belongs_to_the_shipped_booster():
    """`make serve` serves the fast path only if model.onnx was made from this model.ubj."""
    artifact = load_artifact(SHIPPED)
    assert load_onnx(SHIPPED, artifact) is not None, (
        "model_artifacts/model.onnx is missing or stale: run `make onnx`")


def test_shipped_model_parity_on_real_flights():
    flights = real_flights(load_artifact(SHIPPED).spec, 3000)
    assert compare(SHIPPED, flights) <= FLOAT32_TOLERANCE


def test_shipped_model_parity_on_synthetic_flights():
    flights = synthetic(load_artifact(SHIPPED).spec, 2000)
    assert compare(SHIPPED, flights) <= FLOAT32_TOLERANCE


def test_tiny_model_parity(tiny_onnx_dir: Path):
    assert compare(tiny_onnx_dir, synthetic(load_artifact(tiny_onnx_dir).spec, 2000, 1)) \
        <= FLOAT32_TOLERANCE


def test_the_api_answers_small_calls_through_onnx_with_the_boosters_numbers(tiny_onnx_dir):
    app = create_app({"TESTING": True, "MODEL_DIR": str(tiny_onnx_dir)})
    model = app.extensions["delay_model"]
    assert model.fast is not None
    artifact = load_artifact(tiny_onnx_dir)
    booster = xgb.Booster(model_file=str(tiny_onnx_dir / MODEL_FILE))
    flights = synthetic(artifact.spec, 40, 2)
    expected = booster.predict(xgb.DMatrix(artifact.spec.encode(flights), missing=np.nan))
    bodies = [{**f, "Fecha-I": f["Fecha-I"].strftime("%Y-%m-%d %H:%M")} for f in flights]
    client = app.test_client()
    singles = [client.post("/predict", json=b).get_json()["predictions"][0]["delay_probability"]
               for b in bodies]
    batch = client.post("/predict", json={"flights": bodies}).get_json()["predictions"]
    assert np.max(np.abs(np.array(singles) - expected)) <= API_TOLERANCE
    assert np.max(np.abs(np.array([p["delay_probability"] for p in batch]) - expected)) \
        <= API_TOLERANCE


@pytest.mark.parametrize("damage", ["stale", "corrupt", "missing"])
def test_a_bad_onnx_model_falls_back_to_xgboost_with_a_log_line(tiny_onnx_dir, tmp_path,
                                                                 damage):
    broken = tmp_path / "model"
    shutil.copytree(tiny_onnx_dir, broken)
    if damage == "stale":
        meta = (broken / ONNX_META_FILE).read_text()
        source = load_artifact(broken).metadata["model_sha256"]
        (broken / ONNX_META_FILE).write_text(meta.replace(source, "0" * 64))
    elif damage == "corrupt":
        raw = bytearray((broken / ONNX_FILE).read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        (broken / ONNX_FILE).write_bytes(bytes(raw))
    else:
        (broken / ONNX_FILE).unlink()
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("flask_app.onnx_model")
    logger.addHandler(handler)
    try:
        app = create_app({"TESTING": True, "MODEL_DIR": str(broken)})
    finally:
        logger.removeHandler(handler)
    assert app.extensions["delay_model"].fast is None
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    assert "XGBoost" in records[0].getMessage()
    flight = {"OPERA": "Sky Airline", "TIPOVUELO": "N", "MES": 3}
    assert app.test_client().post("/predict", json=flight).status_code == 200
