"""The OpenAPI 3 document, generated from the very schema objects that validate requests.

Nothing here restates a field, a vocabulary or a limit: the flight and batch schemas come from
:func:`flask_app.schemas.build_schemas` (airlines and destinations from the model's metadata),
so the ``enum`` a client reads in the document is the list the service accepts. The examples
are produced by the running code as well: the 200 examples are the loaded model's answers for
the example flights, and the 400 example is what the validation path says about a bad flight,
so the page cannot promise a response the service does not give.
"""

from __future__ import annotations

import logging
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask
from marshmallow import Schema, fields

from flask_app.errors import ApiError
from flask_app.explain import PredictQuerySchema
from flask_app.model import DelayModel
from flask_app.schemas import ErrorSchema, PredictionSchema, PredictResponseSchema, Schemas

log = logging.getLogger(__name__)

OPENAPI_VERSION = "3.0.3"  # the bundled Swagger UI (4.x) renders 3.0, not 3.1
TITLE = "SCL flight delay service"

# Preferred example values; any that the model's vocabulary lacks fall back to its first entry.
EXAMPLE_AIRLINES = ("Grupo LATAM", "Sky Airline")
EXAMPLE_DESTINATIONS = ("Miami", "Antofagasta")
ERROR_REF = {"$ref": "#/components/schemas/Error"}
BAD_FLIGHT = {"OPERA": "Unknown Air", "TIPOVUELO": "X", "MES": 13}


class ExplanationSchema(Schema):
    """What ``?explain=true`` adds to a prediction (built as dicts by flask_app.explain)."""

    base_value = fields.Float(required=True, metadata={
        "description": "The model's log-odds before any input is known"})
    margin = fields.Float(required=True, metadata={
        "description": "This flight's log-odds: base_value + sum(contributions)"})
    contributions = fields.Dict(keys=fields.String(), values=fields.Float(), required=True,
                                metadata={"description": "Log-odds each input (or part of "
                                          "Fecha-I) added; positive means later"})
    by_input = fields.Dict(keys=fields.String(), values=fields.Float(), required=True,
                           metadata={"description": "The same contributions summed per request "
                                     "field: every part of Fecha-I (weekday, hour, holidays...) "
                                     "under Fecha-I"})
    not_given = fields.List(fields.String(), required=True, metadata={
        "description": "Contributions of optional inputs the request left out (the effect "
                       "of not knowing them)"})


class DocumentedPredictionSchema(PredictionSchema):
    """The response schema plus the optional ``explanation`` (the view builds dicts, so the
    serving schema never needs it; the document does, or clients would not know its shape)."""

    explanation = fields.Nested(ExplanationSchema, metadata={
        "description": "Only with ?explain=true"})


class DocumentedPredictResponseSchema(PredictResponseSchema):
    predictions = fields.List(fields.Nested(DocumentedPredictionSchema), required=True)


def _pick(preferred: str, vocabulary: tuple[str, ...]) -> str:
    return preferred if preferred in vocabulary else vocabulary[0]


def example_flights(model: DelayModel) -> list[dict[str, Any]]:
    """Two valid flights from the model's vocabulary: one with every input, one minimal."""
    spec = model.spec
    return [
        {"OPERA": _pick(EXAMPLE_AIRLINES[0], spec.airlines), "TIPOVUELO": "I", "MES": 7,
         "Fecha-I": "2017-07-15 19:30", "SIGLADES": _pick(EXAMPLE_DESTINATIONS[0],
                                                           spec.destinations)},
        {"OPERA": _pick(EXAMPLE_AIRLINES[1], spec.airlines), "TIPOVUELO": "N", "MES": 3},
    ]


def live_answer(app: Flask, expected: int, query: dict[str, str] | None = None,
                **request: Any) -> dict[str, Any] | None:
    """What ``POST /predict`` answers to ``request``, produced by the real view and handlers.

    The view runs in a request context made with Flask's ``test_request_context``, and any
    exception goes through the app's own error handlers, so an example is the service's real
    answer (status, shape and wording). ``before``/``after_request`` hooks do not run, so
    building the document neither logs requests nor counts them in the metrics.
    """
    view = app.view_functions["api.predict"]
    with app.test_request_context("/predict", method="POST", query_string=query, **request):
        try:
            result = view()
        except Exception as exc:  # the app's handlers turn every exception into JSON
            result = app.handle_user_exception(exc)
        response = app.make_response(result)
    if response.status_code != expected:
        # A strange setting (a MAX_CONTENT_LENGTH smaller than one flight) must not stop the
        # service: the example is left out and the reason logged; the docs tests catch it.
        log.warning("OpenAPI example left out: expected %d for %r, the service answered %d",
                    expected, request, response.status_code)
        return None
    return response.get_json()


