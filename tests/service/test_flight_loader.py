"""The field loader never accepts what ``Schema.load`` rejects, and returns what it returns.

Property, on generated valid, near-valid and invalid bodies: ``FieldLoader(body)`` is None, or
``load`` accepts the body and gives exactly the same flights (keys in the same order, equal
values of the same types). On valid bodies the loader must answer (not None), or it would buy
nothing. The reference is marshmallow's own ``load`` of the same schema objects.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import Schema, ValidationError, fields, post_load

from flask_app import api
from flask_app.flight_loader import FieldLoader
from flask_app.schemas import Schemas, build_schemas
from training.features import FeatureSpec

AIRLINES = ("Grupo LATAM", "Sky Airline", "Copa Air")
DESTINATIONS = ("Miami", "Lima", "Buenos Aires")
LIMIT = 4  # small, so oversize batches are cheap to generate
SCHEMAS = build_schemas(FeatureSpec(AIRLINES, DESTINATIONS), LIMIT)
FAST = FieldLoader(SCHEMAS)  # the code under test
ODD_DEPARTURES = (
    "2017-02-30 10:00", "2017-02-29 10:00", "2016-02-29 10:00", "2017-01-05 24:00",
    "2017-01-05 23:60", "2017-01-05 10:00:60", "2017-13-05 10:00", "2017-00-05 10:00",
    "2017-01-00 10:00", "0000-01-05 10:00", "9999-12-31 23:59:59", "0001-01-01 00:00",
    "2017-01-05", "2017-01-05 10", "2017-1-5 10:00", "2017-01-05 10:00+03:00",
    "2017-01-05 10:00Z", "2017-01-05 10:00:00.5", " 2017-01-05 10:00", "2017-01-05 10:00\n",
    "2017-01-05  10:00", "2017-01-05t10:00", "20170105T1000", "２０１７-01-05 10:00",
    "٢٠١٧-01-05 10:00", "2017-01-05 1０:00", "", "null", "2017-01-05_10:00",
)


def marshmallow_load(body: Any) -> list[dict[str, Any]]:
    """What ``parse_flights`` did before the loader (and still does when it says None)."""
    if "flights" in body:
        return SCHEMAS.batch.load(body)["flights"]
    return [SCHEMAS.flight.load(body)]


def typed(flights: list[dict[str, Any]]) -> list[list[tuple[str, type, Any]]]:
    """Flights with each value's exact type, in key order: equal only if truly the same."""
    return [[(k, type(v), v) for k, v in flight.items()] for flight in flights]


def check(body: Any) -> list[dict[str, Any]] | None:
    """The property; returns the loader's answer for further checks."""
    fast = FAST(body)
    if fast is None:
        return None
    try:
        loaded = marshmallow_load(body)
    except ValidationError as exc:
        raise AssertionError(f"the loader accepted what marshmallow rejects: {exc.messages}")\
            from None
    assert typed(fast) == typed(loaded)
    return fast


departures = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59))


@st.composite
def valid_flights(draw: st.DrawFn) -> dict[str, Any]:
    """A flight marshmallow accepts, its keys in any order, optional inputs absent or null."""
    flight: dict[str, Any] = {"OPERA": draw(st.sampled_from(AIRLINES)),
                              "TIPOVUELO": draw(st.sampled_from(("I", "N")))}
    when = draw(st.none() | departures)
    flight["MES"] = when.month if when else draw(st.integers(1, 12))
    if when is not None or draw(st.booleans()):  # else Fecha-I is absent
        flight["Fecha-I"] = None if when is None else spell(when, draw(st.integers(0, 3)))
    destination = draw(st.sampled_from(("absent", None, *DESTINATIONS)))
    if destination != "absent":
        flight["SIGLADES"] = destination
    return dict(draw(st.permutations(list(flight.items()))))


def spell(when: datetime, style: int) -> str:
    """One of the four accepted spellings (strftime's %Y drops a small year's zeros)."""
    date = f"{when.year:04d}-{when.month:02d}-{when.day:02d}"
    clock = f"{when.hour:02d}:{when.minute:02d}" + (f":{when.second:02d}" if style & 1 else "")
    return date + ("T" if style & 2 else " ") + clock


