"""The speed-ups on the prediction path change no answer.

Single flights go through an LRU cache of booster answers, and JSON goes through orjson; both
must give exactly what the booster gives and what a batch gives for the same flights.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import orjson
import pytest

import locustfile
from flask_app import create_app
from training.artifacts import load_artifact


def _flights(model_dir: Path, n: int) -> list[dict]:
    random.seed(11)
    profile = json.loads(locustfile.PROFILE_PATH.read_text(encoding="utf-8"))
    traffic = locustfile.Traffic(profile, load_artifact(model_dir).spec.to_dict())
    return [traffic.flight() for _ in range(n)]


def test_single_flights_cached_or_not_equal_the_boosters_batch_answer(tiny_model_dir: Path):
    app = create_app({"TESTING": True, "MODEL_DIR": str(tiny_model_dir)})
    client = app.test_client()
    flights = _flights(tiny_model_dir, 40)
    batch = client.post("/predict", json={"flights": flights}).get_json()["predictions"]
    # The booster itself, on the same flights encoded by the same spec, in one call.
    model = app.extensions["delay_model"]
    schema_loaded = app.extensions["schemas"].batch.load({"flights": flights})["flights"]
    direct = model.booster.inplace_predict(model.spec.encode(schema_loaded),
                                           validate_features=False)
    model._predict_row.cache_clear()
    for rounds in (1, 2):  # the first pass fills the cache, the second is served from it
        singles = [client.post("/predict", json=f).get_json()["predictions"][0] for f in flights]
        assert singles == batch
        info = model._predict_row.cache_info()
        assert info.hits + info.misses == 40 * rounds
    assert info.hits >= 40  # every second-pass flight came from the cache
    assert [p["delay_probability"] for p in batch] == [round(float(p), 4) for p in direct]


def test_cached_answers_cannot_be_altered_by_a_caller(tiny_model_dir: Path):
    app = create_app({"TESTING": True, "MODEL_DIR": str(tiny_model_dir)})
    model = app.extensions["delay_model"]
    flight = app.extensions["schemas"].flight.load(_flights(tiny_model_dir, 1)[0])
    first = model.predict([flight])
    expected = float(first[0])
    with pytest.raises(ValueError, match="read-only"):
        first[0] = 42.0
    again = model.predict([flight])
    assert again is first  # served from the cache ...
    assert float(again[0]) == expected  # ... and still the booster's answer


def test_orjson_provider_answers_json_with_non_ascii_and_refuses_nan(tiny_model_dir: Path):
    app = create_app({"TESTING": True, "MODEL_DIR": str(tiny_model_dir)})
    client = app.test_client()
    body = client.get("/model")
    assert body.mimetype == "application/json"
    assert orjson.loads(body.data)["feature_spec"]["airlines"]
    bad = client.post("/predict", data=b'{"OPERA": "Copa Air", "TIPOVUELO": "I", "MES": NaN}',
                      content_type="application/json")
    assert bad.status_code == 400
    assert bad.get_json()["error"]["status"] == 400
    unknown = client.post("/predict", json={"OPERA": "Línea Ñandú", "TIPOVUELO": "I", "MES": 1})
    assert unknown.status_code == 400
    assert "Línea Ñandú" in unknown.get_data(as_text=True)
