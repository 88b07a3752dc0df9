"""The worker class (flask_app/worker.py): how connections come, stay and leave.

gevent's stock WSGI handler keeps a keep-alive connection for as long as the client wants, so a
worker told to stop (reload, restart) hangs on to its clients until the graceful timeout kills
them mid-conversation. These tests hold real keep-alive connections against a real Gunicorn and
check the promises: responses say ``Connection: close`` once the worker retires or after
``KEEPALIVE_REQUESTS`` answers, and an idle connection is closed after ``KEEPALIVE`` seconds, so
the worker exits long before the graceful timeout. Also: bursts are accepted in one loop turn.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
from gunicorn.workers.ggevent import PyWSGIServer
from server import GUNICORN, REPO_ROOT, longest_run, read_answers, running_server, wait_until

from flask_app.worker import BurstAcceptingServer, RetiringHandler, fair_turns, keepalive_requests

SLOW_GRACE = {"KEEPALIVE": "1", "GRACEFUL_TIMEOUT": "60"}


def connect(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)


def get(conn: http.client.HTTPConnection) -> http.client.HTTPResponse:
    conn.request("GET", "/health")
    resp = conn.getresponse()
    resp.read()
    return resp


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """True when the server closes the socket (EOF) within ``within`` seconds."""
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False


@pytest.mark.server
def test_a_retiring_worker_answers_then_closes_the_keep_alive_connection(tiny_model_dir,
                                                                          tmp_path):
    with running_server(tiny_model_dir, tmp_path, workers=1, env=SLOW_GRACE) as server:
        conn = connect(server.url)
        first = get(conn)
        pid = int(first.getheader("X-Worker-PID"))
        sock = conn.sock
        # http.client closes its socket on "Connection: close"; a duplicate descriptor of the
        # same connection shows whether the server closed its end too.
        watch = sock.dup()
        assert first.status == 200 and first.getheader("Connection") != "close"
        assert get(conn).status == 200 and conn.sock is sock  # the same kept-alive socket

        os.kill(pid, signal.SIGTERM)
        # The worker notices within its 1 s heartbeat; until then it may still keep alive.
        # Requests keep coming on the same socket, and every one is answered.
        deadline = time.monotonic() + 10
        while True:
            resp = get(conn)
            assert resp.status == 200
            assert int(resp.getheader("X-Worker-PID")) == pid
            if resp.getheader("Connection") == "close":
                break
            assert time.monotonic() < deadline, "no Connection: close from a retiring worker"
            time.sleep(0.2)
        assert closed_by_server(watch, within=5)
        watch.close()
        conn.close()

        # The replacement worker serves a new connection.
        fresh = connect(server.url)
        assert wait_until(lambda: int(get(fresh).getheader("X-Worker-PID")) != pid, 60)
        fresh.close()


@pytest.mark.server
def test_an_idle_keep_alive_connection_is_closed_after_keepalive_seconds(tiny_model_dir,
                                                                         tmp_path):
    with running_server(tiny_model_dir, tmp_path, workers=1, env=SLOW_GRACE) as server:
        conn = connect(server.url)
        get(conn)
        sock = conn.sock
        time.sleep(0.3)  # well inside KEEPALIVE=1: still open, and reused
        assert get(conn).status == 200 and conn.sock is sock
        assert closed_by_server(sock, within=5)
        conn.close()


@pytest.mark.server
def test_idle_clients_do_not_hold_a_retiring_worker_until_the_graceful_timeout(tiny_model_dir,
                                                                               tmp_path):
    with running_server(tiny_model_dir, tmp_path, workers=1, env=SLOW_GRACE) as server:
        conns = [connect(server.url) for _ in range(5)]
        pids = {int(get(conn).getheader("X-Worker-PID")) for conn in conns}
        assert len(pids) == 1
        pid = pids.pop()
        stopped = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        # KEEPALIVE=1 plus the worker's 1 s loop; the graceful timeout is 60 s.
        assert wait_until(lambda: f"Worker exiting (pid: {pid})" in server.log(), 15)
        print(f"worker left {time.monotonic() - stopped:.1f}s after SIGTERM")
        for conn in conns:
            conn.close()


@pytest.mark.server
def test_a_connection_is_closed_after_keepalive_requests_answers(tiny_model_dir, tmp_path):
    with running_server(tiny_model_dir, tmp_path, workers=1,
                        env={"KEEPALIVE_REQUESTS": "3"}) as server:
        conn = connect(server.url)
        answers = [get(conn) for _ in range(7)]
        assert all(resp.status == 200 for resp in answers)
        closes = [resp.getheader("Connection") == "close" for resp in answers]
        # http.client reconnects by itself after a close, so 7 requests make 3 connections.
        assert closes == [False, False, True, False, False, True, False]
        conn.close()


@pytest.mark.server
@pytest.mark.parametrize("value", ["-1", "ten", "1.5"])
def test_a_bad_keepalive_requests_stops_start_up_with_the_reason(value):
    done = subprocess.run([str(GUNICORN), "--config", "gunicorn.conf.py", "--check-config"],
                          cwd=REPO_ROOT, env={**os.environ, "KEEPALIVE_REQUESTS": value},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "KEEPALIVE_REQUESTS must be an integer >= 0" in done.stdout + done.stderr


def health_requests(*request_ids: str) -> bytes:
    return b"".join(f"GET /health HTTP/1.1\r\nHost: x\r\nX-Request-ID: {rid}\r\n\r\n".encode()
                    for rid in request_ids)


def pipelined_order(url: str, server_log: Callable[[], str]) -> list[str]:
    """Two kept-alive connections each pipeline five /health requests; the order in which the
    (single) worker answered them, from its request log (request ids a1..a5, b1..b5).

    The worker is stopped (SIGSTOP) while both batches are sent, so when it resumes both
    connections have all their requests waiting, whatever the machine's scheduling did.
    """
    parts = urlsplit(url)
    socks = {name: socket.create_connection((parts.hostname, parts.port), timeout=30)
             for name in ("a", "b")}
    try:
        pids = set()
        for name, sock in socks.items():  # one answer each: both connections are kept alive
            sock.sendall(health_requests(f"warm-{name}"))
            pids.update(re.findall(rb"X-Worker-PID: (\d+)", read_answers(sock, 1)))
        (pid,) = pids
        os.kill(int(pid), signal.SIGSTOP)
        try:
            for name, sock in socks.items():
                sock.sendall(health_requests(*(f"{name}{i}" for i in range(1, 6))))
        finally:
            os.kill(int(pid), signal.SIGCONT)
        for sock in socks.values():
            read_answers(sock, 5)
    finally:
        for sock in socks.values():
            sock.close()
    # The worker writes its request lines when its loop goes idle, which can be just after
    # the answers left (flask_app/request_log.py): wait for the ten, a few seconds at most.
    def logged() -> list[str]:
        return re.findall(r'"request_id":\s*"([ab])[1-5]"', server_log())

    wait_until(lambda: len(logged()) >= 10, timeout=10)
    return logged()


@pytest.mark.server
@pytest.mark.parametrize("fair_yield", ["1", "0"])
def test_fair_yield_reaches_the_workers_of_a_real_server(tiny_model_dir, tmp_path, fair_yield):
    with running_server(tiny_model_dir, tmp_path, workers=1,
                        env={"FAIR_YIELD": fair_yield}) as server:
        order = pipelined_order(server.url, server.log)
    assert sorted(order) == ["a"] * 5 + ["b"] * 5
    longest = longest_run(order)
    # Taking turns, the two connections alternate; without, one is answered five times first.
    assert longest <= 2 if fair_yield == "1" else longest == 5, order


@pytest.mark.server
def test_a_bad_fair_yield_stops_start_up_with_the_reason():
    done = subprocess.run([str(GUNICORN), "--config", "gunicorn.conf.py", "--check-config"],
                          cwd=REPO_ROOT, env={**os.environ, "FAIR_YIELD": "yes"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "FAIR_YIELD must be 1 or 0, got 'yes'" in done.stdout + done.stderr


def test_fair_yield_defaults_to_on(monkeypatch):
    monkeypatch.delenv("FAIR_YIELD", raising=False)
    assert fair_turns() is True
    monkeypatch.setenv("FAIR_YIELD", "0")
    assert fair_turns() is False
    monkeypatch.setenv("FAIR_YIELD", " 1 ")
    assert fair_turns() is True


def test_keepalive_requests_defaults_to_100_and_takes_zero(monkeypatch):
    monkeypatch.delenv("KEEPALIVE_REQUESTS", raising=False)
    assert keepalive_requests() == 100
    monkeypatch.setenv("KEEPALIVE_REQUESTS", "0")
    assert keepalive_requests() == 0
    monkeypatch.setenv("KEEPALIVE_REQUESTS", " 250 ")
    assert keepalive_requests() == 250


def test_the_server_accepts_a_burst_per_loop_turn_even_with_several_workers():
    # gevent drops max_accept to 1 when the environ says several processes serve the socket.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        server = BurstAcceptingServer(listener, application=lambda env, start: [],
                                      environ={"wsgi.multiprocess": True}, log=None)
        assert server.max_accept == 1024
        stock = PyWSGIServer(listener, application=lambda env, start: [],
                             environ={"wsgi.multiprocess": True}, log=None)
        assert stock.max_accept == 1
    finally:
        listener.close()


def raw_exchange(url: str, request: bytes) -> bytes:
    """Send bytes as they are (no client library would send these) and read until close."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def json_error(answer: bytes, status: int) -> str:
    """The message of a JSON error answer (the service's error shape), checked whole."""
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"Content-Type: application/json" in head and b"Connection: close" in head
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    assert length == len(body)
    error = json.loads(body)["error"]
    assert error["status"] == status and error["fields"] == {}
    return error["message"]


