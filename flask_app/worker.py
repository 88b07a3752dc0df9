"""The Gunicorn worker class: gevent's own WSGI server, taught to behave under real traffic.

Why gevent's ``pywsgi`` server (Gunicorn's ``gevent_pywsgi``) and not Gunicorn's plain gevent
worker: it parses HTTP with less Python per request. What this module adds to it, each rule
measured in docs/performance.md and docs/reliability.md:

* **Clean retirement.** A retiring worker (SIGHUP reload, scale down) answers ``Connection:
  close`` and drops idle connections after ``keepalive`` seconds, so clients reconnect to a
  live worker instead of failing when the graceful timeout kills it.
* **Connections move between workers.** A connection is closed after ``KEEPALIVE_REQUESTS``
  answers (as Apache's ``MaxKeepAliveRequests`` and nginx's ``keepalive_requests``), so a
  busy client's connections do not pile up on one worker for ever.
* **Fair turns** (``FAIR_YIELD``). A read that finds the next request already buffered does
  not yield, so a fast client would be served request after request while others wait;
  before reading a kept-alive connection's next request the handler waits for the loop's next
  turn. Taking the turn there, not inside the request, keeps each request in one loop turn.
* **Bursts are accepted in one loop turn**, and each worker keeps near a fair share of the open
  connections (flask_app/conn_share.py): it accepts only up to 9/8 of the accepting workers'
  mean, asks surplus keep-alive clients to reconnect above 5/4 of it, starts accepting at a cold
  start only once its siblings can, and on a reload keeps accepting until its replacements do.
* **Deadlines for reading a request** (``REQUEST_HEADER_TIMEOUT``, ``REQUEST_BODY_TIMEOUT``):
  gevent's server has none and Gunicorn's ``timeout`` does not apply to async workers, so a
  client trickling a request in held its connection for ever. Past a deadline: a 408 JSON
  error and the connection closed.
* **One write per answer**: headers and body leave together, so a killed worker cannot leave a
  balancer holding half an answer it may not retry.
* **Headers read without the ``email`` package** (flask_app/request_headers.py), with the
  stdlib's limits.

gunicorn.conf.py loads this file by path (the master must not import the Flask app); the tests
import it as ``flask_app.worker``.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

import gevent
import orjson
from gevent.pywsgi import Input, format_date_time
from gunicorn.workers.ggevent import GeventPyWSGIWorker, PyWSGIHandler, PyWSGIServer
from werkzeug.exceptions import RequestTimeout


def _sibling(name: str):
    """A stdlib-only module of flask_app/, loaded by path: this file is loaded in the master,
    which must not import the flask_app package (Flask, XGBoost) before it forks."""
    key = f"_scl_delay_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, Path(__file__).with_name(f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


conn_share = _sibling("conn_share")
config = _sibling("config")
request_headers = _sibling("request_headers")


class RequestLate(BaseException):
    """Raised into a handler whose client has not sent a complete request in time. Not an
    ``Exception``: gevent's header parsing turns those into a 400, and this must pass it."""


def _error_response(status: str, message: str) -> bytes:
    """A whole error answer, in the JSON shape of flask_app/errors.py, that closes the
    connection (what came before it cannot be trusted to end where a next request begins)."""
    body = orjson.dumps({"error": {"status": int(status[:3]), "message": message,
                                   "fields": {}}})
    return (b"HTTP/1.1 %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % (status.encode(), len(body))
            ) + body


def _timeout_response(message: str) -> bytes:
    return _error_response("408 Request Timeout", message)


#: gevent's answers to requests it cannot parse (empty bodies), as JSON errors that say why.
_PROTOCOL_ERRORS = {
    "414": ("414 Request-URI Too Long",
            "the request line is longer than gevent's limit of 8 KiB; send the flights in "
            "the body, not the URL"),
    "400": ("400 Bad Request", "the request is not valid HTTP/1.1"),
}


