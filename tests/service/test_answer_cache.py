"""Repeated single-flight bodies get their first answer again (flask_app/answers.py).

The cache is only sound if a repeat gets exactly what the full path would give it, if nothing
that the full path refuses is ever kept, and if the headers and the query string are still
checked on every request. Each of those is tested here against the real app.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

import locustfile
from flask_app import create_app
from flask_app.answers import MAX_BODY_BYTES, Answer, AnswerCache
from training.artifacts import load_artifact


def _bodies(model_dir: Path, n: int) -> list[bytes]:
    """Single-flight bodies as the load generator sends them (compact JSON)."""
    rng = random.Random(5)
    profile = json.loads(locustfile.PROFILE_PATH.read_text(encoding="utf-8"))
    traffic = locustfile.Traffic(profile, load_artifact(model_dir).spec.to_dict())
    return [json.dumps(traffic.flight(rng), separators=(",", ":")).encode() for _ in range(n)]


def _post(client, body: bytes, **kwargs):
    kwargs.setdefault("content_type", "application/json")
    return client.post("/predict", data=body, **kwargs)


def test_a_repeat_gets_the_bytes_a_fresh_app_computes(tiny_model_dir: Path):
    bodies = _bodies(tiny_model_dir, 30)
    served = create_app({"TESTING": True, "MODEL_DIR": str(tiny_model_dir)})
    client = served.test_client()
    cache = served.extensions["delay_model"].answers
    first = [_post(client, b) for b in bodies]
    assert all(b in cache for b in bodies)
    hits = cache.hits
    repeats = [_post(client, b) for b in bodies]
    assert cache.hits - hits == len(bodies)
    # Every app computes the first answer the full way: a second app is the reference.
    fresh = create_app({"TESTING": True, "MODEL_DIR": str(tiny_model_dir)}).test_client()
    reference = [_post(fresh, b) for b in bodies]
    for one, two, ref in zip(first, repeats, reference, strict=True):
        assert one.status_code == two.status_code == 200
        assert two.mimetype == "application/json"
        assert two.get_data() == one.get_data() == ref.get_data()
        assert len(two.get_json()["predictions"]) == 1


def test_refused_bodies_are_refused_every_time_and_never_kept(app, client):
    cache = app.extensions["delay_model"].answers
    bad = b'{"OPERA":"Pan Am","TIPOVUELO":"I","MES":3}'
    for _ in range(2):
        answer = _post(client, bad)
        assert answer.status_code == 400
        assert "OPERA" in answer.get_json()["error"]["fields"]
    broken = b'{"OPERA":'
    for _ in range(2):
        assert _post(client, broken).status_code == 400
    assert bad not in cache and broken not in cache
    assert cache.hits == 0


def test_headers_and_query_are_checked_before_the_cache(app, client, tiny_model_dir: Path):
    body = _bodies(tiny_model_dir, 1)[0]
    assert _post(client, body).status_code == 200
    assert _post(client, body, content_type="text/plain").status_code == 415
    gzipped = _post(client, body, headers={"Content-Encoding": "gzip"})
    assert gzipped.status_code == 415
    assert "Content-Encoding" in gzipped.get_json()["error"]["message"]
    assert client.post("/predict?explain=maybe", data=body,
                       content_type="application/json").status_code == 400
    explained = client.post("/predict?explain=true", data=body, content_type="application/json")
    assert explained.status_code == 200
    assert "explanation" in explained.get_json()["predictions"][0]
    assert app.extensions["delay_model"].answers.hits == 0
    # Asked with explain first: that richer answer must not be kept for plain requests.
    other = _bodies(tiny_model_dir, 2)[1]
    assert "explanation" in client.post("/predict?explain=true", data=other,
                                        content_type="application/json").get_json()[
                                            "predictions"][0]
    assert "explanation" not in _post(client, other).get_json()["predictions"][0]


def test_batches_and_long_bodies_are_answered_but_not_kept(app, client, tiny_model_dir: Path):
    cache = app.extensions["delay_model"].answers
    bodies = _bodies(tiny_model_dir, 3)
    batch = b'{"flights":[' + b",".join(bodies) + b"]}"
    assert len(_post(client, batch).get_json()["predictions"]) == 3
    padded = bodies[0][:-1] + b" " * MAX_BODY_BYTES + b"}"
    assert len(_post(client, padded).get_json()["predictions"]) == 1
    assert batch not in cache and padded not in cache
    # The same flight, compact: kept, and answered as the padded spelling was.
    assert _post(client, bodies[0]).get_json() == _post(client, padded).get_json()
    assert bodies[0] in cache and padded not in cache


def test_cached_answers_are_counted_in_the_metrics(app, client, tiny_model_dir: Path):
    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    body = _bodies(tiny_model_dir, 1)[0]
    outcome = "delayed" if _post(client, body).get_json()["predictions"][0]["delayed"] \
        else "on_time"
    names = (("scl_delay_flights_scored_total", {}),
             ("scl_delay_predictions_total", {"outcome": outcome}),
             ("scl_delay_predict_batch_size_count", {}),
             ("scl_delay_answers_reused_total", {}),
             ("scl_delay_booster_rows_total", {}))
    before = [sample(name, **labels) for name, labels in names]
    for _ in range(3):
        assert _post(client, body).status_code == 200
    assert app.extensions["delay_model"].answers.hits == 3
    after = [sample(name, **labels) for name, labels in names]
    assert [a - b for a, b in zip(after, before, strict=True)] == [3, 3, 3, 3, 0]


def test_the_least_recently_used_answer_goes_first():
    cache = AnswerCache(2)
    a, b, c = Answer(b"A", 0), Answer(b"B", 1), Answer(b"C", 0)
    cache.put(b"a", a)
    cache.put(b"b", b)
    assert cache.get(b"a") == a  # a is now the most recently used
    cache.put(b"c", c)
    assert cache.get(b"b") is None
    assert (cache.get(b"a"), cache.get(b"c")) == (a, c)
    assert len(cache) == 2 and cache.hits == 3


@pytest.mark.parametrize("entries, body", [(0, b"x"), (4, b"x" * (MAX_BODY_BYTES + 1))])
def test_nothing_is_kept_without_room_or_for_long_bodies(entries: int, body: bytes):
    cache = AnswerCache(entries)
    cache.put(body, Answer(b"{}", 0))
    assert body not in cache and cache.get(body) is None
