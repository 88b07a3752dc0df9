"""The coalescer must return, for every request, exactly what a booster call of its own
would, while actually sharing calls among concurrent requests."""

from __future__ import annotations

import gevent
import numpy as np
import pytest
from conftest import synthetic_flights

from flask_app.coalesce import PredictionCoalescer
from training.artifacts import load_artifact
from training.features import mask_optional


@pytest.fixture(scope="module")
def artifact(tiny_model_dir):
    return load_artifact(tiny_model_dir)


def one_call_each(artifact, matrices):
    return [artifact.booster.inplace_predict(m, validate_features=False) for m in matrices]


def test_concurrent_requests_share_calls_and_get_their_own_rows(artifact):
    flights, _ = synthetic_flights(120, seed=5)
    # Mixed sizes and input levels, as a busy worker sees them.
    flights = flights[:60] + mask_optional(flights[60:], keep=())
    sizes = [1, 3, 1, 7, 1, 1, 12, 1, 2, 1] * 4
    matrices, start = [], 0
    for size in sizes:
        matrices.append(artifact.spec.encode(flights[start:start + size]))
        start += size
    expected = one_call_each(artifact, matrices)

    calls = []

    def predict(matrix):
        calls.append(len(matrix))
        return artifact.booster.inplace_predict(matrix, validate_features=False)

    coalescer = PredictionCoalescer(predict)
    greenlets = [gevent.spawn(coalescer.predict, m) for m in matrices]
    gevent.joinall(greenlets, raise_error=True)

    for greenlet, want in zip(greenlets, expected, strict=True):
        np.testing.assert_array_equal(greenlet.value, want)
    assert sum(calls) == sum(sizes)
    assert len(calls) < len(matrices) / 4, calls


def test_row_cap_splits_the_queue(artifact):
    flights, _ = synthetic_flights(30, seed=6)
    matrices = [artifact.spec.encode(flights[i:i + 10]) for i in range(0, 30, 10)]
    calls = []

    def predict(matrix):
        calls.append(len(matrix))
        return artifact.booster.inplace_predict(matrix, validate_features=False)

    coalescer = PredictionCoalescer(predict, max_rows=15)
    greenlets = [gevent.spawn(coalescer.predict, m) for m in matrices]
    gevent.joinall(greenlets, raise_error=True)
    assert calls == [10, 10, 10]
    for greenlet, want in zip(greenlets, one_call_each(artifact, matrices), strict=True):
        np.testing.assert_array_equal(greenlet.value, want)


def test_a_failing_call_reaches_its_requests_and_the_runner_survives(artifact):
    flights, _ = synthetic_flights(4, seed=7)
    good = artifact.spec.encode(flights)
    bad = np.zeros((1, 3), dtype=np.float32)  # wrong width: XGBoost refuses it

    def predict(matrix):
        return artifact.booster.inplace_predict(matrix, validate_features=False)

    coalescer = PredictionCoalescer(predict)
    with pytest.raises(Exception, match=r"(?i)feature"):
        coalescer.predict(bad)
    np.testing.assert_array_equal(coalescer.predict(good), one_call_each(artifact, [good])[0])
