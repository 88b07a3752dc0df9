"""One JSON log line per request, with the request id echoed back and no payload in it."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
from datetime import UTC, datetime

import gevent
import pytest

from flask_app import create_app, request_log
from flask_app.request_log import PIPE_BUF, JsonFormatter, LineWriter

FLIGHT = {"OPERA": "Sky Airline", "TIPOVUELO": "I", "MES": 3, "SIGLADES": "Lima"}
HEX32 = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def log_lines(capfd):
    """The request lines the service wrote to file descriptor 2 (stderr), where Gunicorn's
    log goes too; read at the descriptor, as a log collector would."""
    request_log.WRITER.flush()
    capfd.readouterr()  # what came before the test

    def lines() -> list[dict]:
        gevent.sleep(0)  # the test process is gevent-patched: lines leave at the loop's turn
        err = capfd.readouterr().err
        return [json.loads(line) for line in err.splitlines()
                if line.startswith("{") and '"event":"request"' in line]

    return lines


def test_one_line_per_request_with_the_operational_fields(client, log_lines, app):
    client.post("/predict", json={"flights": [FLIGHT, FLIGHT, FLIGHT]})
    client.post("/predict", json={"OPERA": "Nobody Air", "TIPOVUELO": "I", "MES": 3})
    client.get("/no/such/route")
    lines = log_lines()
    assert len(lines) == 3
    ok, invalid, missing = lines
    version = app.extensions["delay_model"].version
    assert ok["route"] == "/predict" and ok["method"] == "POST" and ok["status"] == 200
    assert ok["batch_size"] == 3 and ok["model_version"] == version
    assert isinstance(ok["pid"], int) and ok["latency_ms"] >= 0 and ok["level"] == "INFO"
    assert invalid["status"] == 400 and invalid["batch_size"] is None
    assert missing["status"] == 404 and missing["route"] == "unmatched"
    assert missing["path"] == "/no/such/route"


def test_no_payload_is_logged(client, log_lines):
    client.post("/predict", json={"OPERA": "Secret-Marker-Air", "TIPOVUELO": "I", "MES": 3})
    client.post("/predict", json={**FLIGHT, "SIGLADES": "Lima"})
    text = json.dumps(log_lines())
    assert "Secret-Marker-Air" not in text
    assert "Lima" not in text


def test_request_id_is_echoed_when_safe(client, log_lines):
    response = client.get("/health", headers={"X-Request-ID": "trace-42.a:b_c"})
    assert response.headers["X-Request-ID"] == "trace-42.a:b_c"
    assert log_lines()[0]["request_id"] == "trace-42.a:b_c"


@pytest.mark.parametrize("header", [None, "", "x" * 129, "has space", 'quote"inject', "é"])
def test_request_id_is_generated_when_absent_or_unsafe(client, log_lines, header):
    headers = {} if header is None else {"X-Request-ID": header}
    response = client.get("/health", headers=headers)
    generated = response.headers["X-Request-ID"]
    assert HEX32.fullmatch(generated)
    assert log_lines()[0]["request_id"] == generated


def test_each_request_gets_its_own_id(client):
    ids = {client.get("/health").headers["X-Request-ID"] for _ in range(5)}
    assert len(ids) == 5


def test_log_level_warning_silences_request_lines(tiny_model_dir, log_lines):
    quiet = create_app({"TESTING": True, "MODEL_DIR": str(tiny_model_dir),
                        "LOG_LEVEL": "WARNING"})
    try:
        response = quiet.test_client().get("/health")
        assert response.status_code == 200
        assert "X-Request-ID" in response.headers
        assert log_lines() == []
    finally:
        logging.getLogger("flask_app").setLevel(logging.INFO)


def test_errors_are_json_too():
    record = logging.LogRecord("flask_app.errors", logging.ERROR, __file__, 1, "boom %s",
                               ("here",), None)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "boom here" and line["level"] == "ERROR"


def test_request_lines_keep_every_field_and_the_formatters_timestamp(client, log_lines):
    before = datetime.now(UTC)
    client.get("/health")
    after = datetime.now(UTC)
    (line,) = log_lines()
    assert list(line) == ["ts", "level", "logger", "event", "request_id", "method", "route",
                          "path", "status", "latency_ms", "batch_size", "pid", "model_version"]
    assert (line["level"], line["logger"], line["event"]) == ("INFO", "flask_app.requests",
                                                               "request")
    # The same shape as every other JSON line (JsonFormatter): ISO 8601, milliseconds, UTC.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line["ts"])
    stamp = datetime.fromisoformat(line["ts"])
    assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= stamp <= after


@pytest.fixture
def datagrams():
    """A LineWriter's descriptor where every write(2) stays one message (a datagram socket), so
    a test sees how the lines were grouped into writes."""
    sender, receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.setblocking(False)

    def received() -> list[bytes]:
        out = []
        with contextlib.suppress(BlockingIOError):
            while True:
                out.append(receiver.recv(1 << 16))
        return out

    yield sender.fileno(), received
    sender.close()
    receiver.close()


def lines_of(size: int, count: int) -> list[bytes]:
    return [(f"{n:05d}".encode() * size)[:size - 1] + b"\n" for n in range(count)]


def test_without_an_event_loop_every_line_is_its_own_write(datagrams):
    fd, received = datagrams
    writer = LineWriter(fd)
    lines = lines_of(200, 3)
    for line in lines:
        writer.write(line)
    assert received() == lines


def test_under_gevent_the_lines_of_one_loop_turn_leave_in_writes_of_whole_lines(datagrams):
    fd, received = datagrams
    writer = LineWriter(fd)
    writer.gather(gevent.get_hub().loop.run_callback)
    lines = lines_of(300, 30)  # 9,000 bytes: more than one pipe-atomic write holds
    for line in lines:
        writer.write(line)
    early = received()
    gevent.sleep(0)  # one loop turn: the callback writes what waits
    writes = early + received()
    assert b"".join(writes) == b"".join(lines)
    assert 3 <= len(writes) <= 4  # grouped, not one write per line
    for data in writes:
        assert len(data) <= PIPE_BUF and data.endswith(b"\n")
        assert data.count(b"\n") * 300 == len(data)  # whole lines only


def test_a_line_longer_than_a_pipe_write_goes_alone_after_the_lines_before_it(datagrams):
    fd, received = datagrams
    writer = LineWriter(fd)
    writer.gather(gevent.get_hub().loop.run_callback)
    short, (long,) = lines_of(100, 2), lines_of(PIPE_BUF + 500, 1)
    for line in (*short, long):
        writer.write(line)
    assert received() == [b"".join(short), long]
    gevent.sleep(0)
    assert received() == []


def test_a_log_record_is_written_after_the_request_lines_gathered_before_it():
    read, write = os.pipe()
    writer = request_log.WRITER
    saved = writer.fd, writer._later
    try:
        writer.fd = write
        writer.gather(lambda callback: None)  # a loop turn that never comes
        writer.write(b'{"event":"request"}\n')
        record = logging.LogRecord("flask_app", logging.WARNING, __file__, 1, "later", (), None)
        formatted = JsonFormatter().format(record)
        assert os.read(read, 1 << 16) == b'{"event":"request"}\n'
        assert json.loads(formatted)["message"] == "later"
    finally:
        writer.flush()
        writer.fd = saved[0]
        writer.gather(saved[1])  # the loop's callback again (or none), not the test's
        os.close(read)
        os.close(write)
