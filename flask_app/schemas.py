"""Marshmallow schemas for requests and responses, built from the loaded model's feature spec.

The allowed airlines and destinations are the vocabularies stored in the artifact's metadata,
so a retrained model with a new airline is served without a code change, and the same schema
objects validate requests and generate the OpenAPI document.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    missing,
    pre_load,
    validate,
    validates_schema,
)

from training.features import FLIGHT_TYPES, MONTHS, OPTIONAL_INPUTS, REQUIRED_INPUTS, FeatureSpec

DEPARTURE_FORMATS: tuple[str, ...] = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M",
                                      "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M")
# The same four shapes as one pattern (ASCII digits only: \d would admit other scripts' digits).
_DEPARTURE_SHAPE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}(:[0-9]{2})?")


class ShortPathField(fields.Field):
    """A field whose ``deserialize`` skips the steps it has no use for.

    marshmallow's ``Field.deserialize`` runs the field's own pre_load and post_load hooks
    (lists these fields never fill) and validates "missing" and null through two helper calls;
    per flight and field, that generic path was a fifth of a batch's validation. Here the same
    steps run in the same order with the same error messages (``make_error``), and a field
    given hooks takes marshmallow's own path.
    """

    #: True when the answer (or the error) depends on the value alone, never on ``attr`` or
    #: ``data``: flask_app/flight_loader.py then reuses it within a batch.
    value_only: ClassVar[bool] = False

    def deserialize(self, value: Any, attr: str | None = None, data: Any = None,
                    **kwargs: Any) -> Any:
        if self.pre_load or self.post_load:
            return super().deserialize(value, attr, data, **kwargs)
        if value is missing:
            if self.required:
                raise self.make_error("required")
            default = self.load_default
            return default() if callable(default) else default
        if value is None:
            if self.allow_none:
                return None
            raise self.make_error("null")
        output = self._deserialize(value, attr, data, **kwargs)
        self._validate(output)
        return output

    def answers(self, values: Collection[Any], attr: str) -> dict[Any, Any]:
        """``{value: deserialize(value)}`` for distinct ``values`` of a ``value_only`` field;
        raises the first ``ValidationError`` as ``deserialize`` would. A batch asks once per
        distinct value (flask_app/flight_loader.py)."""
        return {value: self.deserialize(value, attr, None) for value in values}


class StrictInteger(ShortPathField, fields.Integer):
    """An integer that refuses booleans, floats and numeric strings.

    marshmallow's ``Integer(strict=True)`` still takes ``true`` (a bool is an int in Python);
    ``MES: true`` is a client bug we want to report, not month 1.
    """

    value_only: ClassVar[bool] = True

    default_error_messages: ClassVar[dict[str, str]] = {
        "invalid": "Not a valid integer: send a JSON number such as 7."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid")
        return value


class Month(StrictInteger):
    """1-12; the ``Range`` validator words the error and the OpenAPI bounds, a plain comparison
    accepts the common case (same reason as :class:`Vocabulary`)."""

    def _validate(self, value: Any) -> None:
        if not min(MONTHS) <= value <= max(MONTHS):
            super()._validate(value)


class ScheduledDeparture(ShortPathField):
    """``YYYY-MM-DD HH:MM[:SS]`` (a ``T`` separator is accepted too) to a naive datetime."""

    value_only: ClassVar[bool] = True

    default_error_messages: ClassVar[dict[str, str]] = {
        "invalid": "Not a valid scheduled departure: expected 'YYYY-MM-DD HH:MM[:SS]', "
                   "e.g. '2017-07-15 08:30'.",
        "impossible": "Not a real date and time ({reason}): expected 'YYYY-MM-DD HH:MM[:SS]', "
                      "e.g. '2017-07-15 08:30'.",
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        # The shape is checked by a regex, the calendar by fromisoformat: together they accept
        # exactly DEPARTURE_FORMATS, at a tenth of strptime's cost (it was a quarter of a
        # 1,000-flight batch's validation time).
        if not isinstance(value, str) or _DEPARTURE_SHAPE.fullmatch(value) is None:
            raise self.make_error("invalid")
        try:
            return datetime.fromisoformat(value)
        except ValueError as exc:  # right shape, no such date or time: 2017-02-30, 25:00
            raise self.make_error("impossible", reason=str(exc)) from None

    def answers(self, values: Collection[Any], attr: str) -> dict[Any, Any]:
        """The same answers as ``deserialize``. In a field without hooks or validators,
        ``deserialize`` of a string is ``_deserialize`` alone, so a batch's strings (nearly
        all distinct) go straight to it; anything else takes ``deserialize``."""
        if self.pre_load or self.post_load or self.validators:
            return super().answers(values, attr)
        out = {value: self._deserialize(value, attr, None) for value in values
               if type(value) is str}
        if len(out) < len(values):
            out.update(super().answers([value for value in values if type(value) is not str],
                                       attr))
        return out

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else value.strftime(DEPARTURE_FORMATS[0])

    def _validate(self, value: Any) -> None:
        # This field has no validators, but marshmallow builds an ``And`` of them on every call
        # (a tenth of a batch's validation): skip that when there is nothing to run.
        if self.validators:
            super()._validate(value)


class OneOfShortEcho(validate.OneOf):
    """``OneOf`` whose message quotes at most 60 characters of the rejected value.

    The error names the bad input so the client sees what it sent, but a 1 MB string must not
    come back (twice: in ``message`` and ``fields``) in the answer.
    """

    def _format_error(self, value: Any) -> str:
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return self.error.format(input=shown, choices=self.choices_text, labels=self.labels_text)


def _one_of(choices: tuple[str, ...] | list[str], what: str) -> validate.OneOf:
    # The names come from model metadata: double any brace so str.format leaves them alone.
    shown = ", ".join(choices).replace("{", "{{").replace("}", "}}")
    return OneOfShortEcho(choices, error=f"Unknown {what} {{input}}; allowed: {shown}.")


class Vocabulary(ShortPathField, fields.String):
    """A string from a fixed vocabulary (airlines, flight types, destinations).

    The ``OneOf`` validator stays the definition (apispec turns it into the OpenAPI ``enum``,
    and it words the error); accepted values are first checked against a frozenset, so the
    common case costs one hash lookup instead of marshmallow's validator loop.
    """

    value_only: ClassVar[bool] = True

    def __init__(self, choices: tuple[str, ...] | list[str], what: str, **kwargs: Any) -> None:
        self._allowed = frozenset(choices)
        super().__init__(validate=_one_of(choices, what), **kwargs)

    def _validate(self, value: Any) -> None:
        if value not in self._allowed:
            super()._validate(value)


def flight_schema_class(spec: FeatureSpec) -> type[Schema]:
    """The schema of one flight, with vocabularies taken from ``spec``."""

    inputs = ", ".join(REQUIRED_INPUTS + OPTIONAL_INPUTS)

    class FlightSchema(Schema):
        class Meta:
            unknown = RAISE
            ordered = True

        error_messages: ClassVar[dict[str, str]] = {
            "unknown": f"Unknown field; a flight has only {inputs}.",
            "type": "A flight must be a JSON object such as "
                    '{"OPERA": "Grupo LATAM", "TIPOVUELO": "I", "MES": 1}.',
        }

        OPERA = Vocabulary(spec.airlines, "airline", required=True,
                           metadata={"description": "Operating airline (model vocabulary)",
                                     "example": "Grupo LATAM"})
        TIPOVUELO = Vocabulary(FLIGHT_TYPES, "flight type", required=True,
                               metadata={"description": "I = international, N = national",
                                         "example": "I"})
        MES = Month(required=True,
                            validate=validate.Range(
                                min(MONTHS), max(MONTHS),
                                error="Month must be an integer from {min} to {max}; got {input}."),
                            metadata={"description": "Month of the scheduled departure",
                                      "example": 1})
        fecha = ScheduledDeparture(data_key="Fecha-I", attribute="Fecha-I", load_default=None,
                                   allow_none=True,
                                   metadata={"description": "Scheduled departure, local time, "
                                             "any year (optional; sharpens the estimate "
                                             "through weekday, hour and Chilean holidays)",
                                             "type": "string",
                                             "example": "2017-01-15 08:30"})
        SIGLADES = Vocabulary(spec.destinations, "destination", load_default=None,
                              allow_none=True,
                              metadata={"description": "Destination city (optional)",
                                        "example": "Miami"})

        @validates_schema(pass_collection=True)
        def _month_agrees(self, data: Any, many: bool, **kwargs: Any) -> None:
            """MES and Fecha-I's month agree. Called once for a whole batch (not once per
            flight, as a per-item validator is: marshmallow's call and error bookkeeping per
            item cost more than the check); each disagreement is reported under its flight's
            index, as a per-item validator reports it. Like one, it runs only when no field
            had an error (``skip_on_field_errors``)."""
            if not many:
                message = _month_disagreement(data)
                if message is not None:
                    raise ValidationError(message, field_name="MES")
                return
            errors = {}
            for index, flight in enumerate(data):
                message = _month_disagreement(flight)
                if message is not None:
                    errors[index] = {"MES": [message]}
            if errors:
                raise ValidationError(errors)

    return FlightSchema


def _month_disagreement(flight: dict[str, Any]) -> str | None:
    when = flight.get("Fecha-I")
    if when is not None and when.month != flight["MES"]:
        return f"MES {flight['MES']} disagrees with Fecha-I, which is in month {when.month}."
    return None


@dataclass(frozen=True)
class Schemas:
    """The schema instances one app uses (built once, at start-up)."""

    flight: Schema
    batch: Schema
    max_batch_size: int


def build_schemas(spec: FeatureSpec, max_batch_size: int) -> Schemas:
    flight_cls = flight_schema_class(spec)

    size_error = f"Send between 1 and {max_batch_size} flights per request; got {{count}}."

    class BatchRequestSchema(Schema):
        class Meta:
            unknown = RAISE

        error_messages: ClassVar[dict[str, str]] = {
            "unknown": 'Unknown field; a batch request has only "flights" (put the flight '
                       "fields inside each item of the list).",
        }

        # Nested(many=True), not List(Nested): one schema pass over the whole list instead of
        # one full schema load per item; the same errors (keyed by index), in less time
        # (docs/performance.md, validation).
        flights = fields.Nested(
            flight_cls, many=True, required=True,
            validate=validate.Length(
                min=1, max=max_batch_size,
                error=f"Send between 1 and {max_batch_size} flights per request."),
            error_messages={"type": "Not a valid list: send a JSON list of flight objects."},
            metadata={"description": f"1 to {max_batch_size} flights"})

        @pre_load
        def _size_first(self, data: Any, **kwargs: Any) -> Any:
            """Refuse an oversize batch before validating its items one by one.

            marshmallow runs a list's validators only after every item deserialized, so a
            20,000-item body (1 MiB allows it) would cost a full validation pass and answer with
            one error per item; checking the length first keeps that cheap and the answer short.
            """
            flights = data.get("flights") if isinstance(data, dict) else None
            if isinstance(flights, list) and len(flights) > max_batch_size:
                raise ValidationError(size_error.format(count=len(flights)), "flights")
            return data

    return Schemas(flight=flight_cls(), batch=BatchRequestSchema(),
                   max_batch_size=max_batch_size)


class PredictionSchema(Schema):
    """One answer (documentation; the view builds the dicts directly for speed)."""

    delay_probability = fields.Float(required=True, metadata={
        "description": "Calibrated probability that the flight leaves >15 min late"})
    delayed = fields.Boolean(required=True, metadata={
        "description": "delay_probability >= threshold"})


class PredictResponseSchema(Schema):
    predictions = fields.List(fields.Nested(PredictionSchema), required=True)
    model_version = fields.String(required=True)
    threshold = fields.Float(required=True)


class ErrorBodySchema(Schema):
    status = fields.Integer(required=True)
    message = fields.String(required=True)
    fields_ = fields.Dict(data_key="fields", keys=fields.String(),
                          values=fields.List(fields.String()))


class ErrorSchema(Schema):
    error = fields.Nested(ErrorBodySchema, required=True)