departure_like = st.one_of(
    st.sampled_from(ODD_DEPARTURES),
    st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}(:[0-9]{2})?",
                  fullmatch=True),
    departures.map(lambda when: when.isoformat(sep=" ")),  # microseconds, sometimes
    st.text(alphabet="0123456789-: T+Z.", max_size=20),
)
odd_values = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 15), st.floats(allow_nan=False), st.just(1.0),
    st.sampled_from(AIRLINES + DESTINATIONS + ("I", "N", "i", "", "1", "Miami ")),
    st.text(max_size=8), departure_like, st.lists(st.integers(1, 12), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=1),
)
# Wrong values aimed at each field: the near misses most likely to slip through a loose check.
ODD_BY_FIELD = {
    "OPERA": st.sampled_from((*DESTINATIONS, "grupo latam", "Grupo LATAM ", "I", "", None, 7)),
    "TIPOVUELO": st.sampled_from(("i", "n", "O", "IN", " I", "", AIRLINES[0], None, 1)),
    "MES": st.sampled_from((0, 13, True, False, 1.0, 12.0, "1", None)),
    "Fecha-I": departure_like,
    "SIGLADES": st.sampled_from((*AIRLINES, "miami", "Lima ", "", "I", 5, ["Lima"])),
}
keys = st.sampled_from(("OPERA", "TIPOVUELO", "MES", "Fecha-I", "SIGLADES", "fecha", "flights",
                        "opera", "Fecha", "x"))


@st.composite
def near_valid_flights(draw: st.DrawFn) -> Any:
    """A valid flight with a few changes: a value replaced, a key dropped or added."""
    flight = draw(valid_flights())
    for _ in range(draw(st.sampled_from((1, 1, 1, 2)))):  # mostly one thing wrong
        change = draw(st.sampled_from(("value", "value", "value", "departure", "drop", "add",
                                       "month")))
        if change == "value":
            key = draw(st.sampled_from(sorted(ODD_BY_FIELD)))
            flight[key] = draw(ODD_BY_FIELD[key] | odd_values)
            if key == "MES":
                flight.pop("Fecha-I", None)  # so a wrong MES is not caught by disagreement
        elif change == "departure":  # an odd departure, with MES agreeing if Python parses it
            text = flight["Fecha-I"] = draw(departure_like)
            with contextlib.suppress(ValueError):
                flight["MES"] = datetime.fromisoformat(text).month
        elif change == "drop" and flight:
            del flight[draw(st.sampled_from(sorted(flight)))]
        elif change == "add":
            flight[draw(keys)] = draw(odd_values)
        else:
            flight["MES"] = draw(st.integers(1, 12))  # may disagree with Fecha-I
    return flight


any_flight = st.one_of(valid_flights(), near_valid_flights(), odd_values)


@st.composite
def batches(draw: st.DrawFn, items: st.SearchStrategy) -> dict[str, Any]:
    flights = draw(st.lists(items, max_size=LIMIT + 2))
    body: dict[str, Any] = {"flights": draw(st.sampled_from(
        (flights, flights, flights, tuple(flights), None, "flights", 3, {"0": flights})))}
    if draw(st.integers(0, 5)) == 0:
        body[draw(keys)] = draw(odd_values)
    return body


@settings(max_examples=800, deadline=None)
@given(st.one_of(near_valid_flights(), near_valid_flights(), valid_flights(), odd_values))
def test_the_loader_never_accepts_a_flight_marshmallow_rejects(body: Any) -> None:
    if isinstance(body, dict):
        check(body)
    else:
        assert FAST(body) is None  # parse_flights passes only objects; never accept others


@settings(max_examples=300, deadline=None)
@given(st.one_of(batches(any_flight), batches(near_valid_flights()), batches(valid_flights())))
def test_the_loader_never_accepts_a_batch_marshmallow_rejects(body: dict[str, Any]) -> None:
    check(body)