@pytest.mark.server
def test_oversized_request_lines_and_headers_are_refused_and_the_worker_lives_on(
        tiny_model_dir, tmp_path):
    # Gunicorn's limit_request_* settings do not apply to gevent's server; its own limits do
    # (8 KiB request line; the stdlib's 100 headers of at most 64 KiB each).
    many = b"".join(b"X-Extra-%d: y\r\n" % i for i in range(150))
    huge = b"X-Huge: " + b"a" * 70_000 + b"\r\n"
    with running_server(tiny_model_dir, tmp_path, workers=1) as server:
        pid = int(get(connect(server.url)).getheader("X-Worker-PID"))
        line = raw_exchange(server.url, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert line.startswith(b"HTTP/1.1 414 ")
        assert "8 KiB" in json_error(line, 414)
        for headers, why in ((many, "more than 100 request headers"), (huge, "Line too long"),
                             (b"Bad Header\r\n", "malformed request header line"),
                             (b" folded: line\r\n", "malformed request header line")):
            answer = raw_exchange(server.url, b"GET /health HTTP/1.1\r\nHost: x\r\n" + headers
                                  + b"Connection: close\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 400 ")
            assert why in json_error(answer, 400)
        after = get(connect(server.url))
        assert after.status == 200 and int(after.getheader("X-Worker-PID")) == pid


class _CountingSocket:
    """An accepted socket that counts the writes made on it (everything else passes)."""

    def __init__(self, sock: socket.socket, writes: list[int]) -> None:
        self._sock, self._writes = sock, writes

    def sendall(self, data: bytes) -> None:
        self._writes.append(len(data))
        self._sock.sendall(data)

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


def test_an_answer_leaves_in_one_write_so_a_kill_cannot_cut_it_between_headers_and_body():
    """gevent writes the headers and the body separately; a worker killed in between leaves a
    balancer holding half an answer it may not retry. The handler sends both at once."""
    from types import SimpleNamespace

    from gevent.pywsgi import WSGIServer

    from flask_app.worker import RetiringHandler

    body = b'{"predictions":[{"delay_probability":0.2,"delayed":true}]}'
    writes: list[int] = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    class Server(WSGIServer):
        share = None

        def handle(self, sock, address):
            super().handle(_CountingSocket(sock, writes), address)

    server = Server(("127.0.0.1", 0), app, handler_class=RetiringHandler)
    server.log = SimpleNamespace(access_log_enabled=False)  # as Gunicorn's logger says
    server.start()
    try:
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as client:
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
            answers = read_answers(client, 2)
    finally:
        server.stop()
    assert answers.count(body) == 2
    # One write per answer, each holding the status line, the headers and the whole body.
    assert len(writes) == 2
    assert sum(writes) == len(answers)


@pytest.mark.parametrize(("arrived", "content_length", "buffered"), [
    # The whole request in one segment: the body needs no deadline timer.
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", 2, True),
    # More than this request (the next one pipelined behind it) is fine too.
    (b"POST /predict HTTP/1.1\r\nHost: x\r\n\r\n{}GET /health HTTP/1.1\r\n\r\n", 2, True),
    # Part of the body still to come: it must be read under the deadline.
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n{\"a\"", 9, False),
    # Headers not complete in the buffer.
    (b"POST /predict HTTP/1.1\r\nHost: x\r\n", 2, False),
    # Bare-LF line endings or bytes before the request line: where the headers end is not
    # certain, so the deadline stays.
    (b"POST /predict HTTP/1.1\nHost: x\n\n{}", 2, False),
    (b"\r\nPOST /predict HTTP/1.1\r\nHost: x\r\n\r\n{}", 2, False),
])
def test_only_a_body_already_in_the_buffer_skips_the_body_deadline(arrived, content_length,
                                                                    buffered):
    handler = RetiringHandler.__new__(RetiringHandler)
    handler.arrived, handler.requestline = arrived, "POST /predict HTTP/1.1"
    assert handler.body_buffered(content_length) is buffered
