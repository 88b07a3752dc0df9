"""The SCL delay service: ``create_app(config)`` builds a fully wired Flask app."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import gevent.monkey
from flask import Flask

from flask_app import api, docs, errors, health, metrics, model, observe, request_log
from flask_app.config import from_env
from flask_app.flight_loader import FieldLoader
from flask_app.json_provider import OrjsonProvider
from flask_app.schemas import build_schemas

log = logging.getLogger(__name__)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Settings come from the environment, overridden by ``config`` (tests pass a dict)."""
    app = Flask(__name__)
    app.config.from_mapping(from_env())
    if config:
        app.config.from_mapping(config)
    # orjson parses bodies and encodes answers several times faster (flask_app/json_provider.py).
    app.json = OrjsonProvider(app)
    app.json.sort_keys = False

    # JSON logs before anything logs (the model load does).
    request_log.configure_logging(app.config["LOG_LEVEL"])
    if gevent.monkey.is_module_patched("socket"):
        # A gevent worker: request lines leave together when its loop goes idle (request_log.py).
        request_log.gather_lines_until_idle()
    errors.init_app(app)
    model.init_app(app)
    loaded = app.extensions[model.EXTENSION]
    version = loaded.version if loaded is not None else None
    metrics.init_app(app, version)
    observe.init_app(app, version)
    if loaded is not None:
        schemas = build_schemas(loaded.spec, app.config["MAX_BATCH_SIZE"])
        app.extensions[api.SCHEMAS] = schemas
        app.extensions[api.LOADER] = FieldLoader(schemas)
    app.register_blueprint(api.bp)
    app.register_blueprint(health.bp)
    # Last: the OpenAPI document lists the optional routes (/metrics) registered before it.
    docs.init_app(app)
    if loaded is not None:
        # One line per worker start: the real-server test counts it to prove each worker
        # loaded the model exactly once, and operators see which model each pid serves.
        log.info("model %s loaded by worker pid %d from %s",
                 loaded.version, os.getpid(), app.config["MODEL_DIR"])
    return app
