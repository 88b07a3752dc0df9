"""The failover drills, short, against the real topology: Gunicorn instances behind nginx.

``make failover`` runs the full drills (3 instances, >= 10,000 requests each); here a short
version with two instances proves the same two things on every test run: nginx's retries
turn a rolling restart and a ``kill -9`` into zero failed requests, and the drill really did take
instances away under load (nginx logged the refused and reset attempts it retried). The
control test shows the load client counts what an unprotected client meets: the same kill
without nginx in front fails requests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from load.cluster import Cluster
from load.failover import LoadClient, summarise
from tests.server import REPO_ROOT, free_port

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(shutil.which("nginx") is None,
                       reason="nginx is not installed (apt-get install -y nginx; .ci/run does)"),
]


def test_rolling_restart_and_kill_fail_no_request_through_nginx(tiny_model_dir: Path,
                                                                tmp_path: Path) -> None:
    report = tmp_path / "failover.json"
    ports = f"{free_port()},{free_port()}"
    done = subprocess.run(
        [sys.executable, "-m", "load.failover", "--instances", "2", "--workers", "1",
         "--instance-ports", ports, "--port", str(free_port()), "--connections", "8",
         "--lead-seconds", "0.5", "--tail-seconds", "0.5", "--down-seconds", "1",
         "--min-requests", "100", "--json", str(report)],
        cwd=REPO_ROOT, env={**os.environ, "MODEL_DIR": str(tiny_model_dir)},
        capture_output=True, text=True, timeout=240)
    output = done.stdout[-3000:] + done.stderr[-3000:]
    drills = json.loads(report.read_text())["drills"]
    assert set(drills) == {"rolling", "kill"}, output
    for name, drill in drills.items():
        assert drill["in_window"] >= 100, name
        assert drill["p99_ms"] > 0, name
        # nginx met a dead instance and passed the attempt on: the drill tested failover.
        assert drill["notes"]["nginx_upstream_errors"], name
    rolling = drills["rolling"]
    assert rolling["failures"] == 0, (rolling["errors"], rolling["samples"])
    assert any("Connection refused" in kind for kind in rolling["notes"]["nginx_upstream_errors"])
    assert len(rolling["notes"]["instances"]) == 2
    # The worker sends an answer's headers and body in one write, so a kill -9 cannot leave
    # nginx holding half an answer it may not retry: the kill drill fails nothing either.
    kill = drills["kill"]
    assert kill["failures"] == 0, (kill["errors"], kill["samples"], output)
    assert done.returncode == 0, output


def test_without_nginx_the_same_kill_fails_requests_and_nginx_alone_answers_json_503(
        tiny_model_dir: Path) -> None:
    with Cluster(instances=1, instance_ports=[free_port()], port=free_port(),
                 model_dir=str(tiny_model_dir)) as cluster:
        instance = cluster.members[0]
        client = LoadClient(instance.url, connections=8, max_seconds=60, timeout=5)
        client.wait_running(1.0)
        cluster.kill_instance(instance)
        client.wait_running(1.0)
        result = summarise(client.finish())
        assert result.requests > 0
        assert result.failures > 0
        assert set(result.errors) - {"HTTP 200"}, result.errors

        # No instance left: nginx answers itself, in the service's JSON error shape.
        started = time.monotonic()
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"{cluster.url}/health", timeout=15)
        assert time.monotonic() - started < 10
        assert caught.value.code == 503
        assert caught.value.headers["Content-Type"] == "application/json"
        assert caught.value.headers["Retry-After"] == "1"
        assert json.loads(caught.value.read())["error"]["status"] == 503
