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
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, missing

from flask_app.schemas import Schemas

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
            flights, many = [body], False
        loaded = []
        fields, keys = self._fields, self._keys
        try:
            for item in flights:
                if type(item) is not dict or not item.keys() <= keys:
                    return None
                loaded.append({attribute: field.deserialize(item.get(key, missing), key, item)
                               for key, attribute, field in fields})
            self._month_rule(loaded if many else loaded[0], many=many)
        except ValidationError:
            return None
        return loaded


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
