"""The speed-ups on the prediction path change no answer.

Single flights go through an LRU cache of booster answers (and repeated bodies through a cache
of whole answers), and JSON goes through orjson; all must give exactly what the booster gives
and what a batch gives for the same flights.
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
    answers_hits = model.answers.hits
    # Pass 1 computes every flight (the row cache fills), pass 2 sends the same bytes again
    # (the answer cache serves them), pass 3 sends the same flights with their keys in reverse
    # order: new bytes, so validated again, but the encoded rows come from the row cache.
    spellings = {1: flights, 2: flights, 3: [dict(reversed(f.items())) for f in flights]}
    for rounds, sent in spellings.items():
        singles = [client.post("/predict", json=f).get_json()["predictions"][0] for f in sent]
        assert singles == batch
        info = model._predict_row.cache_info()
        if rounds == 1:
            assert info.hits + info.misses == 40
        if rounds == 2:
            assert model.answers.hits - answers_hits == 40
            assert info.hits + info.misses == 40  # the row cache was not even asked
    assert info.hits + info.misses == 80
    assert info.hits >= 40  # every third-pass flight came from the row cache
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
