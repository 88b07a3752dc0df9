"""Start the real service (Gunicorn + gevent via gunicorn.conf.py) on a free port for tests.

Tests that need a server use :func:`running_server`; it waits for /ready, hands back the base
URL, the process and the path of its log, and always stops the server (SIGTERM, then SIGKILL)
so no test leaves a process behind. Also the small helpers the tests that talk raw HTTP to a
server share (reading pipelined answers, measuring runs in the order they were served).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
GUNICORN = Path(sys.executable).with_name("gunicorn")


def read_answers(sock: socket.socket, count: int) -> bytes:
    """Read from a raw client socket until ``count`` answers' 200 status lines have arrived."""
    received = b""
    while received.count(b"HTTP/1.1 200 ") < count:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection early"
        received += chunk
    return received


def longest_run(order: Sequence[str]) -> int:
    """The most items of one kind in a row (e.g. one client's requests answered back to back)."""
    return max(len(list(run)) for _, run in groupby(order))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_ready(url: str, process: subprocess.Popen, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n"
                               f"{log_path.read_text(errors='replace')[-4000:]}")
        try:
            with urllib.request.urlopen(f"{url}/ready", timeout=1) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server not ready after {timeout}s:\n"
                       f"{log_path.read_text(errors='replace')[-4000:]}")


def wait_until(predicate, timeout: float = 90.0, interval: float = 0.1) -> bool:
    """Poll ``predicate`` until it is true (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


@contextlib.contextmanager
def running_server(model_dir: Path | str, log_dir: Path, workers: int = 2,
                   env: Mapping[str, str] | None = None,
                   ready_timeout: float = 60.0) -> Iterator[Server]:
    """Run ``gunicorn --config gunicorn.conf.py`` with MODEL_DIR and PORT set for the test."""
    port = free_port()
    log_path = Path(log_dir) / f"gunicorn-{port}.log"
    full_env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1",
                "MODEL_DIR": str(model_dir), "WEB_CONCURRENCY": str(workers),
                **(env or {})}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [str(GUNICORN), "--config", "gunicorn.conf.py"], cwd=REPO_ROOT, env=full_env,
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, log_path, ready_timeout)
        yield Server(url=url, process=process, log_path=log_path)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
