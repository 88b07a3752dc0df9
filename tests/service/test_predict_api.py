"""Every route answers as the contract says: /predict (single and batch), /model, /, /health,
/ready, and the no-model app (503 where a model is needed, 200 where it is not).

Expected values here are written out by hand (vocabularies of the tiny model, its threshold
0.3, field names); the numbers the model produces are checked in test_prediction_parity.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import AIRLINES, DESTINATIONS, REPO_ROOT
from flask.testing import FlaskClient

from flask_app import create_app
from training.artifacts import METADATA_FILE

LATAM = {"OPERA": "Grupo LATAM", "TIPOVUELO": "I", "MES": 1}
TINY_THRESHOLD = 0.3  # build_tiny_artifact saves this threshold


def assert_prediction_shape(body: dict, count: int) -> None:
    assert set(body) == {"predictions", "model_version", "threshold"}
    assert body["threshold"] == TINY_THRESHOLD
    assert isinstance(body["model_version"], str) and body["model_version"]
    assert len(body["predictions"]) == count
    for item in body["predictions"]:
        assert set(item) == {"delay_probability", "delayed"}
        p = item["delay_probability"]
        assert isinstance(p, float) and 0.0 <= p <= 1.0
        assert round(p, 4) == p, "probabilities are rounded to 4 decimals"
        assert item["delayed"] is (p >= TINY_THRESHOLD)


@pytest.mark.parametrize("flight", [
    LATAM,
    {"OPERA": "Sky Airline", "TIPOVUELO": "N", "MES": 12},
    {**LATAM, "Fecha-I": "2017-01-15 08:30"},
    {**LATAM, "Fecha-I": "2017-01-15 08:30:59"},
    {**LATAM, "Fecha-I": "2017-01-15T23:05"},
    {**LATAM, "SIGLADES": "Miami"},
    {**LATAM, "Fecha-I": "2017-01-31 00:00", "SIGLADES": "Lima"},
    {**LATAM, "Fecha-I": None, "SIGLADES": None},
], ids=["required", "other-airline", "fecha", "fecha-seconds", "fecha-T", "siglades", "full",
        "explicit-nulls"])
def test_single_flight_gets_one_prediction(client: FlaskClient, flight: dict) -> None:
    response = client.post("/predict", json=flight)
    assert response.status_code == 200, response.json
    assert response.mimetype == "application/json"
    assert_prediction_shape(response.json, 1)


def test_single_and_batch_answer_alike(client: FlaskClient) -> None:
    single = client.post("/predict", json=LATAM).json
    batch = client.post("/predict", json={"flights": [LATAM]}).json
    assert single == batch


def test_batch_keeps_request_order(client: FlaskClient) -> None:
    evening_sky = {"OPERA": "Sky Airline", "TIPOVUELO": "N", "MES": 7,
                   "Fecha-I": "2017-07-20 21:00", "SIGLADES": "Calama"}
    morning_latam = {**LATAM, "Fecha-I": "2017-01-10 07:00", "SIGLADES": "Miami"}
    flights = [evening_sky, morning_latam, LATAM, evening_sky, morning_latam]
    one_by_one = [client.post("/predict", json=f).json["predictions"][0] for f in flights]
    assert one_by_one[0] != one_by_one[1], "the two flights must differ for the test to bite"
    batch = client.post("/predict", json={"flights": flights})
    assert batch.status_code == 200
    assert_prediction_shape(batch.json, len(flights))
    assert batch.json["predictions"] == one_by_one


def test_batch_at_the_limit_is_accepted(client: FlaskClient) -> None:
    # The app fixture sets MAX_BATCH_SIZE=50.
    response = client.post("/predict", json={"flights": [LATAM] * 50})
    assert response.status_code == 200
    assert_prediction_shape(response.json, 50)


def test_every_vocabulary_entry_is_accepted(client: FlaskClient) -> None:
    flights = [{"OPERA": a, "TIPOVUELO": t, "MES": m, "SIGLADES": d}
               for a in AIRLINES for t in ("I", "N") for m in (1, 6, 12)
               for d in DESTINATIONS[:2]]
    response = client.post("/predict", json={"flights": flights})
    assert response.status_code == 200, response.json
    assert_prediction_shape(response.json, len(flights))


def test_model_version_matches_model_route(client: FlaskClient) -> None:
    described = client.get("/model").json
    predicted = client.post("/predict", json=LATAM).json
    assert predicted["model_version"] == described["model_version"]
    assert predicted["threshold"] == described["threshold"]


def test_model_route_describes_the_artifact(client: FlaskClient) -> None:
    response = client.get("/model")
    assert response.status_code == 200
    body = response.json
    assert body["threshold"] == TINY_THRESHOLD
    assert body["trained_at"] == "2026-01-01T00:00:00+00:00"
    assert len(body["model_version"]) == 16
    spec = body["feature_spec"]
    assert spec["airlines"] == sorted(AIRLINES)
    assert spec["destinations"] == sorted(DESTINATIONS)
    assert spec["required_inputs"] == ["OPERA", "TIPOVUELO", "MES"]
    assert spec["optional_inputs"] == ["Fecha-I", "SIGLADES"]


def test_model_route_reports_the_shipped_artifacts_holdout_metrics() -> None:
    """/model of the committed artifact carries what training wrote: both holdouts' metrics,
    the threshold and its rule, the training scheme and library versions."""
    model_dir = REPO_ROOT / "model_artifacts"
    meta = json.loads((model_dir / METADATA_FILE).read_text())
    body = create_app({"TESTING": True, "MODEL_DIR": str(model_dir)}).test_client().get(
        "/model").json
    assert set(body["holdout_metrics"]) == {"notebook", "temporal", "rolling"}
    assert body["holdout_metrics"] == meta["holdout_metrics"]
    assert body["training_period"] == meta["training_period"]
    assert body["training_period"]["months"][0] == "2017-01"
    assert body["model_card"]["file"] == "model_artifacts/MODEL_CARD.md"
    full = body["holdout_metrics"]["notebook"]["levels"]["full"]
    assert 0.5 < full["roc_auc"] <= 1.0
    assert body["threshold"] == meta["threshold"]
    assert body["threshold_rule"] == meta["threshold_rule"]
    assert body["libraries"]["xgboost"] == meta["libraries"]["xgboost"]
    assert body["model_version"] == meta["model_version"]


def test_index_links_to_every_route(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    body = response.json
    assert body["name"] == "scl-delay"
    assert body["model_version"] == client.get("/model").json["model_version"]
    links = body["links"]
    assert links == {"predict": "/predict", "model": "/model", "health": "/health",
                     "ready": "/ready", "docs": "/docs", "openapi": "/openapi.json",
                     "metrics": "/metrics"}
    for name, path in links.items():
        if name != "predict":
            assert client.get(path).status_code == 200, path


def test_health_and_ready(client: FlaskClient) -> None:
    assert client.get("/health").json == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json["status"] == "ready"
    assert ready.json["model_version"] == client.get("/model").json["model_version"]


def test_every_answer_names_the_worker_pid(client: FlaskClient) -> None:
    for response in (client.get("/health"), client.post("/predict", json=LATAM),
                     client.post("/predict", json={"MES": 13}), client.get("/nope")):
        assert response.headers["X-Worker-PID"] == str(os.getpid())


@pytest.mark.parametrize("method", ["head", "options"])
def test_head_and_options_on_health(client: FlaskClient, method: str) -> None:
    response = getattr(client, method)("/health")
    assert response.status_code == 200
    if method == "options":
        assert {"GET", "HEAD", "OPTIONS"} <= set(response.headers["Allow"].split(", "))


def test_options_on_predict_lists_post(client: FlaskClient) -> None:
    response = client.options("/predict")
    assert response.status_code == 200
    assert "POST" in response.headers["Allow"]


class TestWithoutModel:
    """An app built with LOAD_MODEL=False: alive, not ready, and honest about it."""

    @pytest.fixture
    def bare(self, tmp_path: Path) -> FlaskClient:
        app = create_app({"TESTING": True, "LOAD_MODEL": False,
                          "MODEL_DIR": str(tmp_path / "nothing-here")})
        return app.test_client()

    def test_liveness_still_ok(self, bare: FlaskClient) -> None:
        assert bare.get("/health").status_code == 200

    def test_not_ready(self, bare: FlaskClient) -> None:
        response = bare.get("/ready")
        assert response.status_code == 503
        assert response.json["status"] == "not ready"

    @pytest.mark.parametrize(("method", "path", "kwargs"), [
        ("post", "/predict", {"json": LATAM}),
        ("post", "/predict", {"json": {"MES": "x"}}),
        ("get", "/model", {}),
    ])
    def test_model_routes_answer_503_json(self, bare: FlaskClient, method: str, path: str,
                                          kwargs: dict) -> None:
        response = getattr(bare, method)(path, **kwargs)
        assert response.status_code == 503
        assert response.mimetype == "application/json"
        error = response.json["error"]
        assert error["status"] == 503
        assert "model" in error["message"]

    def test_index_still_answers(self, bare: FlaskClient) -> None:
        response = bare.get("/")
        assert response.status_code == 200
        assert response.json["model_version"] is None


def test_model_card_is_served_from_the_model_directory() -> None:
    """GET /model names the card; GET /model/card returns the file beside the served model."""
    model_dir = REPO_ROOT / "model_artifacts"
    client = create_app({"TESTING": True, "MODEL_DIR": str(model_dir)}).test_client()
    body = client.get("/model").json
    card = client.get(body["model_card"]["url"])
    assert card.status_code == 200
    assert card.mimetype == "text/markdown"
    assert card.get_data(as_text=True) == (model_dir / "MODEL_CARD.md").read_text(
        encoding="utf-8")
    assert body["model_version"] in card.get_data(as_text=True)


def test_a_model_without_a_card_answers_404_json(client: FlaskClient) -> None:
    response = client.get("/model/card")
    assert response.status_code == 404
    assert "model card" in response.json["error"]["message"]


@pytest.mark.parametrize("when", ["2016-03-09 09:15", "2027-03-10 09:15", "2045-03-08 09:15"])
def test_departures_in_any_year_are_accepted_and_encoded_by_calendar(client: FlaskClient,
                                                                      when: str) -> None:
    """A Wednesday in March away from holidays answers like Wednesday 8 March 2017: the
    model sees the weekday, hour and holiday facts, not which year or day it is."""
    base = {"OPERA": "Sky Airline", "TIPOVUELO": "N", "MES": 3, "SIGLADES": "Lima"}
    reference = client.post("/predict", json={**base, "Fecha-I": "2017-03-08 09:15"})
    other = client.post("/predict", json={**base, "Fecha-I": when})
    assert reference.status_code == other.status_code == 200, other.json
    assert other.json["predictions"] == reference.json["predictions"]
