"""The answer's probabilities round exactly as Python's ``round(p, 4)`` does (the reference)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from flask_app.rounding import round_probabilities


def reference(values: np.ndarray) -> list[float]:
    return [round(float(v), 4) for v in values]


def near_halves() -> np.ndarray:
    """Doubles around every half-way point n + 0.5 ten-thousandths in [0, 1]: the only places a
    scaled product can land on the wrong side."""
    out = []
    for n in range(10000):
        middle = (2 * n + 1) / 20000
        below = above = middle
        for _ in range(4):
            below, above = math.nextafter(below, 0.0), math.nextafter(above, 1.0)
            out += [below, above]
        out.append(middle)
    return np.array(out, dtype=np.float64)


def test_every_double_next_to_a_half_way_point_rounds_as_round_does() -> None:
    values = near_halves()
    assert round_probabilities(values) == reference(values)


def test_float32_probabilities_round_as_round_does() -> None:
    # What the booster returns: float32, widened exactly to the doubles round() is given.
    values = np.random.default_rng(4).random(200_000).astype(np.float32)
    values[:3] = (0.0, 1.0, 0.99995)
    assert round_probabilities(values) == reference(values)


@settings(max_examples=300, deadline=None)
@given(arrays(np.float64, st.integers(0, 64), elements=st.floats(0.0, 1.0)))
def test_any_probabilities_round_as_round_does(values: np.ndarray) -> None:
    got = round_probabilities(values)
    assert got == reference(values)
    assert all(type(v) is float for v in got)