class DeadlineInput(Input):
    """``wsgi.input`` that raises a 408 (werkzeug's ``RequestTimeout``, which the app turns
    into its JSON error) when the body has not fully arrived by the handler's deadline."""

    __slots__ = ("deadline", "handler")

    def _within_deadline(self, read, *args):
        left = self.deadline - time.monotonic()
        timer = gevent.Timeout(max(left, 0.0), RequestLate)
        timer.start()
        try:
            return read(*args)
        except RequestLate:
            self.handler.late = True
            raise RequestTimeout(
                f"the request body did not arrive within {self.handler.body_timeout:g} s "
                "(REQUEST_BODY_TIMEOUT)") from None
        finally:
            timer.cancel()

    def read(self, length=None):
        return self._within_deadline(super().read, length)

    def readline(self, size=None):
        return self._within_deadline(super().readline, size)

    def _discard(self):
        """What the app left unread is read and dropped before the next request; a client
        that does not send it by the deadline has its connection closed instead."""
        try:
            super()._discard()
        except RequestTimeout:
            self.handler.close_connection = True


class RetiringHandler(PyWSGIHandler):
    """One client connection: keep-alive with an idle limit and a request limit, closed once
    the worker retires."""

    #: Seconds a connection may sit idle before its next request line; the worker sets it.
    idle_timeout: float = 5.0
    #: Requests served on one connection before it is closed (0: no limit); the worker sets it.
    max_requests: int = 0
    #: Wait for the loop's next turn before reading a kept-alive connection's next request.
    take_turns: bool = True
    #: Seconds from a request's first byte to the end of its headers; the worker sets it.
    header_timeout: float = 10.0
    #: Seconds from the end of the headers to the end of the body; the worker sets it.
    body_timeout: float = 30.0
    served: int = 0
    #: The current request missed a deadline: answer 408 and close.
    late: bool = False
    #: This connection was asked to close because its worker holds more than its share.
    shed: bool = False
    header_timer: gevent.Timeout | None = None

    def read_requestline(self) -> str:
        """The next request line, or "" (close the connection) after ``idle_timeout`` without
        a byte. Once a byte is there the headers must be complete within ``header_timeout``:
        a client that trickles them in would otherwise hold its connection for ever."""
        if self.served and self.take_turns:
            # A positive sleep resumes after the loop has polled for I/O; sleep(0) may resume
            # before that (gevent's docs), which would not let waiting connections in.
            gevent.sleep(1e-6)
        arrived = b""
        with gevent.Timeout(self.idle_timeout, False):
            arrived = self.rfile.peek(1)
        self.arrived = arrived
        if not arrived:
            return ""
        if b"\r\n\r\n" not in arrived:  # headers already whole need no timer (the usual case)
            self.header_timer = gevent.Timeout(self.header_timeout, RequestLate)
            self.header_timer.start()
        return super().read_requestline()

    def MessageClass(self, rfile: Any, *args: Any) -> Any:
        """The request's headers, read by flask_app/request_headers.py instead of the stdlib's
        ``email`` parser (a tenth of a new flight's CPU)."""
        return request_headers.read_headers(rfile)

    def _headers(self) -> Any:
        return self.headers.environ_items()

    def read_request(self, raw_requestline: str) -> bool:
        try:
            return super().read_request(raw_requestline)
        finally:
            if self.header_timer is not None:
                self.header_timer.cancel()
                self.header_timer = None

    #: Why gevent refused the current request line or headers (its exception's text).
    client_error: str = ""

    def _handle_client_error(self, ex: BaseException) -> Any:
        self.client_error = str(ex)
        return super()._handle_client_error(ex)

    def handle_one_request(self) -> Any:
        """gevent's request cycle, with a 408 for a client whose headers came too late and
        JSON errors where gevent answers a request it cannot parse with an empty 400 or 414."""
        try:
            result = super().handle_one_request()
        except RequestLate:
            if self.header_timer is not None:
                self.header_timer.cancel()
                self.header_timer = None
            message = (f"the request headers did not arrive within {self.header_timeout:g} s "
                       "(REQUEST_HEADER_TIMEOUT)")
            with gevent.Timeout(1, False):  # a client that does not read gets no more time
                self.socket.sendall(_timeout_response(message))
            return None
        if isinstance(result, tuple) and result[0] in _PROTOCOL_ERRORS:
            status, message = _PROTOCOL_ERRORS[result[0]]
            if self.client_error:
                message = f"{message}: {self.client_error[:200]}"
            return result[0], _error_response(status, message)
        return result

    #: What the read buffer held when this request's first byte arrived (its start).
    arrived: bytes = b""

    def body_buffered(self, content_length: int) -> bool:
        """Whether the read buffer already held this whole request, body included, when its
        first byte arrived (a small request usually arrives in one segment): reading that body
        then never waits for the client, so it needs no deadline timer. Conservative: any
        doubt about where the headers end (another line ending, bytes before the request line)
        says no."""
        arrived, line = self.arrived, self.requestline
        if not line or not arrived.startswith(line.encode("latin-1")):
            return False
        end = arrived.find(b"\r\n\r\n", len(line))
        return end >= 0 and len(arrived) - (end + 4) >= content_length

    def get_environ(self) -> dict[str, Any]:
        env = super().get_environ()
        given = self.wsgi_input
        if given.content_length and not given.chunked_input and \
                self.body_buffered(given.content_length):
            return env
        if given.content_length or given.chunked_input:
            body = DeadlineInput(given.rfile, given.content_length, socket=given.socket,
                                 chunked_input=given.chunked_input)
            body.deadline = time.monotonic() + self.body_timeout
            body.handler = self
            if env.get("wsgi.input") is given:
                env["wsgi.input"] = body
            self.wsgi_input = body
        return env

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Any:
        """Ask the client to reconnect once this worker has stopped accepting, once this
        connection has had its share of requests, once its worker holds more than its share
        of connections, or after a 408."""
        self.served += 1
        share = self.server.share
        if not self.server.started or self.served == self.max_requests or self.late:
            headers = [*headers, ("Connection", "close")]
        elif share is not None and not self.shed and share.over_share():
            share.shed()
            self.shed = True
            headers = [*headers, ("Connection", "close")]
        return super().start_response(status, headers, exc_info)

    def handle(self) -> None:
        try:
            super().handle()
        finally:
            if self.shed:
                self.server.share.shed_done()

    def finalize_headers(self) -> None:
        """gevent formats the ``Date`` header anew for every answer; its text changes once a
        second, so it is made once a second (per worker) and reused."""
        if self.provided_date is None:
            now = int(time.time())
            cached = RetiringHandler._date
            if cached[0] != now:
                cached = RetiringHandler._date = (now, format_date_time(now))
            self.response_headers.append((b"Date", cached[1]))
            self.provided_date = cached[1]
        super().finalize_headers()

    #: (whole second, its Date header value), shared by the worker's connections.
    _date: tuple[int, bytes] = (-1, b"")

    #: Bytes held back while gevent builds the status line and headers (see below).
    held: bytearray | None = None

    def _write_with_headers(self, data: bytes) -> None:
        """Send the status line, the headers and the first body chunk in one write.

        gevent sends the headers, then the body, in two writes. A worker killed between them
        leaves its client (or a balancer) with an answer begun but cut, which nginx must not
        retry, so the request fails (docs/deployment.md, kill -9 drill); one write closes that
        gap for every answer that fits the socket buffer, and saves a system call per answer.
        gevent still builds the headers: its writes are held and sent together."""
        self.held = bytearray()
        try:
            super()._write_with_headers(data)
        finally:
            held, self.held = self.held, None
        super()._sendall(held)

    def _sendall(self, data: bytes) -> None:
        if self.held is not None:
            self.held += data
        else:
            super()._sendall(data)

    def log_request(self) -> None:
        """Gunicorn's access log, skipped outright when it is off (the default here)."""
        if self.server.log.access_log_enabled:
            super().log_request()