def handled_error(app: Flask, error: ApiError) -> dict[str, Any]:
    """The JSON the app's error handler makes of ``error`` (for statuses we cannot provoke)."""
    with app.test_request_context("/predict", method="POST"):
        return app.make_response(app.handle_user_exception(error)).get_json()


def _description(model: DelayModel, max_batch_size: int) -> str:
    meta = model.metadata
    lines = [
        "Probability that a flight departing Santiago de Chile (SCL) leaves **more than 15 "
        "minutes late**, from an XGBoost model trained on the SCL 2017 flight log.",
        "",
        "* `Fecha-I` may be in any year (2016, 2027, ...): it is encoded from calendar facts "
        "that recur every year (weekday, hour, high season, Chilean public holidays and long "
        "weekends), never from the date's position in the training year.",
        "",
        "* `delay_probability` is a calibrated probability in [0, 1]: among many flights "
        "given 0.3, about 30% are delayed.",
        f"* `delayed` is `delay_probability >= threshold`; this model's threshold is "
        f"**{model.threshold:g}**"
        + (f" ({meta['threshold_rule']})" if meta.get("threshold_rule") else "") + ".",
        "* Required inputs: `OPERA`, `TIPOVUELO`, `MES`. Optional: `Fecha-I` (scheduled "
        "departure) and `SIGLADES` (destination) sharpen the estimate; leave them out when "
        "unknown rather than guessing.",
        f"* Send one flight as a JSON object, or up to {max_batch_size} as "
        "`{\"flights\": [...]}`; answers keep the order of the request.",
        "* Every error is JSON: `{\"error\": {\"status\", \"message\", \"fields\"}}`, where "
        "`fields` names each offending input (`flights[3].MES` in a batch).",
        "",
        f"Model version `{model.version}`"
        + (f", trained {meta['trained_at']}" if meta.get("trained_at") else "")
        + ". `GET /model` returns its metadata and holdout metrics.",
    ]
    return "\n".join(lines)


def _json(schema: Any, examples: dict[str, dict[str, Any]] | None = None) -> dict:
    media: dict[str, Any] = {"schema": schema}
    if examples:
        media["examples"] = examples
    return {"application/json": media}


