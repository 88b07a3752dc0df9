"""The API's probability is the booster's own prediction for the flight, encoded by training.

The reference path shares nothing with the service's prediction code: the booster is read
straight from ``model.ubj``, the spec is built from the vocabularies the tiny model was trained
with, the departure times are Python datetimes built here (not parsed by the service's schema),
and scoring goes through ``xgb.DMatrix`` + ``Booster.predict`` rather than the service's
``inplace_predict``. The API rounds to 4 decimals, so the tolerance is half a unit in the 4th
decimal plus float32 noise.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from conftest import AIRLINES, DESTINATIONS, synthetic_flights
from flask.testing import FlaskClient

from flask_app import create_app
from training.artifacts import MODEL_FILE
from training.features import FeatureSpec

TOLERANCE = 0.5e-4 + 1e-6
TINY_THRESHOLD = 0.3
BATCH_LIMIT = 50  # the app fixture's MAX_BATCH_SIZE


@pytest.fixture(scope="module")
def reference(tiny_model_dir: Path):
    """Score flights (with datetime departures) the way training would."""
    booster = xgb.Booster(model_file=str(tiny_model_dir / MODEL_FILE))
    spec = FeatureSpec(AIRLINES, DESTINATIONS)

    def score(flights: list[dict]) -> np.ndarray:
        return booster.predict(xgb.DMatrix(spec.encode(flights), missing=np.nan))

    return score


def to_request(flight: dict, keep: tuple[str, ...], fmt: str = "%Y-%m-%d %H:%M") -> dict:
    """The JSON a client sends for ``flight``, with only the optional inputs in ``keep``."""
    body = {k: flight[k] for k in ("OPERA", "TIPOVUELO", "MES")}
    if "Fecha-I" in keep:
        body["Fecha-I"] = flight["Fecha-I"].strftime(fmt)
    if "SIGLADES" in keep:
        body["SIGLADES"] = flight["SIGLADES"]
    return body


def reference_input(flight: dict, keep: tuple[str, ...]) -> dict:
    """The same flight as training encodes it: datetime kept, dropped inputs absent."""
    return {k: v for k, v in flight.items()
            if k in ("OPERA", "TIPOVUELO", "MES") or k in keep}


LEVELS = [(), ("Fecha-I",), ("SIGLADES",), ("Fecha-I", "SIGLADES")]
LEVEL_IDS = ["required", "fecha", "siglades", "full"]


def assert_matches(answers: list[dict], expected: np.ndarray) -> None:
    got = np.array([a["delay_probability"] for a in answers])
    assert got.shape == expected.shape
    worst = float(np.max(np.abs(got - expected)))
    assert worst <= TOLERANCE, f"largest difference {worst}"
    assert [a["delayed"] for a in answers] == [bool(p >= TINY_THRESHOLD) for p in got]


@pytest.mark.parametrize("keep", LEVELS, ids=LEVEL_IDS)
def test_single_flights_match_the_booster(client: FlaskClient, reference, keep) -> None:
    flights, _ = synthetic_flights(25, seed=11)
    answers = []
    for flight in flights:
        response = client.post("/predict", json=to_request(flight, keep))
        assert response.status_code == 200, response.json
        answers.extend(response.json["predictions"])
    expected = reference([reference_input(f, keep) for f in flights])
    assert_matches(answers, expected)


@pytest.mark.parametrize("keep", LEVELS, ids=LEVEL_IDS)
def test_batches_match_the_booster(client: FlaskClient, reference, keep) -> None:
    flights, _ = synthetic_flights(3 * BATCH_LIMIT, seed=12)
    answers = []
    for start in range(0, len(flights), BATCH_LIMIT):
        chunk = flights[start:start + BATCH_LIMIT]
        response = client.post("/predict",
                               json={"flights": [to_request(f, keep) for f in chunk]})
        assert response.status_code == 200, response.json
        answers.extend(response.json["predictions"])
    expected = reference([reference_input(f, keep) for f in flights])
    assert_matches(answers, expected)
    assert len(set(np.round(expected, 4))) > 5, "flights must differ for the order to matter"


def test_mixed_levels_in_one_batch(client: FlaskClient, reference) -> None:
    flights, _ = synthetic_flights(40, seed=13)
    kept = [LEVELS[i % len(LEVELS)] for i in range(len(flights))]
    body = {"flights": [to_request(f, k) for f, k in zip(flights, kept, strict=True)]}
    response = client.post("/predict", json=body)
    assert response.status_code == 200, response.json
    expected = reference([reference_input(f, k) for f, k in zip(flights, kept, strict=True)])
    assert_matches(response.json["predictions"], expected)


@pytest.mark.parametrize("fmt", ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"])
def test_every_departure_format_means_the_same_time(client: FlaskClient, reference,
                                                    fmt: str) -> None:
    flight = {"OPERA": "Sky Airline", "TIPOVUELO": "N", "MES": 9,
              "Fecha-I": datetime(2017, 9, 18, 20, 45), "SIGLADES": "Calama"}
    keep = ("Fecha-I", "SIGLADES")
    response = client.post("/predict", json=to_request(flight, keep, fmt))
    assert response.status_code == 200, response.json
    assert_matches(response.json["predictions"], reference([reference_input(flight, keep)]))


def test_optional_inputs_change_the_answer(client: FlaskClient, reference) -> None:
    """Guards the parity tests against a service that ignores Fecha-I/SIGLADES: for these
    flights the booster's answer differs with and without them, and so must the API's."""
    flight = {"OPERA": "Sky Airline", "TIPOVUELO": "N", "MES": 7,
              "Fecha-I": datetime(2017, 7, 20, 21, 0), "SIGLADES": "Calama"}
    bare, full = reference([reference_input(flight, ()),
                            reference_input(flight, ("Fecha-I", "SIGLADES"))])
    assert abs(bare - full) > 1e-3
    answers = [client.post("/predict", json=to_request(flight, keep)).json["predictions"][0]
               for keep in ((), ("Fecha-I", "SIGLADES"))]
    assert_matches(answers, np.array([bare, full]))


def test_direct_booster_path_without_coalescing_matches_the_booster(tiny_model_dir):
    """The suite runs gevent-patched, so other tests go through the coalescer; this one pins
    the direct path (PREDICT_COALESCING=off, as under a threaded server)."""
    app = create_app({"TESTING": True, "MODEL_DIR": str(tiny_model_dir),
                      "PREDICT_COALESCING": "off"})
    model = app.extensions["delay_model"]
    assert model._coalescer is None
    flights, _ = synthetic_flights(30, seed=11)
    body = [{**f, "Fecha-I": f["Fecha-I"].strftime("%Y-%m-%d %H:%M")} for f in flights]
    got = app.test_client().post("/predict", json={"flights": body}).get_json()["predictions"]
    booster = xgb.Booster(model_file=str(tiny_model_dir / "model.ubj"))
    want = booster.predict(xgb.DMatrix(FeatureSpec.from_dict(model.metadata["feature_spec"])
                                       .encode(flights), missing=np.nan))
    assert len(got) == len(want) == 30
    for answer, booster_p in zip(got, want, strict=True):
        assert abs(answer["delay_probability"] - float(booster_p)) <= 0.5e-4 + 1e-6
