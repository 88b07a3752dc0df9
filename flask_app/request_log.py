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

import atexit
import logging
import os
import re
import secrets
import sys
import time
from collections.abc import Callable
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
        WRITER.flush()  # request lines gathered before this record go out before it
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


class _Clock:
    """``ts`` in :class:`JsonFormatter`'s format (ISO 8601, milliseconds, UTC), from cached
    strings: building a timezone-aware ``datetime`` and its ISO text for every request cost
    more than encoding the rest of the line. Under load many requests share a millisecond."""

    def __init__(self) -> None:
        self._millis = self._second = -1
        self._prefix = self._text = ""

    def timestamp(self, now: float) -> str:
        millis = int(now * 1000)
        if millis != self._millis:
            second = millis // 1000
            if second != self._second:
                self._prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
                self._second = second
            self._text = f"{self._prefix}.{millis - second * 1000:03d}+00:00"
            self._millis = millis
        return self._text


_CLOCK = _Clock()
_STDERR = 2
# The largest write a pipe delivers whole even when several processes write to it (POSIX
# PIPE_BUF, 4 KiB on Linux): a write of whole lines up to this size never interleaves with
# another worker's, so no line is ever cut.
PIPE_BUF = 4096


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    while written < len(data):
        written += os.write(fd, data[written:])


#: Request lines that may wait unbuilt for the end of a loop turn; more are built at once.
MAX_WAITING = 256


class LineWriter:
    """Request lines to a file descriptor: one ``write`` per line, or, under gevent, the lines
    of one turn of the event loop built and written together.

    A ``write(2)`` per request was most of the request line's cost, and under load many
    requests finish in the same loop turn. Once :meth:`gather` is on (a gevent worker), lines
    wait in a buffer that is written when the loop next runs its callbacks (after the greenlets
    of this turn), or at once when the next line would take it past :data:`PIPE_BUF`; each
    write holds whole lines only, so on a pipe it arrives whole. A line longer than that is
    written alone, as before. :meth:`flush` writes what waits (the JSON formatter calls it
    first, so other records keep their place after the request lines before them; so does
    the worker's exit).

    A line given by :meth:`add` waits as its values and is built by ``build`` at the same
    moment, all the turn's lines in one go. Built one per request, amid the rest of the
    request's code, the line cost about twice as much CPU as it does built next to the lines
    before it (docs/performance.md): its code and data are then still in the CPU's caches.
    """

    def __init__(self, fd: int = _STDERR, build: Callable[[Any], bytes] | None = None) -> None:
        self.fd = fd
        self.build = build
        self._waiting: list[Any] = []  # values of lines not built yet, in order
        self._pending: list[bytes] = []  # built lines not written yet, in order
        self._size = 0
        self._later: Any = None  # the event loop's run_callback, once gathering
        self._due = False  # a flush is scheduled for the end of this loop turn

    @property
    def gathering(self) -> bool:
        return self._later is not None

    def gather(self, run_callback: Any) -> None:
        """Buffer lines until ``run_callback(...)`` runs a flush (the gevent loop's)."""
        self._later = run_callback
        self._due = False

    def add(self, values: Any) -> None:
        """The line ``build(values)``: at once without gathering, else at the loop turn."""
        if self._later is None:
            self.write(self.build(values))
            return
        self._waiting.append(values)
        if len(self._waiting) >= MAX_WAITING:
            self._build_waiting()
        self._schedule()

    def write(self, line: bytes) -> None:
        """A line already built, after every line given before it."""
        if self._later is None:
            self.flush()
            _write_all(self.fd, line)
            return
        self._build_waiting()
        self._put(line)
        self._schedule()

    def flush(self) -> None:
        self._build_waiting()
        self._write_pending()

    def _schedule(self) -> None:
        if not self._due:
            self._due = True
            self._later(self._turn_ends)

    def _turn_ends(self) -> None:
        self._due = False
        self.flush()

    def _build_waiting(self) -> None:
        if self._waiting:
            waiting, self._waiting = self._waiting, []
            build, put = self.build, self._put
            for values in waiting:
                put(build(values))

    def _put(self, line: bytes) -> None:
        if len(line) > PIPE_BUF:
            self._write_pending()
            _write_all(self.fd, line)
            return
        if self._size + len(line) > PIPE_BUF:
            self._write_pending()
        self._pending.append(line)
        self._size += len(line)

    def _write_pending(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            self._size = 0
            _write_all(self.fd, data)


def _request_line(values: tuple[float, dict[str, Any]]) -> bytes:
    """The line of :func:`log_request`: the keys a :class:`JsonFormatter` record has (``ts``,
    ``level``, ``logger``), then the fields; ``ts`` is when the request was logged."""
    logged_at, fields = values
    line = {"ts": _CLOCK.timestamp(logged_at), "level": "INFO", "logger": log.name}
    line.update(fields)
    return orjson.dumps(line, default=str, option=orjson.OPT_APPEND_NEWLINE)


WRITER = LineWriter(build=_request_line)


def gather_lines_per_loop_turn() -> None:
    """In a gevent worker (after the fork): request lines leave once per loop turn."""
    import gevent

    if not WRITER.gathering:
        atexit.register(WRITER.flush)
    WRITER.gather(gevent.get_hub().loop.run_callback)


def log_request(fields: dict[str, Any]) -> None:
    """Write the per-request line (flask_app/observe.py gathers the fields).

    The line is built with one ``orjson.dumps`` (:func:`_request_line`) and handed to
    :data:`WRITER`, which writes it straight to stderr (under gevent, built and written with the
    other lines of its loop turn): a ``logging`` record (``makeRecord``, handler lock,
    formatter, a ``datetime``, the text stream's flush) cost a fifth of a ``/health`` request.
    The level still comes from the logger, so ``LOG_LEVEL=WARNING`` silences these lines as
    before.
    """
    if not log.isEnabledFor(logging.INFO):
        return
    WRITER.add((time.time(), fields))
