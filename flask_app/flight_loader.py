"""Flights loaded by the flight schema's own marshmallow fields, without its per-item machinery.

``Schema.load`` over a 1,000-flight batch was ~60 % of the batch's server CPU, and little of
that is validation: for every item marshmallow builds its error store, walks the fields through
getter closures, checks ``partial`` and the unknown keys by set arithmetic and calls each
field's ``deserialize`` through several layers (docs/performance.md). The validation itself is
the fields' ``deserialize`` (type, vocabulary, range, date format) plus three schema rules:
no unknown keys, a batch size within the ``Length`` validator, MES agreeing with Fecha-I.

:class:`FieldLoader` runs exactly those: every value through its own field object's
``deserialize``, the schema's own ``_month_agrees`` validator and the batch field's own
validators, with the keys and order taken from the schema. It returns what ``load`` returns,
or ``None`` at the first complaint, and the caller then runs ``load`` itself, so every error a
client sees is still worded by marshmallow. A schema with anything it does not run (another
schema hook, a field with hooks, an optional field defaulting to something but None) is refused
at start-up.

A batch is loaded field by field: each field's values of every flight in one list, then the
flights zipped back together. The same airline, flight type, month and destination come back
flight after flight, and a field whose answer depends on the value alone
(``ShortPathField.value_only``) is asked once per distinct value (``answers``; the departure
field hands its nearly all distinct strings straight to its own ``_deserialize``). Values are
told apart by exact type, so ``True`` or ``1.0`` never borrow the answer of ``1``: a column
holding anything but strings, integers, null or absent keys, and every column of another
field, goes through ``deserialize`` value by value.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, missing

from flask_app.schemas import Schemas

# Value types a batch remembers answers for: exact types, so True (a bool) or 1.0 (a float, equal
# to 1 as a dict key) never reach the answer given to 1; None and an absent key (``missing``)
# have one answer each. A column holding any other type is deserialized value by value.
_REMEMBERED = frozenset({str, int, type(None), type(missing)})
# The hooks the flight schema may carry: the month rule, run here by name.
_MONTH_RULE = "_month_agrees"


class FieldLoader:
    """``loader(body)``: the flights ``Schemas`` would load from ``body``, or ``None``."""

    def __init__(self, schemas: Schemas) -> None:
        flight = schemas.flight
        _check_runnable(flight)
        self._fields = tuple((field.data_key or name, field.attribute or name, field)
                             for name, field in flight.load_fields.items())
        self._keys = frozenset(key for key, _, _ in self._fields)
        self._attributes = tuple(attribute for _, attribute, _ in self._fields)
        # Fields whose answer is a function of the value alone: remembered within a batch.
        self._value_only = tuple(bool(getattr(field, "value_only", False))
                                 for _, _, field in self._fields)
        self._month_rule = getattr(flight, _MONTH_RULE)
        batch_fields = schemas.batch.load_fields
        if set(batch_fields) != {"flights"}:
            raise ValueError(f"the batch schema's fields {sorted(batch_fields)} are not the "
                             "one list flask_app/flight_loader.py knows")
        self._batch_checks = tuple(batch_fields["flights"].validators)

    def __call__(self, body: Any) -> list[dict[str, Any]] | None:
        if type(body) is not dict:
            return None
        if "flights" in body:
            flights = body["flights"]
            if len(body) != 1 or type(flights) is not list:
                return None
            try:
                for check in self._batch_checks:  # the Length validator: 1 to MAX_BATCH_SIZE
                    check(flights)
            except ValidationError:
                return None
            many = True
        else:
            many = False
        try:
            if many:
                loaded = self._load_batch(flights)
            else:
                one = self._load_one(body)
                loaded = None if one is None else [one]
            if loaded is None:
                return None
            self._month_rule(loaded if many else loaded[0], many=many)
        except ValidationError:
            return None
        return loaded

    def _load_one(self, item: dict[str, Any]) -> dict[str, Any] | None:
        if not item.keys() <= self._keys:
            return None
        return {attribute: field.deserialize(item.get(key, missing), key, item)
                for key, attribute, field in self._fields}

    def _load_batch(self, flights: list[Any]) -> list[dict[str, Any]] | None:
        """Field by field over the whole batch: each field's values in one list, a value-only
        field's answers once per distinct value, then the flights zipped together."""
        if set(map(type, flights)) != {dict} or not set().union(*flights) <= self._keys:
            return None
        columns = []
        for (key, _, field), value_only in zip(self._fields, self._value_only, strict=True):
            column = [item.get(key, missing) for item in flights]
            if value_only and set(map(type, column)) <= _REMEMBERED:
                column = list(map(field.answers(set(column), key).__getitem__, column))
            else:
                column = [field.deserialize(value, key, item)
                          for value, item in zip(column, flights, strict=True)]
            columns.append(column)
        return [dict(zip(self._attributes, row, strict=True)) for row in zip(*columns, strict=True)]


def _check_runnable(flight: Schema) -> None:
    """Refuse a flight schema with rules this loader would skip."""
    hooks = {tag: [name for name, *_ in entries] for tag, entries in flight._hooks.items()
             if entries}
    if hooks != {"validates_schema": [_MONTH_RULE]}:
        raise ValueError(f"the flight schema has hooks {hooks}; flask_app/flight_loader.py "
                         f"runs only {_MONTH_RULE}")
    for name, field in flight.load_fields.items():
        if field.pre_load or field.post_load:
            raise ValueError(f"field {name} has hooks flask_app/flight_loader.py does not run")
        if field.load_default is not None and not field.required:
            raise ValueError(f"optional field {name} must default to None")