class BurstAcceptingServer(PyWSGIServer):
    """gevent's WSGI server, accepting every waiting connection (up to 1,024) per loop turn.

    With several workers gevent accepts one connection per turn of a worker's event loop, so
    that no worker grabs a whole burst. But a loaded worker's turn is long, so a burst of new
    connections (``make stress`` opens 1,000 in two seconds) waited seconds to be accepted.
    Accepting many per turn cures that; the share table (``share``) keeps one worker from
    taking the whole burst.
    """

    max_accept_per_turn = 1024
    #: This worker's row in the master's connection-share table (None: no balancing).
    share: Any = None
    #: Seconds before a worker at its share looks at the listening socket again.
    share_recheck = 0.01

    def set_max_accept(self) -> None:
        self.max_accept = self.max_accept_per_turn

    def start(self) -> None:
        """Start accepting; at a cold start, only once every sibling can accept too.

        The first worker to boot would otherwise take the whole first burst (a deploy, a
        balancer reconnecting its pool) alone while its sibling still loads the model, and
        /ready, answered by that worker, would invite the burst in. While any worker accepts
        (a reload's old workers, a lost worker's survivor) there is no waiting."""
        share, worker = self.share, self.worker
        if share is not None and worker is not None:
            share.set_state(conn_share.READY)
            waited = time.monotonic()
            while (share.cold_start() and
                   time.monotonic() - waited < min(self.handover_limit, worker.cfg.timeout / 2)):
                worker.notify()
                gevent.sleep(0.02)
        super().start()
        if share is not None:
            share.set_state(conn_share.ACCEPTING)

    #: The worker this server runs in (for its heartbeat while it waits to retire).
    worker: Any = None
    #: Longest a retiring worker keeps accepting while its replacements boot (seconds).
    handover_limit = 30.0

    def close(self) -> None:
        """Stop accepting, but only once the workers that replace this one (a SIGHUP reload)
        accept: Gunicorn tells the old workers to stop as soon as it has forked the new ones,
        and under load the new ones take seconds to boot, while every connection that
        arrives meanwhile waits in the listen backlog (at 2,000 connections many waited
        past a client's 10 s timeout). With no replacement booting (shutdown, scale-down) it
        stops at once."""
        share, worker = self.share, self.worker
        if share is not None and worker is not None and self.started and not self.closed:
            self.worker = None  # wait once: stop() closes again
            waited = time.monotonic()
            while share.replacements_booting() and time.monotonic() - waited < min(
                    self.handover_limit, worker.cfg.graceful_timeout):
                worker.notify()
                gevent.sleep(0.05)
        if share is not None:
            share.set_state(conn_share.RETIRING)
        super().close()

    def do_read(self) -> Any:
        """Accept one connection, unless this worker already holds its share: then leave the
        socket to its siblings for a moment (their accept takes the connection)."""
        share = self.share
        if share is not None and not share.may_accept(self.waiting()):
            self.stop_accepting()
            self._timer = self.loop.timer(self.share_recheck)
            self._timer.start(self._start_accepting_if_started)
            return None
        accepted = super().do_read()
        if accepted and share is not None:
            share.opened()
        return accepted

    def waiting(self) -> int:
        """Connections in the listening socket's accept queue: Linux reports it in TCP_INFO
        (``tcpi_unacked`` of a listening socket, what ``ss -lnt`` shows as Recv-Q); 1 where it
        cannot be read, which makes the share count only what the workers hold."""
        try:
            info = self.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 32)
            return struct.unpack_from("=I", info, 24)[0]
        except (AttributeError, OSError, struct.error):
            return 1

    def do_handle(self, *args: Any) -> None:
        """Start the new connection's greenlet with the loop's next round of timers, not in
        gevent's callback queue.

        gevent starts a spawned greenlet from its callback queue, which a loop turn runs for
        only ``sys.getswitchinterval()`` (5 ms, checked every 50 callbacks) before polling,
        so at most 50 new connections a turn got their first request read. The kept-alive
        connections wait for their turn on a timer (``FAIR_YIELD``), and every expired timer
        runs in the same turn; with 1,000 connections a turn lasts ~0.5 s, and the last of a
        2,000-connection burst waited 5 s for their first answer (docs/reliability.md). A
        timer puts a new connection in the same round as the ones already served."""
        pool = self.pool
        if pool is None:
            super().do_handle(*args)
            return
        glet = pool.greenlet_class(_handle_then_close, self._handle, self.do_close, args)
        try:
            pool.add(glet, blocking=False)  # _do_read checked full() before accepting
        except BaseException:
            self.do_close(*args)
            raise
        glet.start_later(0)

    def do_close(self, *args: Any) -> None:
        super().do_close(*args)
        if self.share is not None:
            self.share.closed()


