"""Prediction and model-description routes. Views stay thin: parse, predict, serialize."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, Request, current_app, g, jsonify, request, url_for

from flask_app.answers import Answer
from flask_app.errors import ApiError
from flask_app.explain import PredictQuerySchema
from flask_app.metrics import ANSWERS_REUSED
from flask_app.model import EXTENSION, get_model
from flask_app.rounding import round_probabilities
from flask_app.schemas import Schemas

bp = Blueprint("api", __name__)
QUERY_SCHEMA = PredictQuerySchema()

SCHEMAS = "schemas"
LOADER = "flight_loader"  # flask_app/flight_loader.py, built from the same schemas
# Where the artifact (and its MODEL_CARD.md) lives in the repository.
MODEL_DIR_NAME = "model_artifacts"


def read_body(req: Request) -> bytes:
    """The raw request body, once the headers say it is uncompressed JSON (else a 415)."""
    if not req.is_json:
        raise ApiError(415, "send the body as JSON with the header "
                            "'Content-Type: application/json'")
    encoding = req.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise ApiError(415, f"Content-Encoding {encoding!r} is not supported; "
                            "send the JSON uncompressed")
    return req.get_data(cache=True)


def parse_json_object(data: bytes) -> dict[str, Any]:
    """``data`` as a JSON object, or a 400 that says what was wrong with it.

    The body is parsed with the app's JSON provider directly (not ``get_json``) because
    ``get_json`` turns only ``ValueError`` into a 400: ``[[[[...`` nested past Python's recursion
    limit raises ``RecursionError`` and would become a 500. The parser's own words (line and
    column) go back to the client.
    """
    try:
        body = current_app.json.loads(data)
    except RecursionError:
        raise ApiError(400, "the body is nested too deeply to be a flight or a batch") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int digit limit
        raise ApiError(400, f"the body is not valid JSON (empty, truncated or malformed): "
                            f"{str(exc)[:200]}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object: one flight "
                            "{\"OPERA\": ..., \"TIPOVUELO\": ..., \"MES\": ...} "
                            "or a batch {\"flights\": [...]}",
                       {"_schema": [f"expected an object, got {type(body).__name__}"]})
    return body


def parse_flights(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Validate a single flight or a ``{"flights": [...]}`` batch into a list of flights.

    The schema's own fields validate every value (flask_app/flight_loader.py, without the
    schema's per-item machinery); a body they find fault with goes through ``load``, which
    words the errors.
    """
    extensions = current_app.extensions
    flights = extensions[LOADER](body)
    if flights is not None:
        return flights
    schemas: Schemas = extensions[SCHEMAS]
    if "flights" in body:
        return schemas.batch.load(body)["flights"]
    return [schemas.flight.load(body)]


def check_explain_size(count: int) -> None:
    """Explanations cost ~100x a prediction, so they have their own, smaller batch limit."""
    limit = current_app.config["MAX_EXPLAIN_BATCH"]
    if count > limit:
        message = (f"explain=true takes at most {limit} flights per request (got {count}): "
                   "an explanation costs many predictions; split the batch or drop explain")
        raise ApiError(400, message, {"explain": [message]})


@bp.post("/predict")
def predict():
    # The request, app and g proxies resolved once: each use of a proxy costs a context
    # lookup, and this is the path every prediction takes.
    req, app = request._get_current_object(), current_app._get_current_object()
    scope = g._get_current_object()
    model = get_model()
    # Most requests carry no query string: skip the schema then (hot path).
    explain = QUERY_SCHEMA.load(req.args.to_dict())["explain"] if req.args else False
    data = read_body(req)
    # A body answered before (same bytes, same model) gets that answer again: parsing,
    # validation and encoding are pure functions of the bytes (flask_app/answers.py).
    remember = not explain and model.answers.accepts(data)
    if remember:
        answer = model.answers.get(data)
        if answer is not None:
            ANSWERS_REUSED.inc()
            scope.batch_size, scope.delayed = 1, answer.delayed
            return app.response_class(answer.payload, mimetype=app.json.mimetype)
    flights = parse_flights(parse_json_object(data))
    if explain:
        check_explain_size(len(flights))
    scope.batch_size = len(flights)  # for the request log and metrics (flask_app/metrics.py)
    probabilities = model.predict(flights)
    threshold = model.threshold
    # One vectorised comparison serves both the answers and the metrics, and the rounding is
    # vectorised too (flask_app/rounding.py): the loop only pairs Python floats and bools.
    delayed = (probabilities >= threshold).tolist()
    predictions = [{"delay_probability": p, "delayed": d}
                   for p, d in zip(round_probabilities(probabilities), delayed, strict=True)]
    scope.delayed = sum(delayed)
    if explain:
        for prediction, explanation in zip(predictions, model.explain(flights), strict=True):
            prediction["explanation"] = explanation
    response = jsonify(predictions=predictions, model_version=model.version, threshold=threshold)
    if remember and len(predictions) == 1:
        model.answers.put(data, Answer(response.get_data(), scope.delayed))
    return response


@bp.get("/model")
def describe_model():
    model = get_model()
    meta = model.metadata
    keys = ("model_version", "trained_at", "training_seconds", "threshold", "threshold_rule",
            "feature_spec", "holdout_metrics", "base_rate", "training_scheme", "calibration",
            "n_estimators", "params", "seed", "dataset", "libraries", "model_format",
            "training_period")
    body = {k: meta[k] for k in keys if k in meta}
    if "model_card" in meta:
        body["model_card"] = {"url": url_for("api.model_card"),
                              "file": f"{MODEL_DIR_NAME}/{meta['model_card']}"}
    return jsonify(body)


@bp.get("/model/card")
def model_card():
    """The model card written next to the served model by ``make train`` (Markdown)."""
    name = get_model().metadata.get("model_card")
    path = Path(current_app.config["MODEL_DIR"]) / name if name else None
    if path is None or not path.is_file():
        raise ApiError(404, "this model was saved without a model card (retrain with "
                            "`make train` to write MODEL_CARD.md)")
    return current_app.response_class(path.read_text(encoding="utf-8"),
                                       mimetype="text/markdown")


@bp.get("/")
def index():
    model = current_app.extensions.get(EXTENSION)
    # Optional routes (docs, metrics) are listed only if this app registered them.
    endpoints = {"predict": "api.predict", "model": "api.describe_model",
                 "health": "health.health", "ready": "health.ready", "docs": "docs.docs_page",
                 "openapi": "docs.openapi_json", "metrics": "metrics"}
    registered = set(current_app.view_functions)
    links = {name: url_for(endpoint) for name, endpoint in endpoints.items()
             if endpoint in registered}
    return jsonify(
        name="scl-delay",
        description="Probability that a flight at Santiago de Chile (SCL) leaves more than "
                    "15 minutes late",
        model_version=model.version if model else None,
        links=links,
    )
