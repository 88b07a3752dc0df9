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


# The text after the second for each millisecond, made once: a tuple index and one
# concatenation cost half of formatting ``.%03d+00:00`` anew at every new millisecond.
_MILLIS = tuple(f".{n:03d}+00:00" for n in range(1000))


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
            self._text = self._prefix + _MILLIS[millis - second * 1000]
            self._millis = millis
        return self._text


_CLOCK = _Clock()
_STDERR = 2
# The largest write a pipe delivers whole even when several processes write to it (POSIX
# PIPE_BUF, 4 KiB on Linux): a write of whole lines up to this size never interleaves with
# another worker's, so no line is ever cut. The bound for anything but a regular file.
PIPE_BUF = 4096
# The bound for a regular file, where the kernel never interleaves two writes (POSIX 2.9.7;
# Linux holds the file's position lock for the whole write): there ~200 lines of a busy
# worker leave in one write, and each write to a file costs a worker tens of microseconds.
FILE_WRITE = 64 * 1024


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


class LineWriter:
    """Request lines to a file descriptor: one ``write`` per line, or, under gevent, the lines
    of a busy spell of the event loop together.

    A ``write(2)`` per request was most of the request line's cost, and under load many
    requests finish close together. Once :meth:`gather` is on (a gevent worker), lines wait in
    a buffer that is written when the loop has nothing else ready (``schedule``, see
    :func:`gather_lines_until_idle`), or at once when the next line would take it past
    :attr:`limit`. The limit is :func:`write_limit` of the descriptor: :data:`PIPE_BUF` for a
    pipe, which delivers a write that size whole, :data:`FILE_WRITE` for a regular file, which
    never interleaves writes. Each write holds whole lines only; a line longer than the limit
    is written alone, as before. :meth:`flush` writes what waits (the JSON formatter calls it
    first, so other records keep their place after the request lines before them; so does the
    worker's exit).

    The buffer is one block allocated once, and a line is copied into it and freed at once:
    keeping each line's ``bytes`` until the write held dozens of 1 KiB allocations (orjson's
    output buffers) live per write, and a worker's caches are what the log's cost grows with.
    """

    def __init__(self, fd: int = _STDERR) -> None:
        self.fd = fd
        self.limit = PIPE_BUF
        self._buffer = bytearray(FILE_WRITE)
        self._view = memoryview(self._buffer)
        self._size = 0
        self._later: Any = None  # ``schedule(flush)``, once gathering

    @property
    def gathering(self) -> bool:
        return self._later is not None

    def gather(self, schedule: Any, limit: int | None = None) -> None:
        """Buffer lines until ``schedule(self.flush)`` calls the flush it is given, in writes
        of at most :func:`write_limit` of the descriptor (or ``limit``, up to the buffer's
        size). ``schedule`` is called once per write, when the first line of it arrives."""
        self.flush()
        self._later = schedule
        wanted = write_limit(self.fd) if limit is None else limit
        self.limit = min(wanted, len(self._buffer))

    def write(self, line: bytes) -> None:
        if self._later is None or len(line) > self.limit:
            self.flush()
            _write_all(self.fd, line)
            return
        start = self._size
        if start + len(line) > self.limit:
            self.flush()
            start = 0
        if not start:
            self._later(self.flush)
        end = start + len(line)
        self._buffer[start:end] = line
        self._size = end

    def flush(self) -> None:
        size = self._size
        if size:
            self._size = 0
            _write_all(self.fd, self._view[:size])


WRITER = LineWriter()


def when_idle(loop: Any) -> Any:
    """A ``schedule`` for :meth:`LineWriter.gather`: the flush runs once ``loop`` (gevent's)
    has no other event ready, through one idle watcher started for it and stopped when it
    fires. A loop turn's callback, before, flushed after every turn: under ``/health`` load a
    worker wrote ~31 lines per write to a file; now it fills the 64 KiB bound (~200 lines). A
    worker with spare time goes idle at once, so its lines still leave within the turn; under
    load a line waits at most until the bound fills, and a ``SIGKILL`` loses at most that."""
    watcher = loop.idle()

    def fire(flush: Any) -> None:
        watcher.stop()  # an idle watcher left on would fire at every turn: a busy loop
        flush()

    def schedule(flush: Any) -> None:
        watcher.start(fire, flush)

    return schedule


def gather_lines_until_idle() -> None:
    """In a gevent worker (after the fork): request lines leave when the loop goes idle, or
    when the next line would pass the write bound."""
    import gevent

    if not WRITER.gathering:
        atexit.register(_last_words)
    WRITER.gather(when_idle(gevent.get_hub().loop))


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
    """Write the per-request line; flask_app/observe.py gathers the values and has already
    checked :func:`logs_requests` (``LOG_LEVEL``).

    The line has the keys a :class:`JsonFormatter` record has (``ts``, ``level``, ``logger``,
    then the request's fields) and is one dict literal, one ``orjson.dumps`` and a hand-over
    to :data:`WRITER`, which writes it straight to stderr (under gevent, with the other lines
    of a busy spell of the event loop). A ``logging`` record (``makeRecord``, handler lock,
    formatter, a ``datetime``, the text stream's flush) cost a fifth of a ``/health``
    request; a dict of fields merged into a second dict cost ~2 µs more per request than this
    one literal.
    """
    WRITER.write(orjson.dumps({
        "ts": _CLOCK.timestamp(time.time()), "level": "INFO", "logger": REQUEST_LOGGER,
        "event": "request", "request_id": request_id, "method": method, "route": route,
        "path": path, "status": status, "latency_ms": latency_ms, "batch_size": batch_size,
        "pid": pid, "model_version": model_version,
    }, default=str, option=orjson.OPT_APPEND_NEWLINE))
