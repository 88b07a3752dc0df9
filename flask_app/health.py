"""Liveness and readiness, for load balancers and orchestrators."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from flask_app.model import EXTENSION

bp = Blueprint("health", __name__)

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
