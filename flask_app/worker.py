"""The Gunicorn worker class: gevent's own WSGI server, taught to retire without failing anyone.

Why not Gunicorn's plain ``gevent`` worker: that one parses HTTP in Gunicorn's pure-Python
parser and, with several workers, accepts one connection per loop turn. gevent's ``pywsgi``
server (Gunicorn's ``gevent_pywsgi`` worker) does the same job with less Python per request;
in one Locust run on the 2-core machine /predict went from 967 to 1,306 req/s (README:
Performance).

Why not ``gevent_pywsgi`` as shipped: its handler keeps a keep-alive connection open for as long
as the client likes. When a worker retires (SIGHUP reload, ``max_requests``, scale down) it stops
accepting, but connections it already holds stay with it until the graceful timeout kills them,
and the requests on them fail. Gunicorn's own gevent worker avoids that in two ways, and this
handler does the same:

* once the worker has stopped accepting, every response says ``Connection: close``, so a client
  finishes its request in flight and reconnects, to a live worker;
* a connection waits at most ``keepalive`` seconds (gunicorn.conf.py) for its next request
  line, so idle connections leave a retiring worker within that time.

One more rule, as Apache's ``MaxKeepAliveRequests`` (default 100) and nginx's
``keepalive_requests``: a connection is closed after ``KEEPALIVE_REQUESTS`` answers (default
100; 0 = no limit). Workers share one listening socket and a connection stays with the worker
that accepted it, so a busy client's connections can pile up on one worker while another idles:
in one Locust run (64 users, 2 workers) one worker answered 7,751 requests at p50 58 ms and the
other 4,984 at p50 35 ms. Reconnecting now and then lets the less busy worker, which reaches
``accept`` first, take its share. Over four 12 s runs each, the two workers' request counts
differed by 2-15 % with the limit and by 23-41 % without it; p99 latency did not change
measurably either way.

Keep-alive connections take turns (``FAIR_YIELD``, default on). A greenlet that has answered
a request goes straight on to read the connection's next one, and that read does not yield when
the bytes are already there, which they are for any client that sends its next request as soon
as it has the last answer (a load generator, a proxy). Such a connection would be served request
after request while the others wait. So before reading a kept-alive connection's next request
the handler waits for the event loop's next turn, in which every connection whose request has
arrived by then gets its turn too. This replaced a Flask ``before_request`` yield, which gave
turns as well, but in the middle of a request: each request then took two loop turns, and the
latency spread widely (one worker, 32 wrk connections: /health p50 14 ms, p99 37 ms). Measured
with wrk (1 thread, 64 connections, 2 workers, old and new alternating three times): /health
p99 63-88 ms with the old yield and 42-44 ms with this one, one fixed flight 94-111 ms against
48-62 ms, at the same throughput (README: Performance).

Finally, :class:`BurstAcceptingServer` accepts a burst of new connections in one loop turn
instead of one per turn (the stress test's slowest requests waited there).

gunicorn.conf.py loads this file by path (the master must not import the Flask app); the tests
import it as ``flask_app.worker``.
"""

from __future__ import annotations

import os
from typing import Any

import gevent
from gunicorn.workers.ggevent import GeventPyWSGIWorker, PyWSGIHandler, PyWSGIServer


class RetiringHandler(PyWSGIHandler):
    """One client connection: keep-alive with an idle limit and a request limit, closed once
    the worker retires."""

    #: Seconds a connection may sit idle before its next request line; the worker sets it.
    idle_timeout: float = 5.0
    #: Requests served on one connection before it is closed (0: no limit); the worker sets it.
    max_requests: int = 0
    #: Wait for the loop's next turn before reading a kept-alive connection's next request.
    take_turns: bool = True
    served: int = 0

    def read_requestline(self) -> str:
        """The next request line, or "" (close the connection) after ``idle_timeout``."""
        if self.served and self.take_turns:
            # A positive sleep resumes after the loop has polled for I/O; sleep(0) may resume
            # before that (gevent's docs), which would not let waiting connections in.
            gevent.sleep(1e-6)
        with gevent.Timeout(self.idle_timeout, False):
            return super().read_requestline()
        return ""

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Any:
        """Ask the client to reconnect once this worker has stopped accepting, or once this
        connection has had its share of requests."""
        self.served += 1
        if not self.server.started or self.served == self.max_requests:
            headers = [*headers, ("Connection", "close")]
        return super().start_response(status, headers, exc_info)

    def log_request(self) -> None:
        """Gunicorn's access log, skipped outright when it is off (the default here)."""
        if self.server.log.access_log_enabled:
            super().log_request()


class BurstAcceptingServer(PyWSGIServer):
    """gevent's WSGI server, accepting every waiting connection (up to 1,024) per loop turn.

    With several workers gevent accepts one connection per turn of a worker's event loop, so
    that no worker grabs a whole burst. But a turn of a loaded worker first serves every ready
    request, so a burst of new connections is accepted at one per turn. ``make stress`` opens
    1,000 connections in two seconds; in one 30 s run each (Locust, 1,000 users):

    ======================  ==========================  =================
    connections per turn    requests over 3 s           slowest request
    ======================  ==========================  =================
    1 (gevent's choice)     284 (0.6 %)                 11.1 s
    64                      173                         6.0 s
    256                     105                         3.9 s
    1,024                   0                           1.7 s
    ======================  ==========================  =================

    Every request over 3 s was the first on a new connection. The two workers still split the
    requests 47/53 % in the 1,024 run: both race for a burst, and
    ``KEEPALIVE_REQUESTS`` moves connections between workers over time.
    """

    max_accept_per_turn = 1024

    def set_max_accept(self) -> None:
        self.max_accept = self.max_accept_per_turn


def keepalive_requests() -> int:
    """``KEEPALIVE_REQUESTS`` from the environment: a count >= 0, default 100."""
    raw = os.environ.get("KEEPALIVE_REQUESTS", "").strip() or "100"
    if not raw.isdigit():
        raise ValueError(f"environment variable KEEPALIVE_REQUESTS must be an integer >= 0, "
                         f"got {raw!r}")
    return int(raw)


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
        # settings is this process's handler class.
        self.wsgi_handler = type("RetiringHandler", (RetiringHandler,),
                                 {"idle_timeout": float(self.cfg.keepalive),
                                  "max_requests": keepalive_requests(),
                                  "take_turns": fair_turns()})
        super().init_process()
