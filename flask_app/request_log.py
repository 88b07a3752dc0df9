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
import stat
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
REQUEST_LOGGER = f"{APP_LOGGER}.requests"
log = logging.getLogger(REQUEST_LOGGER)


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
# another worker's, so no line is ever cut. The bound for anything that is not a regular file.
PIPE_BUF = 4096
# The bound for a regular file, where one write(2) is never interleaved with another (POSIX
# 2.9.7; Linux holds the file's lock for the whole write): fewer, larger writes, since each
# write to a file costs the worker tens of microseconds of kernel time under load.
FILE_WRITE = 64 * 1024
# How long a gathered line may wait for its write: far below what a person or a log shipper
# notices, long enough that a busy worker builds many lines at a time.
FLUSH_AFTER_S = 0.05
# At most this many requests wait (~60 KB of lines): a bound on memory and on what a worker
# killed with SIGKILL loses.
MAX_WAITING = 200


def write_limit(fd: int) -> int:
    """The largest write of whole lines to ``fd`` that no other worker's write can cut."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return PIPE_BUF
    return FILE_WRITE if stat.S_ISREG(mode) else PIPE_BUF


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    while written < len(data):
        written += os.write(fd, data[written:])


def render_request_line(values: tuple) -> bytes:
    """One request line from the values :func:`log_request` kept, in :class:`JsonFormatter`'s
    shape: ``ts``, ``level``, ``logger``, then the request's fields."""
    (now, request_id, method, route, path, status, latency_ms, batch_size, pid,
     model_version) = values
    return orjson.dumps({
        "ts": _CLOCK.timestamp(now), "level": "INFO", "logger": REQUEST_LOGGER,
        "event": "request", "request_id": request_id, "method": method, "route": route,
        "path": path, "status": status, "latency_ms": latency_ms, "batch_size": batch_size,
        "pid": pid, "model_version": model_version,
    }, default=str, option=orjson.OPT_APPEND_NEWLINE)


class LineWriter:
    """Request lines to a file descriptor: each written at once, or, under gevent, built and
    written many at a time.

    Under load the line cost ~9 µs of a ~160 µs ``/health`` request even though building one
    takes ~1.4 µs in a loop: between two requests the rest of the request evicts the line's
    code and data from the CPU's caches, and each write to a file cost tens of microseconds of
    kernel time. Once :meth:`gather` is on (a gevent worker), :meth:`add` only keeps a
    request's values; :meth:`flush` builds the lines together (``render``) and writes them.
    It runs when a timer started by the first waiting request fires (:data:`FLUSH_AFTER_S`),
    when :data:`MAX_WAITING` requests wait, before any other log record (the JSON formatter
    calls it, so records keep their order) and at the worker's exit.

    Each write holds whole lines only, at most :attr:`limit` bytes (:func:`write_limit`: a
    pipe's :data:`PIPE_BUF`, which it delivers whole, or more for a regular file, which the
    kernel never interleaves); a line longer than that is written alone.
    """

    def __init__(self, fd: int = _STDERR, render: Callable[[tuple], bytes] = render_request_line
                 ) -> None:
        self.fd = fd
        self.render = render
        self.limit = PIPE_BUF
        self._waiting: list[tuple] = []
        self._timer: Any = None  # a gevent timer watcher once gathering (start/stop)

    @property
    def gathering(self) -> bool:
        return self._timer is not None

    def gather(self, timer: Any, limit: int | None = None) -> None:
        """Keep requests until ``timer`` fires: ``timer.start(self.flush)`` when the first one
        waits, ``timer.stop()`` when they are written (a one-shot gevent ``loop.timer``).
        ``limit`` is the largest write; by default :func:`write_limit` of the descriptor.
        ``timer=None`` writes what waits and goes back to one write per line."""
        self.flush()
        self._timer = timer
        self.limit = write_limit(self.fd) if limit is None else limit

    def add(self, values: tuple) -> None:
        """One request's line, from the values :attr:`render` takes."""
        waiting = self._waiting
        if not waiting:
            if self._timer is None:
                _write_all(self.fd, self.render(values))
                return
            self._timer.start(self.flush)
        waiting.append(values)
        if len(waiting) >= MAX_WAITING:
            self.flush()

    def flush(self) -> None:
        waiting = self._waiting
        if not waiting:
            return
        self._timer.stop()
        self._waiting = []  # first: a write that fails must not leave these to be written again
        render, limit, fd = self.render, self.limit, self.fd
        lines = [render(values) for values in waiting]
        start = size = 0
        for end, line in enumerate(lines):
            if size + len(line) > limit and end > start:
                _write_all(fd, b"".join(lines[start:end]))
                start = end
                size = 0
            size += len(line)
        _write_all(fd, b"".join(lines[start:]))


WRITER = LineWriter()


def gather_lines(flush_after: float = FLUSH_AFTER_S) -> None:
    """In a gevent worker (after the fork): request lines leave in writes of many lines."""
    import gevent

    if not WRITER.gathering:
        atexit.register(_last_words)
    # ref=False: a line waiting for its write must not keep the event loop alive on its own.
    WRITER.gather(gevent.get_hub().loop.timer(flush_after, ref=False))


def _last_words() -> None:
    """At a gevent worker's exit: write the waiting lines, then close logging early.

    ``logging`` drops each handler's entry from its list when the handler is freed. In a
    monkey-patched worker that happens during interpreter teardown, after gevent's modules are
    gone, and printed a traceback (``Exception ignored in: _removeHandlerRef``, gevent issue
    #2148) into the log at every worker exit. Flushing and closing the handlers here, and
    emptying that list, lets the late callbacks find nothing to do.
    """
    WRITER.flush()
    logging.shutdown()
    del logging._handlerList[:]  # type: ignore[attr-defined]


def log_request(request_id: str, method: str, route: str, path: str, status: int,
                latency_ms: float | None, batch_size: int | None, pid: int,
                model_version: str | None) -> None:
    """Keep the per-request line for :data:`WRITER`; flask_app/observe.py gathers the values
    and has already checked :func:`logs_requests` (``LOG_LEVEL``).

    The line (:func:`render_request_line`) has the keys a :class:`JsonFormatter` record has
    and is one dict literal and one ``orjson.dumps``, written straight to stderr. A ``logging``
    record (``makeRecord``, handler lock, formatter, a ``datetime``, the text stream's flush)
    cost a fifth of a ``/health`` request; under gevent the line is built later, with others.
    """
    WRITER.add((time.time(), request_id, method, route, path, status, latency_ms, batch_size,
                pid, model_version))
