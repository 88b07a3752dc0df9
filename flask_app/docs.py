"""``/openapi.json`` and an interactive ``/docs`` page that work with no internet.

The document is built from the app's own schemas and model (see :mod:`flask_app.openapi`) once
per loaded model, serialized once, and served as bytes: a docs request costs no schema walk.
Swagger UI's files come from the pinned ``swagger_ui_bundle`` package and are served by Flask's
static handling under ``/docs/assets/``; the page loads nothing from any other host, and a
Content-Security-Policy header makes the browser refuse if a future edit tried to.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, current_app, render_template, send_from_directory
from swagger_ui_bundle import swagger_ui_path

from flask_app.api import SCHEMAS
from flask_app.errors import ApiError
from flask_app.model import EXTENSION as MODEL_EXTENSION
from flask_app.openapi import TITLE, build_openapi

EXTENSION = "openapi"

OWN_ASSETS = Path(__file__).with_name("docs_static")

# Swagger UI inlines small SVGs as data: URIs and sets inline styles; nothing else is allowed.
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data:; "
                           "style-src 'self' 'unsafe-inline'; script-src 'self'; "
                           "connect-src 'self'; frame-ancestors 'none'")

bp = Blueprint("docs", __name__, static_folder=swagger_ui_path,
               static_url_path="/docs/assets")


def _document_bytes(app: Flask) -> bytes | None:
    """The serialized document for the model the app holds now, rebuilt only if it changed.

    Keyed by model version and schema object, so a model reload (new vocabularies) gets a new
    document on the next request instead of a stale enum.
    """
    model = app.extensions.get(MODEL_EXTENSION)
    schemas = app.extensions.get(SCHEMAS)
    if model is None or schemas is None:
        return None
    key = (model.version, id(schemas))
    cached: tuple[Any, bytes] | None = app.extensions.get(EXTENSION)
    if cached is None or cached[0] != key:
        extra = tuple(rule.rule for rule in app.url_map.iter_rules() if rule.rule == "/metrics")
        document = build_openapi(app, model, schemas, extra)
        cached = (key, json.dumps(document, ensure_ascii=False).encode("utf-8"))
        app.extensions[EXTENSION] = cached
    return cached[1]


@bp.get("/openapi.json")
def openapi_json() -> Response:
    body = _document_bytes(current_app)
    if body is None:
        raise ApiError(503, "the model is not loaded yet, so its API document is not built; "
                            "retry shortly")
    return Response(body, mimetype="application/json")


@bp.get("/docs")
def docs_page() -> Response:
    model = current_app.extensions.get(MODEL_EXTENSION)
    html = render_template("docs.html", title=TITLE,
                           version=model.version if model else "no model loaded")
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response


@bp.get("/docs/init.js")
def docs_init() -> Response:
    """Starts Swagger UI; a file, not an inline script, so the CSP can forbid inline code."""
    return send_from_directory(OWN_ASSETS, "swagger-init.js", mimetype="text/javascript")


def init_app(app: Flask) -> None:
    """Register the routes and build the document now, so start-up fails on a broken spec."""
    app.register_blueprint(bp)
    _document_bytes(app)
