"""The fast flight check (flask_app/schemas.py FastFlights) agrees with marshmallow.

It may only make accepted bodies faster: on thousands of valid and invalid flights and batches
(wrong types, booleans for numbers, unknown names, impossible dates, months that disagree with
the departure, extra keys, nulls), whatever it accepts marshmallow accepts with the same loaded
dict, key order included, and whatever marshmallow accepts it accepts too.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from conftest import AIRLINES, DESTINATIONS
from marshmallow import ValidationError

from flask_app.schemas import build_schemas
from training.features import FeatureSpec

MAX_BATCH = 5
MISSING = object()

CHOICES: dict[str, list[Any]] = {
    "OPERA": [*AIRLINES, "Pan Am", "", "grupo latam", None, 1, True, ["Sky Airline"],
              {"x": 1}, MISSING],
    "TIPOVUELO": ["I", "N", "X", "i", None, 0, False, ["I"], MISSING],
    "MES": [1, 3, 7, 12, 0, 13, -1, True, False, 3.0, "3", None, [3], 2**70, MISSING],
    "Fecha-I": ["2017-03-05 10:30", "2017-03-05 10:30:15", "2017-03-05T10:30",
                "2017-03-05T10:30:00", "2017-07-15 08:30", "2017-02-30 10:00", "2017-03-05 25:00",
                "2017-03-05", "2017-03-05 10:30Z", "2017-03-05 10:30:00+00:00", " 2017-03-05 10:30",
                "２０17-03-05 10:30", "", None, 20170305, ["2017-03-05 10:30"], MISSING],
    "SIGLADES": [*DESTINATIONS, "Atlantis", "lima", "", None, 5, ["Lima"], MISSING],
}


def random_flight(rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.03:
        return rng.choice([None, [], "flight", 3, ["OPERA"]])
    valid = rng.random() < 0.5  # half start from a valid flight and change at most one field
    flight: dict[str, Any] = {}
    changed = rng.choice(list(CHOICES)) if valid else None
    for name, options in CHOICES.items():
        if valid and name != changed:
            value = {"OPERA": rng.choice(AIRLINES), "TIPOVUELO": rng.choice("IN"), "MES": 3,
                     "Fecha-I": rng.choice(["2017-03-05 10:30", MISSING, None]),
                     "SIGLADES": rng.choice([*DESTINATIONS, MISSING, None])}[name]
        else:
            value = rng.choice(options)
        if value is not MISSING:
            flight[name] = value
    if rng.random() < 0.05:
        flight[rng.choice(["extra", "opera", "Fecha", "flights"])] = 1
    return flight


def marshmallow_verdict(schema, data: Any) -> tuple[bool, Any]:
    try:
        return True, schema.load(data)
    except ValidationError as exc:
        return False, exc.messages


@pytest.fixture(scope="module")
def schemas():
    return build_schemas(FeatureSpec(AIRLINES, DESTINATIONS), MAX_BATCH)


def test_single_flights_get_marshmallows_verdict(schemas):
    rng = random.Random(13)
    accepted = 0
    for _ in range(6000):
        flight = random_flight(rng)
        ok, loaded = marshmallow_verdict(schemas.flight, flight)
        fast = schemas.fast.flight(flight)
        if fast is not None:
            assert ok and fast == loaded and list(fast) == list(loaded), flight
        assert (fast is not None) == ok, flight
        accepted += ok
    # Both kinds were really exercised.
    assert 500 < accepted < 5500


def test_batches_get_marshmallows_verdict(schemas):
    rng = random.Random(14)
    accepted = 0
    for _ in range(2000):
        size = rng.choice([0, 1, 2, 3, MAX_BATCH, MAX_BATCH + 1])
        valid = rng.random() < 0.6
        flights = [random_flight(rng) for _ in range(size)]
        if valid:  # mostly-valid batches, so that whole batches pass too
            flights = [f for f in flights if marshmallow_verdict(schemas.flight, f)[0]] or \
                flights
        body: Any = {"flights": flights}
        if rng.random() < 0.05:
            body = rng.choice([{"flights": flights, "extra": 1}, {"flights": {"0": flights}},
                               {"flights": None}, {}, flights])
        ok, loaded = marshmallow_verdict(schemas.batch, body)
        fast = schemas.fast.batch(body)
        if fast is not None:
            assert ok and fast == loaded["flights"], body
            assert all(list(a) == list(b) for a, b in zip(fast, loaded["flights"], strict=True))
        assert (fast is not None) == ok, body
        accepted += ok
    assert 200 < accepted < 1800


def test_refused_bodies_still_get_marshmallows_messages(client):
    bad = {"flights": [{"OPERA": "Sky Airline", "TIPOVUELO": "I", "MES": 3},
                       {"OPERA": "Pan Am", "TIPOVUELO": "I", "MES": True}]}
    answer = client.post("/predict", json=bad)
    assert answer.status_code == 400
    fields = answer.get_json()["error"]["fields"]
    assert sorted(fields) == ["flights[1].MES", "flights[1].OPERA"]
    assert fields["flights[1].OPERA"][0].startswith("Unknown airline 'Pan Am'; allowed: ")
    assert fields["flights[1].MES"] == ["Not a valid integer: send a JSON number such as 7."]
