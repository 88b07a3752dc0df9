"""Liveness and readiness, for load balancers and orchestrators."""

from __future__ import annotations

import os

from flask import Blueprint, Response, current_app, jsonify

from flask_app.model import EXTENSION

bp = Blueprint("health", __name__)

WORKER_PID_HEADER = "X-Worker-PID"


@bp.after_app_request
def _tag_worker(response: Response) -> Response:
    """Name the process that answered, on every response.

    With several Gunicorn workers behind one port this is how a client, a load test or the
    real-server test tells which worker served a request (and that no worker was replaced). It
    is read per request, not cached, so it stays right even if the app were built before a fork.
    """
    response.headers[WORKER_PID_HEADER] = str(os.getpid())
    return response


@bp.get("/health")
def health():
    """The process answers: nothing more is checked, so a slow model never fails liveness."""
    return jsonify(status="ok")


@bp.get("/ready")
def ready():
    """200 once this worker holds a model, 503 before (traffic should go elsewhere)."""
    model = current_app.extensions.get(EXTENSION)
    if model is None:
        return jsonify(status="not ready", reason="model not loaded"), 503, {"Retry-After": "5"}
    return jsonify(status="ready", model_version=model.version)
