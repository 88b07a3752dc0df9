"""Marshmallow schemas for requests and responses, built from the loaded model's feature spec.

The allowed airlines and destinations are the vocabularies stored in the artifact's metadata,
so a retrained model with a new airline is served without a code change, and the same schema
objects validate requests and generate the OpenAPI document.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from training.features import FLIGHT_TYPES, MONTHS, FeatureSpec

DEPARTURE_FORMATS: tuple[str, ...] = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M",
                                      "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M")


class StrictInteger(fields.Integer):
    """An integer that refuses booleans, floats and numeric strings.

    marshmallow's ``Integer(strict=True)`` still takes ``true`` (a bool is an int in Python);
    ``MES: true`` is a client bug we want to report, not month 1.
    """

    default_error_messages: ClassVar[dict[str, str]] = {
        "invalid": "Not a valid integer: send a JSON number such as 7."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid")
        return value


class ScheduledDeparture(fields.Field):
    """``YYYY-MM-DD HH:MM[:SS]`` (a ``T`` separator is accepted too) to a naive datetime."""

    default_error_messages: ClassVar[dict[str, str]] = {
        "invalid": "Not a valid scheduled departure: expected 'YYYY-MM-DD HH:MM[:SS]', "
                   "e.g. '2017-07-15 08:30'.",
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if isinstance(value, str):
            for fmt in DEPARTURE_FORMATS:
                try:
                    return datetime.strptime(value, fmt)
                except ValueError:
                    continue
        raise self.make_error("invalid")

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else value.strftime(DEPARTURE_FORMATS[0])


def _one_of(choices: tuple[str, ...] | list[str], what: str) -> validate.OneOf:
    shown = ", ".join(choices)
    return validate.OneOf(choices, error=f"Unknown {what} {{input!r}}; allowed: {shown}.")


def flight_schema_class(spec: FeatureSpec) -> type[Schema]:
    """The schema of one flight, with vocabularies taken from ``spec``."""

    class FlightSchema(Schema):
        class Meta:
            unknown = RAISE
            ordered = True

        OPERA = fields.String(required=True, validate=_one_of(spec.airlines, "airline"),
                              metadata={"description": "Operating airline (model vocabulary)",
                                        "example": "Grupo LATAM"})
        TIPOVUELO = fields.String(required=True, validate=_one_of(FLIGHT_TYPES, "flight type"),
                                  metadata={"description": "I = international, N = national",
                                            "example": "I"})
        MES = StrictInteger(required=True,
                            validate=validate.Range(min(MONTHS), max(MONTHS),
                                                    error="Month must be 1 to 12."),
                            metadata={"description": "Month of the scheduled departure",
                                      "example": 1})
        fecha = ScheduledDeparture(data_key="Fecha-I", attribute="Fecha-I", load_default=None,
                                   allow_none=True,
                                   metadata={"description": "Scheduled departure, local time "
                                             "(optional; sharpens the estimate)",
                                             "type": "string",
                                             "example": "2017-01-15 08:30"})
        SIGLADES = fields.String(load_default=None, allow_none=True,
                                 validate=_one_of(spec.destinations, "destination"),
                                 metadata={"description": "Destination city (optional)",
                                           "example": "Miami"})

        @validates_schema
        def _month_agrees(self, data: dict[str, Any], **kwargs: Any) -> None:
            when = data.get("Fecha-I")
            if when is not None and when.month != data["MES"]:
                raise ValidationError(
                    f"MES {data['MES']} disagrees with Fecha-I, which is in month {when.month}.",
                    field_name="MES")

    return FlightSchema


@dataclass(frozen=True)
class Schemas:
    """The schema instances one app uses (built once, at start-up)."""

    flight: Schema
    batch: Schema
    max_batch_size: int


def build_schemas(spec: FeatureSpec, max_batch_size: int) -> Schemas:
    flight_cls = flight_schema_class(spec)

    class BatchRequestSchema(Schema):
        class Meta:
            unknown = RAISE

        flights = fields.List(
            fields.Nested(flight_cls), required=True,
            validate=validate.Length(
                min=1, max=max_batch_size,
                error=f"Send between 1 and {max_batch_size} flights per request."),
            metadata={"description": f"1 to {max_batch_size} flights"})

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