@settings(max_examples=300, deadline=None)
@given(valid_flights())
def test_valid_flights_are_loaded(flight: dict[str, Any]) -> None:
    assert check(flight) is not None


@settings(max_examples=150, deadline=None)
@given(st.lists(valid_flights(), min_size=1, max_size=LIMIT))
def test_valid_batches_are_loaded(flights: list[dict[str, Any]]) -> None:
    assert check({"flights": flights}) is not None


LATAM = {"OPERA": "Grupo LATAM", "TIPOVUELO": "I", "MES": 1}
# (body, who accepts it: the loader, only marshmallow (never sent as JSON) or nobody)
EXAMPLES = [
    (LATAM, "loader"),
    ({**LATAM, "Fecha-I": "2017-01-15 08:30", "SIGLADES": "Miami"}, "loader"),
    ({**LATAM, "Fecha-I": "2017-01-15T08:30:59", "SIGLADES": None}, "loader"),
    ({**LATAM, "Fecha-I": None}, "loader"),
    ({"flights": [LATAM] * LIMIT}, "loader"),
    ({"flights": [LATAM] * (LIMIT + 1)}, "error"),
    ({"flights": []}, "error"),
    ({"flights": [LATAM], "x": 1}, "error"),
    ({"flights": (LATAM,)}, "marshmallow"),
    ({"flights": [LATAM, 3]}, "error"),
    ({**LATAM, "MES": True}, "error"),
    ({**LATAM, "MES": 1.0}, "error"),
    ({**LATAM, "MES": 13}, "error"),
    ({**LATAM, "MES": None}, "error"),
    ({**LATAM, "OPERA": "grupo latam"}, "error"),
    ({**LATAM, "OPERA": None}, "error"),
    ({**LATAM, "SIGLADES": "Narnia"}, "error"),
    ({**LATAM, "SIGLADES": 5}, "error"),
    ({**LATAM, "MES": 2, "Fecha-I": "2017-02-30 10:00"}, "error"),
    ({**LATAM, "Fecha-I": "2017-03-01 10:00"}, "error"),  # disagrees with MES
    ({**LATAM, "Fecha-I": "٢٠١٧-01-05 10:00"}, "error"),
    ({**LATAM, "Fecha-I": "2017-01-05 10:00+03:00"}, "error"),
    ({**LATAM, "fecha": "2017-01-05 10:00"}, "error"),
    ({"TIPOVUELO": "I", "MES": 1}, "error"),
    ({**LATAM, "DIANOM": "Lunes"}, "error"),
    # Batches: the loader answers field by field, once per distinct value.
    ({"flights": [{**LATAM, "Fecha-I": "2017-01-15 08:30"}, {**LATAM, "Fecha-I": None}, LATAM,
                  {**LATAM, "Fecha-I": "2017-01-15 08:30"}]}, "loader"),
    ({"flights": [{**LATAM, "Fecha-I": "2017-01-15 08:30"},
                  {**LATAM, "MES": 2, "Fecha-I": "2017-02-30 10:00"}]}, "error"),
    ({"flights": [{**LATAM, "Fecha-I": "2017-01-15 08:30"}, {**LATAM, "Fecha-I": 20170115}]},
     "error"),
    ({"flights": [LATAM, {**LATAM, "SIGLADES": "Lima"}, {**LATAM, "SIGLADES": ["Lima"]}]},
     "error"),
    ({"flights": [LATAM, {"TIPOVUELO": "I", "MES": 1}]}, "error"),
    ({"flights": [LATAM, {**LATAM, "x": 1}]}, "error"),
]


@pytest.mark.parametrize(("body", "accepted_by"), EXAMPLES,
                         ids=[str(b)[:60] for b, _ in EXAMPLES])
def test_examples(body: dict[str, Any], accepted_by: str) -> None:
    assert (check(body) is not None) == (accepted_by == "loader")
    if accepted_by == "error":
        with pytest.raises(ValidationError):
            marshmallow_load(body)
    else:
        marshmallow_load(body)