def _handle_then_close(handle: Any, close: Any, args: tuple) -> None:
    """A connection's greenlet: serve it, then close it whatever happened."""
    try:
        handle(*args)
    finally:
        close(*args)


def keepalive_requests() -> int:
    """``KEEPALIVE_REQUESTS`` from the environment: a count >= 0, default 100."""
    raw = os.environ.get("KEEPALIVE_REQUESTS", "").strip() or "100"
    if not raw.isdigit():
        raise ValueError(f"environment variable KEEPALIVE_REQUESTS must be an integer >= 0, "
                         f"got {raw!r}")
    return int(raw)


def request_timeouts() -> tuple[int, int]:
    """``REQUEST_HEADER_TIMEOUT`` (default 10) and ``REQUEST_BODY_TIMEOUT`` (default 30):
    seconds a client has to send a request's headers, and then its body."""
    return (config.env_int("REQUEST_HEADER_TIMEOUT", config.DEFAULTS["REQUEST_HEADER_TIMEOUT"]),
            config.env_int("REQUEST_BODY_TIMEOUT", config.DEFAULTS["REQUEST_BODY_TIMEOUT"]))


def fair_turns() -> bool:
    """``FAIR_YIELD`` from the environment: 1 (default) makes connections take turns, 0 not."""
    raw = os.environ.get("FAIR_YIELD", "").strip() or "1"
    if raw not in ("1", "0"):
        raise ValueError(f"environment variable FAIR_YIELD must be 1 or 0, got {raw!r}")
    return raw == "1"


class RetiringPyWSGIWorker(GeventPyWSGIWorker):
    """Gunicorn's ``gevent_pywsgi`` worker with :class:`RetiringHandler` and
    :class:`BurstAcceptingServer`."""

    server_class = BurstAcceptingServer

    def init_process(self) -> None:
        # One worker per process (this runs after the fork), so a class for this worker's
        # settings is this process's handler class, and the same for the server.
        header_timeout, body_timeout = request_timeouts()
        self.wsgi_handler = type("RetiringHandler", (RetiringHandler,),
                                 {"idle_timeout": float(self.cfg.keepalive),
                                  "max_requests": keepalive_requests(),
                                  "take_turns": fair_turns(),
                                  "header_timeout": float(header_timeout),
                                  "body_timeout": float(body_timeout)})
        # gunicorn.conf.py's pre_fork gave this worker a slot in the master's share table.
        table, slot = getattr(self, "scl_share_table", None), getattr(self, "scl_share_slot", None)
        share = None if table is None or slot is None else conn_share.WorkerShare(
            table, slot, os.getpid())
        self.server_class = type("BurstAcceptingServer", (BurstAcceptingServer,),
                                 {"share": share, "worker": self})
        super().init_process()
