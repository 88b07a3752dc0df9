"""Every error leaves the service as JSON: ``{"error": {"status", "message", "fields"}}``.

Views raise :class:`ApiError`; werkzeug's HTTP errors (404, 405, 413, ...) and anything
unexpected are turned into the same shape here, in one place, so no client ever sees HTML.
``fields`` is always present (``{}`` when no single field is at fault), so a client can read it
without checking first.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error with an HTTP status and, for validation problems, the fields at fault."""

    def __init__(self, status: int, message: str, fields: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = dict(fields) if fields else None


def flatten_messages(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turn marshmallow's nested messages into ``{"flights[3].MES": ["..."]}``.

    A client reading a batch error needs the item's index and the field name in one key; the
    nested dicts marshmallow produces (with integer keys for list items) are flattened to that.
    """
    if isinstance(messages, Mapping):
        out: dict[str, list[str]] = {}
        for key, value in messages.items():
            if isinstance(key, int):
                path = f"{prefix}[{key}]"
            elif key == "_schema":
                path = prefix or "_schema"
            else:
                path = f"{prefix}.{key}" if prefix else str(key)
            for k, v in flatten_messages(value, path).items():
                out.setdefault(k, []).extend(v)
        return out
    if isinstance(messages, list | tuple) and all(isinstance(m, str) for m in messages):
        return {prefix or "_schema": list(messages)}
    if isinstance(messages, list | tuple):
        out = {}
        for item in messages:
            for k, v in flatten_messages(item, prefix).items():
                out.setdefault(k, []).extend(v)
        return out
    return {prefix or "_schema": [str(messages)]}


def error_response(status: int, message: str,
                   fields: Mapping[str, Any] | None = None) -> tuple[Response, int]:
    body: dict[str, Any] = {"status": status, "message": message, "fields": dict(fields or {})}
    return jsonify(error=body), status


# A batch can fail on every item; the message names the first few, ``fields`` has them all.
MESSAGE_FIELDS = 3


def validation_error(exc: ValidationError) -> ApiError:
    """A 400 whose message reads on its own: each field at fault and what is wrong with it."""
    fields = flatten_messages(exc.messages)
    parts = [f"{name}: {' '.join(msgs)}" for name, msgs in list(fields.items())[:MESSAGE_FIELDS]]
    more = len(fields) - MESSAGE_FIELDS
    if more > 0:
        parts.append(f"and {more} more field(s), listed in 'fields'")
    return ApiError(400, "invalid request: " + "; ".join(parts), fields)


def http_message(exc: HTTPException) -> str:
    """Werkzeug's generic descriptions, replaced where we can say what to do instead."""
    if exc.code == 404:
        return f"no route {request.path}; GET / lists the routes"
    if exc.code == 405:
        allowed = ", ".join(sorted(exc.valid_methods or ()))
        return f"{request.method} is not allowed on {request.path}; allowed: {allowed}"
    if exc.code == 413:
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        return (f"the body is larger than the {limit}-byte limit (MAX_CONTENT_LENGTH); "
                "split the batch")
    return exc.description or exc.name


def init_app(app: Flask) -> None:
    """Register the JSON error handlers on ``app``."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.message, exc.fields)

    @app.errorhandler(ValidationError)
    def _validation(exc: ValidationError):
        err = validation_error(exc)
        return error_response(err.status, err.message, err.fields)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        response = error_response(exc.code or 500, http_message(exc))
        if exc.code == 405 and exc.valid_methods:
            response[0].headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal error; it has been logged")
