"""POST /predict?explain=true: per-field SHAP contributions that add up to the model's margin.

The expected margins come from loading the artifact here and asking XGBoost directly, not from
the service, so a wrong fold, a dropped column or a mismatched row order fails the sums.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from flask_app import create_app
from training.artifacts import load_artifact

FULL = {"OPERA": "Sky Airline", "TIPOVUELO": "I", "MES": 3, "Fecha-I": "2017-03-05 19:30",
        "SIGLADES": "Lima"}
REQUIRED_ONLY = {"OPERA": "Copa Air", "TIPOVUELO": "N", "MES": 11}
NO_DESTINATION = {"OPERA": "Grupo LATAM", "TIPOVUELO": "N", "MES": 7,
                  "Fecha-I": "2017-07-20 06:05"}
FLIGHTS = [FULL, REQUIRED_ONLY, NO_DESTINATION]
# Parts of Fecha-I reported separately; the four holiday columns fold into "holiday".
TIME_GROUPS = ["day_of_week", "hour", "high_season", "holiday"]
INPUT_FIELDS = ["OPERA", "TIPOVUELO", "MES", "Fecha-I", "SIGLADES"]


def reference(model_dir: Path, flights: list[dict]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Margins and raw per-column SHAP values straight from XGBoost, and the column groups."""
    artifact = load_artifact(model_dir)
    parsed = [{**f, "Fecha-I": datetime.strptime(f["Fecha-I"], "%Y-%m-%d %H:%M")}
              if "Fecha-I" in f else f for f in flights]
    dmatrix = xgb.DMatrix(artifact.spec.encode(parsed), missing=np.nan)
    margins = artifact.booster.predict(dmatrix, output_margin=True)
    contribs = artifact.booster.predict(dmatrix, pred_contribs=True)
    return margins, contribs, list(artifact.spec.feature_groups)


def explained(client, flights: list[dict]) -> list[dict]:
    response = client.post("/predict?explain=true", json={"flights": flights})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["predictions"]


def test_contributions_plus_base_equal_the_margin(client, tiny_model_dir):
    margins, _, _ = reference(tiny_model_dir, FLIGHTS)
    predictions = explained(client, FLIGHTS)
    assert len(predictions) == len(FLIGHTS)
    for prediction, margin in zip(predictions, margins, strict=True):
        e = prediction["explanation"]
        total = e["base_value"] + sum(e["contributions"].values())
        assert total == pytest.approx(float(margin), abs=1e-4)
        assert e["margin"] == pytest.approx(float(margin), abs=1e-5)
        # The probability the client sees is the sigmoid of that margin (no calibration layer).
        assert prediction["delay_probability"] == pytest.approx(
            1 / (1 + math.exp(-float(margin))), abs=1e-4)


def test_one_hot_columns_are_folded_into_their_input_field(client, tiny_model_dir):
    _, contribs, groups = reference(tiny_model_dir, [FULL])
    e = explained(client, [FULL])[0]["explanation"]
    assert list(e["contributions"]) == ["OPERA", "TIPOVUELO", "MES", *TIME_GROUPS, "SIGLADES"]
    for field in ("OPERA", "SIGLADES", "hour", "holiday"):
        columns = [i for i, g in enumerate(groups) if g == field]
        assert e["contributions"][field] == pytest.approx(float(contribs[0, columns].sum()),
                                                          abs=1e-5)
    assert e["base_value"] == pytest.approx(float(contribs[0, -1]), abs=1e-5)


def test_every_calendar_feature_reports_under_fecha_i(client, tiny_model_dir):
    """by_input sums per request field: all columns derived from the departure (weekday, hour,
    high season, holiday, days to / since a holiday, long weekend) count for Fecha-I."""
    _, contribs, _ = reference(tiny_model_dir, [FULL])
    e = explained(client, [FULL])[0]["explanation"]
    assert list(e["by_input"]) == INPUT_FIELDS
    names = load_artifact(tiny_model_dir).spec.feature_names
    fecha = [i for i, name in enumerate(names)
             if name in ("day_of_week", "hour", "high_season", "holiday", "days_to_holiday",
                         "days_since_holiday", "long_weekend")]
    assert len(fecha) == 7
    assert e["by_input"]["Fecha-I"] == pytest.approx(float(contribs[0, fecha].sum()), abs=1e-5)
    assert e["by_input"]["OPERA"] == pytest.approx(e["contributions"]["OPERA"], abs=1e-6)
    assert e["base_value"] + sum(e["by_input"].values()) == pytest.approx(e["margin"],
                                                                         abs=1e-4)


def test_inputs_not_given_are_reported_and_still_counted(client):
    full, required, no_dest = (p["explanation"] for p in explained(client, FLIGHTS))
    assert full["not_given"] == []
    assert required["not_given"] == [*TIME_GROUPS, "SIGLADES"]
    assert no_dest["not_given"] == ["SIGLADES"]
    # Every field keeps a contribution, absent or not, so the sum identity holds for all rows.
    assert set(required["contributions"]) == set(full["contributions"])


def test_a_single_flight_is_explained_too(client):
    response = client.post("/predict?explain=1", json=REQUIRED_ONLY)
    assert response.status_code == 200
    assert "explanation" in response.get_json()["predictions"][0]


@pytest.mark.parametrize("query", ["", "?explain=false", "?explain=0"])
def test_no_explanation_unless_asked(client, query):
    response = client.post(f"/predict{query}", json=FULL)
    assert response.status_code == 200
    assert "explanation" not in response.get_json()["predictions"][0]


@pytest.mark.parametrize("query, field", [("explain=maybe", "explain"), ("explain=", "explain"),
                                          ("explian=true", "explian")])
def test_bad_query_parameters_are_400_naming_them(client, query, field):
    response = client.post(f"/predict?{query}", json=FULL)
    assert response.status_code == 400
    body = response.get_json()["error"]
    assert field in body["fields"]
    assert field in body["message"]


def test_explain_refuses_batches_over_its_own_limit(tiny_model_dir):
    """Explaining is ~100x the cost of predicting, so it has its own, smaller batch limit."""
    app = create_app({"TESTING": True, "MODEL_DIR": str(tiny_model_dir), "MAX_EXPLAIN_BATCH": 3})
    client = app.test_client()
    flight = {"OPERA": "Sky Airline", "TIPOVUELO": "N", "MES": 5}
    too_many = client.post("/predict?explain=true", json={"flights": [flight] * 4})
    assert too_many.status_code == 400
    error = too_many.get_json()["error"]
    assert "explain" in error["fields"] and "at most 3" in error["message"]
    assert client.post("/predict?explain=true", json={"flights": [flight] * 3}).status_code == 200
    # The limit is for explanations only: the same batch is scored without them.
    assert client.post("/predict", json={"flights": [flight] * 4}).status_code == 200