def _examples(named: dict[str, tuple[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: {"summary": summary, "value": value}
            for name, (summary, value) in named.items() if value is not None}


def _simple(properties: dict[str, Any], example: dict[str, Any]) -> dict:
    return {"type": "object", "properties": properties, "example": example}


def build_openapi(app: Flask, model: DelayModel, schemas: Schemas,
                  extra_paths: tuple[str, ...] = ()) -> dict[str, Any]:
    """The whole document as a dict (built once per model, served as bytes by ``docs``).

    ``extra_paths`` lists optional routes the app has (``/metrics``), so the document never
    describes a route the running service lacks.
    """
    spec = APISpec(title=TITLE, version=model.version, openapi_version=OPENAPI_VERSION,
                   plugins=[MarshmallowPlugin()],
                   info={"description": _description(model, schemas.max_batch_size)})
    spec.components.schema("Flight", schema=schemas.flight)
    spec.components.schema("BatchRequest", schema=schemas.batch)
    spec.components.schema("Prediction", schema=DocumentedPredictionSchema)
    spec.components.schema("PredictResponse", schema=DocumentedPredictResponseSchema)
    spec.components.schema("Error", schema=ErrorSchema)

    flights = example_flights(model)
    batch = {"flights": flights}
    bad_batch = {"flights": [flights[1], {**flights[1], "MES": 13}]}
    limit = schemas.max_batch_size
    ok = {"single": ("Answer to one flight", live_answer(app, 200, json=flights[0])),
          "batch": ("Answer to a batch", live_answer(app, 200, json=batch))}
    explained = live_answer(app, 200, query={"explain": "true"}, json=flights[0])
    if explained and "explanation" in explained["predictions"][0]:
        ok["explained"] = ("One flight with ?explain=true", explained)
    errors = {
        "400": ("Invalid JSON or an invalid flight; `fields` names each offending input", {
            "invalid_flight": ("Unknown airline, bad flight type and month",
                               live_answer(app, 400, json=BAD_FLIGHT)),
            "invalid_batch_item": ("A bad flight inside a batch",
                                   live_answer(app, 400, json=bad_batch)),
            "malformed_json": ("A body that is not JSON",
                               live_answer(app, 400, data='{"OPERA": ',
                                           content_type="application/json"))}),
        "413": ("Body larger than MAX_CONTENT_LENGTH", {
            "too_large": ("Too large", live_answer(
                app, 413, content_type="application/json",
                environ_overrides={"CONTENT_LENGTH": str(app.config["MAX_CONTENT_LENGTH"] + 1)}
            ))}),
        "415": ("Body not sent as application/json", {
            "not_json": ("Form data instead of JSON",
                         live_answer(app, 415, data="OPERA=Sky", content_type="text/plain"))}),
        "503": ("This worker has no model loaded yet; retry", {
            "not_ready": ("Model not loaded", handled_error(
                app, ApiError(503, "the model is not loaded yet; retry shortly")))}),
    }
    responses: dict[str, Any] = {"200": {
        "description": "One prediction per flight, in request order",
        "content": _json(DocumentedPredictResponseSchema, _examples(ok))}}
    for status, (description, examples) in errors.items():
        responses[status] = {"description": description,
                             "content": _json(ERROR_REF, _examples(examples))}

    spec.path(path="/predict", operations={"post": {
        "summary": "Probability of a >15 min delay for one flight or a batch",
        "description": f"Send one flight object, or `{{\"flights\": [...]}}` with 1 to {limit} "
                       "flights. Predictions come back in request order. One rule the schema "
                       "cannot state: when `Fecha-I` is given, `MES` must be the month of "
                       "`Fecha-I` (else 400 naming `MES`).",
        "operationId": "predict",
        "tags": ["prediction"],
        # The same schema the view loads the query string with (unknown parameters: 400).
        "parameters": [{"in": "query", "schema": PredictQuerySchema}],
        "requestBody": {"required": True, "content": _json(
            {"oneOf": [schemas.flight, schemas.batch]}, _examples({
                "single": ("One flight (all inputs)", flights[0]),
                "minimal": ("One flight (required inputs only)", flights[1]),
                "batch": ("A batch", batch)}))},
        "responses": responses,
    }})

    spec.path(path="/model", operations={"get": {
        "summary": "The served model: version, threshold, feature spec, holdout metrics",
        "operationId": "describeModel", "tags": ["model"],
        "responses": {"200": {"description": "Metadata of the loaded artifact",
                              "content": _json({"type": "object", "example": {
                                  "model_version": model.version,
                                  "threshold": model.threshold}})},
                      "503": {"description": "No model loaded", "content": _json(ERROR_REF)}},
    }})
    spec.path(path="/health", operations={"get": {
        "summary": "Liveness: the process answers (the model is not consulted)",
        "operationId": "health", "tags": ["operations"],
        "responses": {"200": {"description": "Alive", "content": _json(_simple(
            {"status": {"type": "string"}}, {"status": "ok"}))}},
    }})
    spec.path(path="/ready", operations={"get": {
        "summary": "Readiness: this worker holds a model and can predict",
        "operationId": "ready", "tags": ["operations"],
        "responses": {
            "200": {"description": "Ready", "content": _json(_simple(
                {"status": {"type": "string"}, "model_version": {"type": "string"}},
                {"status": "ready", "model_version": model.version}))},
            "503": {"description": "Not ready; send traffic elsewhere", "content": _json(
                _simple({"status": {"type": "string"}, "reason": {"type": "string"}},
                        {"status": "not ready", "reason": "model not loaded"}))}},
    }})
    spec.path(path="/", operations={"get": {
        "summary": "Service name, model version and links", "operationId": "index",
        "tags": ["operations"],
        "responses": {"200": {"description": "Index", "content": _json({"type": "object"})}},
    }})
    if "/metrics" in extra_paths:
        spec.path(path="/metrics", operations={"get": {
            "summary": "Prometheus metrics (text exposition format)", "operationId": "metrics",
            "tags": ["operations"],
            "responses": {"200": {"description": "Metrics",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}}},
        }})
    return spec.to_dict()
