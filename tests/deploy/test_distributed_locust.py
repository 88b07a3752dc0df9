"""Locust with several worker processes (``--processes``, what ``LOCUST_PROCESSES=N`` adds to
the load targets) runs the locustfile end to end, and the minimum-requests rule is judged on the
master's totals: a worker holds only what it has not reported yet, so judging there would fail
every distributed run (and did, before the locustfile skipped workers).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server import REPO_ROOT, free_port, running_server

LOCUST = Path(sys.executable).with_name("locust")
pytestmark = pytest.mark.server


def run(url: str, prefix: Path, min_requests: int) -> tuple[subprocess.CompletedProcess, dict]:
    # The master's own port, which its forked workers inherit: on Locust's default (5557) two
    # runs at once on one machine (two test suites) took each other's workers.
    port = str(free_port())
    done = subprocess.run(
        [str(LOCUST), "-f", "locustfile.py", "--processes", "2", "--headless", "--host", url,
         "--master-bind-port", port, "--master-port", port,
         "-u", "4", "-r", "4", "-t", "3s", "--tags", "single", "--only-summary",
         "--min-requests", str(min_requests), "--csv", str(prefix)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    with open(f"{prefix}_stats.csv", newline="") as handle:
        total = next(row for row in csv.DictReader(handle) if row["Name"] == "Aggregated")
    return done, total


def test_two_locust_worker_processes_run_the_locustfile(tiny_model_dir: Path,
                                                        tmp_path: Path) -> None:
    with running_server(tiny_model_dir, tmp_path, workers=1) as server:
        done, total = run(server.url, tmp_path / "ok", 20)
        output = done.stdout + done.stderr
        assert done.returncode == 0, output[-3000:]
        assert "to 2 ready workers" in output
        assert int(total["Request Count"]) >= 20
        assert int(total["Failure Count"]) == 0
        assert "FAILED" not in output

        # The master still fails a run that made too few requests.
        done, total = run(server.url, tmp_path / "short", 10**9)
        assert done.returncode == 1
        assert int(total["Request Count"]) > 0


def test_make_passes_locust_processes_to_the_load_targets() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    for target in ("load-test-headless", "stress"):
        recipe = subprocess.run(["make", "--no-print-directory", "-n", target,
                                 "LOCUST_PROCESSES=3"], cwd=REPO_ROOT, env=env,
                                capture_output=True, text=True, check=True).stdout
        line = next(line for line in recipe.splitlines() if "locust -f" in line)
        assert "--processes 3" in line
        plain = subprocess.run(["make", "--no-print-directory", "-n", target], cwd=REPO_ROOT,
                               env=env, capture_output=True, text=True, check=True).stdout
        assert "--processes" not in plain
