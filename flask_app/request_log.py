"""Structured logs: one JSON object per line, and one line per request.

A log pipeline (Loki, CloudWatch, ``jq``) can filter JSON lines by field without parsing prose,
so every record the app's loggers emit goes through :class:`JsonFormatter`. The per-request line
carries what an operator needs to follow one call across services (the request id, echoed back
in ``X-Request-ID``) and to spot slow or failing traffic (route, status, latency, batch size,
worker pid, model version). Bodies are never logged: they are the clients' data, and logging
them would also cost more than the request itself. Gunicorn's access log repeats this line
without the useful fields, so gunicorn.conf.py leaves it off unless ``ACCESS_LOG`` is set.
The hooks that gather a request's fields are in flask_app/observe.py, shared with the metrics.
"""

from __future__ import annotations

import logging
import re
import secrets
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

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


def new_request_id() -> str:
    """32 random hex digits, like a uuid4's hex without the cost of building a UUID."""
    return secrets.token_hex(16)


def request_id_from(header: str | None) -> str:
    """The caller's ``X-Request-ID`` if it is safe to log and echo, else a new id."""
    if header and _SAFE_REQUEST_ID.fullmatch(header):
        return header
    return new_request_id()


def logs_requests() -> bool:
    """Whether the per-request line is written at the current level (``LOG_LEVEL``)."""
    return log.isEnabledFor(logging.INFO)


def log_request(fields: dict[str, Any]) -> None:
    """Write the per-request line (flask_app/observe.py gathers the fields).

    The record is built with ``makeRecord`` and passed to ``handle``: the same handlers, level
    and filters as ``log.info``, without ``findCaller`` walking the stack for a file name and
    line number the JSON line does not carry (a fifth of the logging cost per request).
    """
    if log.isEnabledFor(logging.INFO):
        log.handle(log.makeRecord(log.name, logging.INFO, __file__, 0, "request", (), None,
                                  extra={"fields": fields}))
