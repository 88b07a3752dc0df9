"""Shared fixtures: a tiny model trained on synthetic flights, the app and its test client.

The tiny model is built with the same FeatureSpec and save_artifact as the real one, so the
service code under test is exactly what serves production; only the data is synthetic.
"""

from __future__ import annotations

# Patch before anything imports ssl or socket: the Locust tests import locust, which patches
# with gevent, and patching after ssl was imported fails (RecursionError) depending on which
# test files were collected first. Patching here makes every run, whatever its selection, use
# the same cooperative sockets and threads as the Gunicorn gevent worker the service runs in.
from gevent import monkey

monkey.patch_all()

import os
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from flask_app import create_app
from training.artifacts import save_artifact
from training.features import FeatureSpec

REPO_ROOT = Path(__file__).resolve().parents[1]
AIRLINES = ("Grupo LATAM", "Sky Airline", "Copa Air", "American Airlines")
DESTINATIONS = ("Miami", "Lima", "Buenos Aires", "Antofagasta", "Calama")


def synthetic_flights(n: int, seed: int = 0) -> tuple[list[dict], np.ndarray]:
    """Flights with a learnable delay pattern (evening and Sky flights are later)."""
    rng = np.random.default_rng(seed)
    start = datetime(2017, 1, 1)
    flights, labels = [], []
    for _ in range(n):
        when = start + timedelta(minutes=int(rng.integers(0, 365 * 24 * 60)))
        airline = AIRLINES[int(rng.integers(len(AIRLINES)))]
        flight = {"OPERA": airline, "TIPOVUELO": "I" if rng.random() < 0.4 else "N",
                  "MES": when.month, "Fecha-I": when,
                  "SIGLADES": DESTINATIONS[int(rng.integers(len(DESTINATIONS)))]}
        p = 0.1 + 0.25 * (when.hour >= 18) + 0.15 * (airline == "Sky Airline")
        flights.append(flight)
        labels.append(int(rng.random() < p))
    return flights, np.array(labels)


def build_tiny_artifact(out_dir: Path, seed: int = 0, rounds: int = 20) -> dict:
    """Train a small booster on synthetic flights and save it as a real artifact."""
    spec = FeatureSpec(AIRLINES, DESTINATIONS)
    flights, labels = synthetic_flights(600, seed)
    x = spec.encode(flights)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1,
                         "seed": seed}, xgb.DMatrix(x, labels), num_boost_round=rounds)
    return save_artifact(out_dir, booster, spec, 0.3,
                         {"trained_at": "2026-01-01T00:00:00+00:00", "synthetic": True})


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny_model")
    build_tiny_artifact(out)
    return out


@pytest.fixture
def app(tiny_model_dir: Path):
    return create_app({"TESTING": True, "MODEL_DIR": str(tiny_model_dir),
                       "MAX_BATCH_SIZE": 50})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def real_data() -> Path:
    """dataset_SCL.csv from FLIGHT_DATA or ../shared/data; skip (with why) when absent."""
    candidates = [os.environ.get("FLIGHT_DATA"), REPO_ROOT.parent / "shared/data/dataset_SCL.csv"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    pytest.skip("dataset_SCL.csv not found: set FLIGHT_DATA or place it at "
                f"{REPO_ROOT.parent / 'shared/data/dataset_SCL.csv'}")
