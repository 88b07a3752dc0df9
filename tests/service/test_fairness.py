"""Keep-alive connections in one gevent worker take turns (flask_app/worker.py, FAIR_YIELD).

Two clients each pipeline five requests on their own keep-alive connection, so every next
request is already buffered when the previous answer has gone out: the case in which a
connection's greenlet would otherwise never yield. The server is gevent's WSGI server with the
worker's handler class, in this (gevent-patched) process, and the application records the order
in which it was called.
"""

from __future__ import annotations

import socket
from types import SimpleNamespace

import gevent
import pytest
from server import longest_run, read_answers

from flask_app.worker import BurstAcceptingServer, RetiringHandler

REQUESTS_EACH = 5

pytestmark = pytest.mark.skipif(not gevent.monkey.is_module_patched("socket"),
                                reason="turns between greenlets need a gevent-patched process")


def handled_order(take_turns: bool) -> list[str]:
    order: list[str] = []

    def app(environ, start_response):
        order.append(environ["QUERY_STRING"])
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    handler = type("Handler", (RetiringHandler,), {"take_turns": take_turns})
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    # Gunicorn's access log is off, as in the service; the handler only asks whether it is on.
    server = BurstAcceptingServer(listener, application=app, handler_class=handler,
                                  log=SimpleNamespace(access_log_enabled=False))
    server.start()
    clients = {}
    try:
        for name in ("a", "b"):
            clients[name] = socket.create_connection(listener.getsockname(), timeout=10)
        for name, sock in clients.items():
            sock.sendall(f"GET /?{name} HTTP/1.1\r\nHost: test\r\n\r\n".encode() * REQUESTS_EACH)
        for sock in clients.values():
            read_answers(sock, REQUESTS_EACH)
    finally:
        for sock in clients.values():
            sock.close()
        server.stop(timeout=1)
        listener.close()
    return order


def test_pipelining_clients_take_turns():
    order = handled_order(take_turns=True)
    assert sorted(order) == ["a"] * REQUESTS_EACH + ["b"] * REQUESTS_EACH
    # The requests alternate. A client may get two in a row when the other client's
    # greenlet has not started yet (first request) or has nothing left (last request).
    assert longest_run(order) <= 2, order


def test_without_turns_one_client_runs_all_its_requests_first():
    """The control: this is the starvation the turns exist to prevent."""
    order = handled_order(take_turns=False)
    assert sorted(order) == ["a"] * REQUESTS_EACH + ["b"] * REQUESTS_EACH
    assert longest_run(order) == REQUESTS_EACH, order
