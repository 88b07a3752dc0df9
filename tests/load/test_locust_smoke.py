"""A few seconds of real Locust traffic against the real server (tiny model).

Proves the locustfile runs end to end: it reads the served vocabularies at test start, its
flights are all accepted, its invalid requests all get the 400 they expect, and Locust's own
exit code and CSV say zero failures. Speed is shown by ``make bench``/``make stress``, not here.
"""

from __future__ import annotations

import csv
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from locust.env import Environment

import locustfile
from tests.server import REPO_ROOT, free_port, running_server

LOCUST = Path(sys.executable).with_name("locust")
pytestmark = pytest.mark.server


def run_locust(url: str, prefix: Path, seconds: int, *extra: str) -> dict[str, dict[str, str]]:
    done = subprocess.run(
        [str(LOCUST), "-f", "locustfile.py", "--headless", "--host", url, "-u", "4", "-r", "4",
         "-t", f"{seconds}s", "--only-summary", "--csv", str(prefix), *extra],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with open(f"{prefix}_stats.csv", newline="") as handle:
        return {row["Name"]: row for row in csv.DictReader(handle)}


def test_locustfile_mix_and_invalid_requests_run_with_zero_failures(tiny_model_dir: Path,
                                                                      tmp_path: Path) -> None:
    with running_server(tiny_model_dir, tmp_path, workers=1) as server:
        mix = run_locust(server.url, tmp_path / "mix", 4, "--max-wait", "0.05")
        # Only the checks' own kinds, so the 400 path runs many times in little time.
        refused = run_locust(server.url, tmp_path / "invalid", 2, "--tags", "invalid", "health")
    assert int(mix["Aggregated"]["Failure Count"]) == 0
    assert int(mix["/predict [1 flight]"]["Request Count"]) > 20
    assert int(refused["Aggregated"]["Failure Count"]) == 0
    assert int(refused["/predict [invalid -> 400]"]["Request Count"]) > 5
    assert int(refused["/health"]["Request Count"]) > 0
    assert "/predict [1 flight]" not in refused  # tags really select


def test_min_requests_makes_a_short_run_fail(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The stress target's request floor is enforced by Locust's exit code."""
    with running_server(tiny_model_dir, tmp_path, workers=1) as server:
        done = subprocess.run(
            [str(LOCUST), "-f", "locustfile.py", "--headless", "--host", server.url, "-u", "1",
             "-r", "1", "-t", "1s", "--only-summary", "--tags", "health",
             "--min-requests", "10000000"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "fewer than --min-requests" in done.stdout + done.stderr


def test_test_start_plans_the_board_from_the_served_model_and_freezes_gc(
        tiny_model_dir: Path, tmp_path: Path) -> None:
    """The start hook, in-process: vocabularies come from the live ``/model``, the board has
    the default size, and Locust's start-up objects leave the collector's view."""
    gc.unfreeze()
    try:
        with running_server(tiny_model_dir, tmp_path, workers=1) as server:
            locustfile._load_traffic(Environment(host=server.url))
        traffic = locustfile.TRAFFIC
        assert traffic is not None and len(traffic.schedule) == 2000
        served = set(json.loads(b)["OPERA"] for b in traffic.schedule)
        assert served <= set(traffic.airlines)
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()
        locustfile.TRAFFIC = None


def test_a_run_with_no_service_at_the_host_ends_at_once_with_one_clear_error() -> None:
    """`make stress` before `make serve`: one line that says what to do, exit code 1, and no
    user tracebacks or 45 s of zero requests."""
    host = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    done = subprocess.run(
        [str(LOCUST), "-f", "locustfile.py", "--headless", "--host", host, "-u", "4", "-r", "4",
         "-t", "30s", "--tags", "single", "--only-summary"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    assert time.monotonic() - started < 20, "the run waited for its time limit"
    assert f"cannot read the served model from {host}/model" in output
    assert "make serve" in output and "Traceback" not in output, output[-3000:]
