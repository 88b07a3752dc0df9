"""Structured logs: one JSON object per line, and one line per request.

A log pipeline (Loki, CloudWatch, ``jq``) can filter JSON lines by field without parsing prose,
so every record the app's loggers emit goes through :class:`JsonFormatter`. The per-request line
carries what an operator needs to follow one call across services (the request id, echoed back
in ``X-Request-ID``) and to spot slow or failing traffic (route, status, latency, batch size,
worker pid, model version). Bodies are never logged: they are the clients' data, and logging
them would also cost more than the request itself. Gunicorn's access log repeats this line
without the useful fields, so gunicorn.conf.py leaves it off unless ``ACCESS_LOG`` is set.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from flask import Flask, Response, current_app, g, request

from flask_app.model import EXTENSION

REQUEST_ID_HEADER = "X-Request-ID"
# Accept a caller's id only if it is short and made of characters that cannot forge log
# fields or header lines; anything else is replaced by a fresh id.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_HANDLER_MARK = "_scl_delay_json"

APP_LOGGER = "flask_app"
log = logging.getLogger(f"{APP_LOGGER}.requests")


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", ...}``: the record's ``fields`` dict, else its message."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if fields:
            out.update(fields)
        else:
            out["message"] = record.getMessage()
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def configure_logging(level: str) -> None:
    """Send the app's loggers to stderr as JSON at ``level`` (idempotent: tests build many apps).

    stderr is where Gunicorn writes its own log too, so one stream holds everything.
    """
    logger = logging.getLogger(APP_LOGGER)
    logger.setLevel(level)
    logger.propagate = False
    if not any(getattr(h, _HANDLER_MARK, False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        setattr(handler, _HANDLER_MARK, True)
        logger.addHandler(handler)


def request_id_from(header: str | None) -> str:
    """The caller's ``X-Request-ID`` if it is safe to log and echo, else a new uuid4 hex."""
    if header and _SAFE_REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def init_app(app: Flask) -> None:
    """Configure JSON logging from ``LOG_LEVEL`` and log every request as it is answered."""
    configure_logging(app.config["LOG_LEVEL"])
    pid = os.getpid()

    @app.before_request
    def _begin() -> None:
        g.request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        g.log_start = time.perf_counter()

    @app.after_request
    def _log(response: Response) -> Response:
        request_id = g.get("request_id") or uuid.uuid4().hex
        response.headers[REQUEST_ID_HEADER] = request_id
        if not log.isEnabledFor(logging.INFO):
            return response
        started = g.get("log_start")
        model = current_app.extensions.get(EXTENSION)
        rule = request.url_rule
        fields = {
            "event": "request",
            "request_id": request_id,
            "method": request.method,
            "route": rule.rule if rule is not None else "unmatched",
            "path": request.path,
            "status": response.status_code,
            "latency_ms": (round((time.perf_counter() - started) * 1000, 3)
                           if started is not None else None),
            "batch_size": g.get("batch_size"),
            "pid": pid,
            "model_version": model.version if model is not None else None,
        }
        log.info("request", extra={"fields": fields})
        return response