def test_absent_optional_inputs_load_as_none_and_departures_as_naive_datetimes() -> None:
    (flight,) = check({"SIGLADES": "Lima", **LATAM, "Fecha-I": "2017-01-15 08:30"})
    assert list(flight) == ["OPERA", "TIPOVUELO", "MES", "Fecha-I", "SIGLADES"]
    assert flight["Fecha-I"] == datetime(2017, 1, 15, 8, 30) and flight["Fecha-I"].tzinfo is None
    assert check(LATAM) == [{**LATAM, "Fecha-I": None, "SIGLADES": None}]


def test_a_schema_rule_the_loader_would_skip_stops_start_up() -> None:
    class Hooked(SCHEMAS.flight.__class__):
        @post_load
        def _upper(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
            return data

    class HookedField(SCHEMAS.flight.__class__):
        GATE = fields.String(load_default=None)

    HookedField._declared_fields["GATE"].post_load = [lambda value: value]
    with pytest.raises(ValueError, match="hooks"):
        FieldLoader(Schemas(Hooked(), SCHEMAS.batch, LIMIT))
    with pytest.raises(ValueError, match="hooks"):
        FieldLoader(Schemas(HookedField(), SCHEMAS.batch, LIMIT))
    with pytest.raises(ValueError, match="batch"):
        FieldLoader(Schemas(SCHEMAS.flight, Schema(), LIMIT))


def test_an_extra_plain_field_is_validated_by_its_own_field() -> None:
    class Extra(SCHEMAS.flight.__class__):
        GATE = fields.Integer(load_default=None, allow_none=True, strict=True)

    loader = FieldLoader(Schemas(Extra(), SCHEMAS.batch, LIMIT))
    assert loader({**LATAM, "GATE": 4}) == [{**LATAM, "Fecha-I": None, "SIGLADES": None,
                                             "GATE": 4}]
    assert loader({**LATAM, "GATE": "4"}) is None


def test_the_app_loads_valid_bodies_without_schema_load(app: Flask, client: FlaskClient,
                                                            monkeypatch: pytest.MonkeyPatch):
    schemas = app.extensions[api.SCHEMAS]

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("Schema.load was asked about a valid body")

    monkeypatch.setattr(schemas.batch, "load", refuse)
    monkeypatch.setattr(schemas.flight, "load", refuse)
    assert client.post("/predict", json={"flights": [LATAM, LATAM]}).status_code == 200
    assert client.post("/predict", json={**LATAM, "MES": 2}).status_code == 200
    monkeypatch.undo()
    bad = client.post("/predict", json={"flights": [LATAM, {**LATAM, "MES": 13}]})
    assert bad.status_code == 400 and "flights[1].MES" in bad.get_json()["error"]["fields"]


def test_a_batch_never_lends_one_value_s_answer_to_an_equal_value_of_another_type() -> None:
    # The loader remembers answers within a batch; 1, True and 1.0 are equal dict keys.
    for odd in (True, 1.0, "1"):
        body = {"flights": [LATAM, {**LATAM, "MES": odd}]}
        assert check(body) is None, odd
        with pytest.raises(ValidationError):
            marshmallow_load(body)
    body = {"flights": [{**LATAM, "SIGLADES": "Lima"}, {**LATAM, "SIGLADES": "Lima"},
                        {**LATAM, "OPERA": "Sky Airline", "SIGLADES": "Lima"}]}
    assert [f["SIGLADES"] for f in check(body)] == ["Lima", "Lima", "Lima"]


def test_a_field_that_reads_the_whole_flight_is_asked_for_every_flight() -> None:
    # A field whose answer depends on more than its value must not be remembered.
    class Echo(fields.Field):
        def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
            return f"{value}/{data['OPERA']}"

    class Extra(SCHEMAS.flight.__class__):
        GATE = Echo(load_default=None, allow_none=True)

    loader = FieldLoader(Schemas(Extra(), SCHEMAS.batch, LIMIT))
    body = {"flights": [{**LATAM, "GATE": "A"}, {**LATAM, "OPERA": "Copa Air", "GATE": "A"}]}
    assert [f["GATE"] for f in loader(body)] == ["A/Grupo LATAM", "A/Copa Air"]
