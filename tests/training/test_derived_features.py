"""Boundaries of the challenge's derived columns and of the feature encoding."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
from synthetic_flights import flight_row

from training.data import load_flights
from training.features import (
    FeatureSpec,
    is_high_season,
    mask_optional,
    period_of_day,
    time_features,
)


@pytest.mark.parametrize(("when", "expected"), [
    ("2017-12-14 23:59", 0),
    ("2017-12-15 00:00", 1),
    ("2017-12-31 23:59", 1),
    ("2017-01-01 00:00", 1),
    ("2017-03-03 23:59", 1),
    ("2017-03-04 00:00", 0),
    ("2017-07-14 23:59", 0),
    ("2017-07-15 00:00", 1),
    ("2017-07-31 23:59", 1),
    ("2017-08-01 00:00", 0),
    ("2017-09-10 23:59", 0),
    ("2017-09-11 00:00", 1),
    ("2017-09-30 23:59", 1),
    ("2017-10-01 00:00", 0),
    ("2017-06-01 12:00", 0),
])
def test_high_season_bounds_are_inclusive(when: str, expected: int) -> None:
    assert is_high_season(datetime.strptime(when, "%Y-%m-%d %H:%M")) == expected


@pytest.mark.parametrize(("hhmm", "expected"), [
    ("00:00", "night"), ("04:59", "night"), ("05:00", "morning"), ("11:59", "morning"),
    ("12:00", "afternoon"), ("18:59", "afternoon"), ("19:00", "night"), ("23:59", "night"),
])
def test_period_of_day_boundaries(hhmm: str, expected: str) -> None:
    assert period_of_day(datetime.strptime(f"2017-05-10 {hhmm}", "%Y-%m-%d %H:%M")) == expected


def test_derived_columns_from_csv(csv_writer) -> None:
    """min_diff / delay_15 across midnight and the new year, and the other derived columns,
    computed by the loader on a file (the path the pipeline really takes)."""
    rows = [
        flight_row("2017-03-03 23:50:00", "2017-03-04 00:10:00"),   # +20 across midnight
        flight_row("2017-12-31 23:55:00", "2018-01-01 00:11:00"),   # +16 across the new year
        flight_row("2017-07-15 05:00:00", "2017-07-15 05:15:00"),   # exactly 15: not delayed
        flight_row("2017-09-30 23:59:00", "2017-09-30 23:50:00"),   # early: negative
        flight_row("2017-03-04 00:00:00", "2017-03-04 00:00:00"),
    ]
    frame, report = load_flights(csv_writer(rows))
    assert report.rows_used == 5
    assert frame["min_diff"].tolist() == [20.0, 16.0, 15.0, -9.0, 0.0]
    assert frame["delay_15"].tolist() == [1, 1, 0, 0, 0]
    assert frame["high_season"].tolist() == [1, 1, 1, 1, 0]
    assert frame["period_day"].tolist() == ["night", "night", "morning", "night", "night"]
    assert frame["MES"].tolist() == [3, 12, 7, 9, 3]


def test_mes_comes_from_scheduled_time_not_file(csv_writer) -> None:
    """The file's MES is the month of operation (not known before departure): ignore it."""
    rows = [flight_row("2017-01-31 23:50:00", "2017-02-01 00:30:00", MES="2", DIA="1")]
    frame, _ = load_flights(csv_writer(rows))
    assert frame["MES"].tolist() == [1]


def _spec() -> FeatureSpec:
    return FeatureSpec(["Sky Airline", "Grupo LATAM"], ["Arica", "Lima", "Miami"])


def test_encode_without_optional_inputs_nan_exactly_in_optional_columns() -> None:
    spec = _spec()
    row = spec.encode([{"OPERA": "Sky Airline", "TIPOVUELO": "N", "MES": 4}])[0]
    optional = {"day_of_week", "hour", "high_season", "holiday", "days_to_holiday",
                "days_since_holiday", "long_weekend"} | {
        f"SIGLADES={d}" for d in ("Arica", "Lima", "Miami")}
    for name, value in zip(spec.feature_names, row, strict=True):
        assert np.isnan(value) == (name in optional), name
    assert row.dtype == np.float32


