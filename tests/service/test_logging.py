"""One JSON log line per request, with the request id echoed back and no payload in it."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import gevent
import pytest

from flask_app import create_app, request_log
from flask_app.request_log import FILE_WRITE, PIPE_BUF, JsonFormatter, LineWriter, write_limit
from tests.server import REPO_ROOT

FLIGHT = {"OPERA": "Sky Airline", "TIPOVUELO": "I", "MES": 3, "SIGLADES": "Lima"}
HEX32 = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def log_lines(capfd):
    """The request lines the service wrote to file descriptor 2 (stderr), where Gunicorn's
    log goes too; read at the descriptor, as a log collector would."""
    request_log.WRITER.flush()
    capfd.readouterr()  # what came before the test

    def lines() -> list[dict]:
        # The test process is gevent-patched: lines leave once its loop has nothing to do,
        # which a short sleep gives it (a zero sleep is a turn with the sleeper's wake-up due).
        gevent.sleep(0.001)
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


def test_a_regular_file_takes_larger_writes_than_a_pipe_or_a_socket(tmp_path):
    read, write = os.pipe()
    left, right = socket.socketpair()
    try:
        with (tmp_path / "log").open("wb") as file:
            assert write_limit(file.fileno()) == FILE_WRITE > PIPE_BUF
        assert write_limit(write) == PIPE_BUF
        assert write_limit(left.fileno()) == PIPE_BUF
        assert write_limit(1 << 20) == PIPE_BUF  # no such descriptor: the safe bound
    finally:
        os.close(read)
        os.close(write)
        left.close()
        right.close()


def test_gathering_on_a_file_takes_the_file_bound(tmp_path):
    with (tmp_path / "log").open("wb") as file:
        writer = LineWriter(file.fileno())
        writer.gather(gevent.get_hub().loop.run_callback)
        assert writer.limit == FILE_WRITE
    read, write = os.pipe()
    try:
        writer = LineWriter(write)
        writer.gather(gevent.get_hub().loop.run_callback)
        assert writer.limit == PIPE_BUF
    finally:
        os.close(read)
        os.close(write)


@pytest.fixture
def gathering(datagrams):
    """A LineWriter on the datagram descriptor, gathering with the given ``schedule`` and
    bound, and the function that reads its writes. At teardown it writes what waits: nothing
    may stay queued for the loop, as the descriptor's number is reused once ``datagrams``
    closes it, and a late flush would write into that file."""
    fd, received = datagrams
    writers: list[LineWriter] = []

    def start(schedule: Any, limit: int) -> tuple[LineWriter, Callable[[], list[bytes]]]:
        writer = LineWriter(fd)
        writer.gather(schedule, limit=limit)
        writers.append(writer)
        return writer, received

    yield start
    for writer in writers:
        writer.flush()


def test_with_the_file_bound_a_loop_turn_of_lines_is_one_write(gathering):
    writer, received = gathering(gevent.get_hub().loop.run_callback, FILE_WRITE)
    lines = lines_of(300, 30)  # 9,000 bytes: three pipe-sized writes, one file-sized write
    for line in lines:
        writer.write(line)
    assert received() == []
    gevent.sleep(0)
    assert received() == [b"".join(lines)]


def test_when_idle_a_busy_spell_of_many_loop_turns_leaves_in_one_write(gathering):
    writer, received = gathering(request_log.when_idle(gevent.get_hub().loop), FILE_WRITE)
    lines = lines_of(300, 40)
    seen_while_busy: list[bytes] = []

    def busy() -> None:
        for line in lines:
            writer.write(line)
            gevent.sleep(0)  # a loop turn, but not an idle one: this greenlet is due again
            seen_while_busy.extend(received())

    gevent.spawn(busy).join()
    assert seen_while_busy == []
    gevent.sleep(0.001)  # nothing left to run: the loop goes idle
    assert received() == [b"".join(lines)]


def test_when_idle_the_watcher_stops_after_its_flush():
    """An idle watcher left running would wake the loop at every turn, a busy loop."""
    loop = gevent.get_hub().loop
    read, write = os.pipe()
    try:
        writer = LineWriter(write)
        writer.gather(request_log.when_idle(loop))
        gevent.sleep(0.001)
        active_before = loop.activecnt
        writer.write(b"one\n")
        writer.write(b"two\n")
        assert loop.activecnt == active_before + 1  # one watcher for the pending write
        gevent.sleep(0.001)
        assert os.read(read, 1 << 16) == b"one\ntwo\n"
        assert loop.activecnt == active_before
    finally:
        os.close(read)
        os.close(write)


def test_when_idle_a_write_forced_by_the_bound_leaves_the_rest_for_the_idle_loop(gathering):
    writer, received = gathering(request_log.when_idle(gevent.get_hub().loop), 1000)
    lines = lines_of(300, 5)  # three lines fill the bound, two wait for the idle loop
    for line in lines:
        writer.write(line)
    assert received() == [b"".join(lines[:3])]
    gevent.sleep(0.001)
    assert received() == [b"".join(lines[3:])]


def test_the_clock_text_matches_datetime_at_every_millisecond_and_second_boundary():
    clock = request_log._Clock()
    start = datetime(2026, 12, 31, 23, 59, 58, tzinfo=UTC).timestamp()
    for step in range(0, 2_500, 1):  # 2.5 s in 1 ms steps: every millisecond text, 3 seconds
        now = start + step / 1000 + 0.0004
        expected = datetime.fromtimestamp(int(now * 1000) / 1000, UTC)
        assert clock.timestamp(now) == expected.isoformat(timespec="milliseconds")


WRITER_PROCESS = """
import sys
from flask_app.request_log import LineWriter

name, count = sys.argv[1], int(sys.argv[2])
writer = LineWriter(1)
writer.gather(lambda callback: None)  # no loop turn: writes leave only when the bound is hit
assert writer.limit > 4096, writer.limit  # stdout is a regular file
for n in range(count):
    writer.write(f"{name} {n:06d} ".encode() + b"x" * (n % 500) + b"\\n")
writer.flush()
"""


def test_two_workers_writing_file_sized_writes_to_one_file_never_cut_a_line(tmp_path):
    """What the file bound relies on: two processes that share one open file, as Gunicorn's
    workers share stderr, each write FILE_WRITE-sized runs of lines at once; every line
    arrives whole and in its writer's order."""
    count = 20_000  # ~5 MB per writer: dozens of 64 KiB writes racing each other
    path = tmp_path / "shared.log"
    with path.open("wb") as shared:
        writers = [subprocess.Popen([sys.executable, "-c", WRITER_PROCESS, name, str(count)],
                                    stdout=shared, cwd=REPO_ROOT) for name in ("a", "b")]
        for process in writers:
            assert process.wait(timeout=120) == 0
    seen: dict[str, list[int]] = {"a": [], "b": []}
    for line in path.read_bytes().splitlines():
        name, n, tail = line.split(b" ")
        assert tail == b"x" * (int(n) % 500), line[:80]
        seen[name.decode()].append(int(n))
    assert seen == {"a": list(range(count)), "b": list(range(count))}


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
