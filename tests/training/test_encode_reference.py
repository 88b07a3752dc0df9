"""``FeatureSpec.encode`` equals a plain reference encoding, bit for bit.

The encoder has two internal paths (row by row for a few flights, column at a time with
calendar facts per distinct day for more); both must give exactly the float32 bytes of the
obvious per-flight, per-column definition, whatever mix of inputs, years and batch sizes.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from training.features import TIME_COLUMNS, FeatureSpec, time_features

SPEC = FeatureSpec(("Grupo LATAM", "Sky Airline", "Copa Air", "Iberia"),
                   ("Miami", "Lima", "Arica", "Madrid", "Calama"))


def reference(spec: FeatureSpec, flights: list[dict[str, Any]]) -> np.ndarray:
    """Each cell straight from its column name: the definition, with no cleverness."""
    rows = []
    for flight in flights:
        when, dest = flight.get("Fecha-I"), flight.get("SIGLADES")
        times = dict(zip(TIME_COLUMNS, time_features(when), strict=True)) if when else {}
        row = []
        for name in spec.feature_names:
            if name.startswith("OPERA="):
                row.append(1.0 if flight["OPERA"] == name[6:] else 0.0)
            elif name == "TIPOVUELO=I":
                row.append(1.0 if flight["TIPOVUELO"] == "I" else 0.0)
            elif name == "MES":
                row.append(float(flight["MES"]))
            elif name in TIME_COLUMNS:
                row.append(times.get(name, math.nan))
            else:
                assert name.startswith("SIGLADES=")
                row.append(math.nan if dest is None else float(dest == name[9:]))
        rows.append(row)
    return np.array(rows, dtype=np.float32).reshape(len(flights), spec.n_features)


def random_flights(rng: np.random.Generator, count: int) -> list[dict[str, Any]]:
    """Every input level; departures mostly in a few weeks (repeated days), some in any year,
    some as pandas Timestamps (training passes those)."""
    flights = []
    for _ in range(count):
        flight: dict[str, Any] = {"OPERA": str(rng.choice(SPEC.airlines)),
                                  "TIPOVUELO": str(rng.choice(["I", "N"]))}
        kind = rng.integers(4)
        if kind == 0:
            when = datetime(2017, 12, 20) + timedelta(minutes=int(rng.integers(0, 40 * 1440)))
        elif kind == 1:
            when = datetime(int(rng.integers(1, 10000)), 1, 1) + timedelta(
                days=int(rng.integers(0, 365)), seconds=int(rng.integers(0, 86400)))
        else:
            when = None
        if when is not None and rng.random() < 0.2:
            when = pd.Timestamp(when) if 1678 < when.year < 2262 else when
        flight["MES"] = when.month if when is not None else int(rng.integers(1, 13))
        if when is not None:
            flight["Fecha-I"] = when
        elif rng.random() < 0.3:
            flight["Fecha-I"] = None
        if rng.random() < 0.6:
            flight["SIGLADES"] = str(rng.choice(SPEC.destinations))
        elif rng.random() < 0.3:
            flight["SIGLADES"] = None
        flights.append(flight)
    return flights


@pytest.mark.parametrize("count", [0, 1, 2, 3, 4, 5, 6, 17, 256, 2000])
def test_encode_equals_the_reference_bit_for_bit(count: int) -> None:
    rng = np.random.default_rng(count)
    for _ in range(3 if count < 100 else 1):
        flights = random_flights(rng, count)
        got = SPEC.encode(flights)
        want = reference(SPEC, flights)
        assert got.dtype == np.float32 and got.shape == want.shape
        assert got.tobytes() == want.tobytes()


def test_each_flight_encodes_alone_as_in_a_batch() -> None:
    flights = random_flights(np.random.default_rng(7), 300)
    batch = SPEC.encode(flights)
    for flight, row in zip(flights, batch, strict=True):
        assert SPEC.encode([flight]).tobytes() == row.tobytes()