def test_encode_full_flight_values() -> None:
    spec = _spec()
    flight = {"OPERA": "Grupo LATAM", "TIPOVUELO": "I", "MES": 12,
              "Fecha-I": datetime(2017, 12, 15, 18, 30), "SIGLADES": "Lima"}
    values = dict(zip(spec.feature_names, spec.encode([flight])[0].tolist(), strict=True))
    assert values == {
        "OPERA=Grupo LATAM": 1.0, "OPERA=Sky Airline": 0.0, "TIPOVUELO=I": 1.0, "MES": 12.0,
        "day_of_week": 4.0,  # Friday
        "hour": 18.5, "high_season": 1.0,
        # Chile 2017: Immaculate Conception Fri 8 Dec, Christmas Mon 25 Dec; 15 Dec is a
        # working Friday, 7 days after the one and 10 before the other (capped at 8).
        "holiday": 0.0, "days_to_holiday": 8.0, "days_since_holiday": 7.0, "long_weekend": 0.0,
        "SIGLADES=Arica": 0.0, "SIGLADES=Lima": 1.0, "SIGLADES=Miami": 0.0,
    }


def test_masked_levels_match_partial_requests() -> None:
    """Training's masked copies encode exactly like a request that never had the field."""
    spec = _spec()
    full = {"OPERA": "Sky Airline", "TIPOVUELO": "N", "MES": 5,
            "Fecha-I": datetime(2017, 5, 2, 7, 0), "SIGLADES": "Arica"}
    masked = spec.encode(mask_optional([full], keep=("SIGLADES",)))
    request = spec.encode([{"OPERA": "Sky Airline", "TIPOVUELO": "N", "MES": 5,
                            "SIGLADES": "Arica"}])
    np.testing.assert_array_equal(masked, request)


def test_mixed_batch_rows_hold_each_flights_own_values() -> None:
    """A batch mixing every input level, airline and destination encodes each row as that
    flight alone says, column by column (the encoder fills columns for all rows at once, so a
    row picking up a neighbour's value would show here)."""
    spec = _spec()
    airlines, cities = ("Sky Airline", "Grupo LATAM"), ("Arica", "Lima", "Miami")
    flights = []
    for n in range(24):
        flight = {"OPERA": airlines[n % 2], "TIPOVUELO": "IN"[n % 3 == 0], "MES": n % 12 + 1}
        if n % 4 in (1, 3):
            flight["Fecha-I"] = datetime(2017, n % 12 + 1, n + 1, n % 24, (7 * n) % 60)
        if n % 4 in (2, 3):
            flight["SIGLADES"] = cities[n % 3]
        flights.append(flight)
    matrix = spec.encode(flights)
    assert matrix.shape == (24, spec.n_features) and matrix.dtype == np.float32
    time_names = ("day_of_week", "hour", "high_season", "holiday", "days_to_holiday",
                  "days_since_holiday", "long_weekend")
    for flight, row in zip(flights, matrix, strict=True):
        values = dict(zip(spec.feature_names, row.tolist(), strict=True))
        for airline in airlines:
            assert values[f"OPERA={airline}"] == float(flight["OPERA"] == airline)
        assert values["TIPOVUELO=I"] == float(flight["TIPOVUELO"] == "I")
        assert values["MES"] == flight["MES"]
        when = flight.get("Fecha-I")
        for name, expected in zip(time_names, time_features(when) if when else [None] * 7,
                                  strict=True):
            if expected is None:
                assert np.isnan(values[name]), name
            else:
                assert values[name] == np.float32(expected), name
        for city in cities:
            if "SIGLADES" in flight:
                assert values[f"SIGLADES={city}"] == float(flight["SIGLADES"] == city)
            else:
                assert np.isnan(values[f"SIGLADES={city}"])


def test_encode_of_no_flights_is_an_empty_matrix() -> None:
    spec = _spec()
    assert spec.encode([]).shape == (0, spec.n_features)
