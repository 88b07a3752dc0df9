"""nginx in front of the service: its configuration, the compose topology, and real requests.

The configuration is one template (deploy/nginx/nginx.conf.j2) rendered for `make cluster` and,
committed, for docker-compose.yml; the compose copy must be the template's rendering, and the
compose file must wire the same topology (there is no Docker engine here, so it is read as
YAML). Through a running nginx, clients must get the service's own JSON answers (a 400 naming
the field, the 413 for a too-large body), not nginx's HTML pages, and their request id must
travel through.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from load.cluster import (
    COMPOSE_NGINX_CONF,
    COMPOSE_UPSTREAMS,
    Cluster,
    nginx_fail_timeout,
    render_compose_nginx,
    render_nginx,
)
from tests.server import REPO_ROOT, free_port

NGINX = shutil.which("nginx")
needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is not installed "
                                 "(apt-get install -y nginx; .ci/run does)")
COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def test_compose_nginx_conf_is_the_template_rendered() -> None:
    assert COMPOSE_NGINX_CONF.read_text() == render_compose_nginx(), (
        "deploy/nginx/compose.conf is stale: python -m load.cluster --write-compose-conf")


def test_config_keeps_alive_checks_passively_and_retries_posts_elsewhere() -> None:
    conf = render_nginx(["127.0.0.1:1", "127.0.0.1:2"], "127.0.0.1:3", "/tmp/x")
    servers = re.findall(r"^\s*server (\S+) (.*);$", conf, re.MULTILINE)
    assert [address for address, _ in servers] == ["127.0.0.1:1", "127.0.0.1:2"]
    assert all("max_fails=" in params and "fail_timeout=" in params for _, params in servers)
    assert nginx_fail_timeout() > 0
    assert re.search(r"^\s*keepalive \d+;", conf, re.MULTILINE)
    # Upstream keep-alive needs HTTP/1.1 and no "Connection: close" passed on.
    assert "proxy_http_version 1.1;" in conf and 'proxy_set_header Connection "";' in conf
    retry = re.search(r"^\s*proxy_next_upstream ([^;]*);", conf, re.MULTILINE).group(1).split()
    assert {"error", "timeout", "http_502", "http_503", "non_idempotent"} <= set(retry)
    # The reason a POST may be retried is written beside the directive.
    assert "pure function of its input" in conf


@needs_nginx
def test_rendered_config_passes_nginx_own_check(tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(render_nginx(["127.0.0.1:38001", "127.0.0.1:38002"],
                                 f"127.0.0.1:{free_port()}", str(tmp_path)))
    done = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c", str(conf), "-e", "stderr"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "syntax is ok" in done.stderr


def test_compose_runs_three_replicas_behind_nginx() -> None:
    services = COMPOSE["services"]
    replicas = sorted(name for name in services if name.startswith("api"))
    assert [f"{name}:8000" for name in replicas] == list(COMPOSE_UPSTREAMS)
    for name in replicas:
        api = services[name]
        assert api["image"] == services[replicas[0]]["image"]
        assert "ports" not in api, f"{name} must be reached only through nginx"
        assert api["read_only"] is True and "/tmp" in api["tmpfs"]
        assert "/ready" in " ".join(api["healthcheck"]["test"])
        # Longer than the service's GRACEFUL_TIMEOUT default (20 s).
        assert int(api["stop_grace_period"].rstrip("s")) > 20
    nginx = services["nginx"]
    assert nginx["ports"] == ["${HOST_PORT:-8000}:8080"]
    assert re.search(r"^\s*listen 8080;", COMPOSE_NGINX_CONF.read_text(), re.MULTILINE)
    mount = next(v for v in nginx["volumes"] if v.endswith(":/etc/nginx/nginx.conf:ro"))
    assert (REPO_ROOT / mount.split(":")[0]).resolve() == COMPOSE_NGINX_CONF
    assert {name: dep["condition"] for name, dep in nginx["depends_on"].items()} == {
        name: "service_healthy" for name in replicas}
    # The configuration says `daemon off;`; the image's default command adds it again, which
    # nginx refuses, so the command must be overridden.
    assert "daemon" not in " ".join(nginx["command"])
    assert nginx["user"] != "0" and nginx["read_only"] is True


@pytest.fixture(scope="module")
def cluster(tiny_model_dir: Path):
    if NGINX is None:
        pytest.skip("nginx is not installed (apt-get install -y nginx; .ci/run does)")
    with Cluster(instances=2, instance_ports=[free_port(), free_port()], port=free_port(),
                 model_dir=str(tiny_model_dir)) as running:
        yield running


def post(url: str, body: bytes, headers: dict | None = None):
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


@pytest.mark.server
def test_bad_input_through_nginx_gets_the_service_json_400(cluster: Cluster) -> None:
    status, headers, body = post(f"{cluster.url}/predict",
                                 json.dumps({"flights": [{"OPERA": "Grupo LATAM",
                                                          "TIPOVUELO": "X", "MES": 3}]}).encode())
    assert status == 400
    assert headers["Content-Type"] == "application/json"
    assert "TIPOVUELO" in json.dumps(json.loads(body)["error"]["fields"])


@pytest.mark.server
def test_too_large_body_through_nginx_gets_the_service_json_413(cluster: Cluster) -> None:
    body = b'{"flights": [' + b" " * (1536 * 1024) + b"]}"
    status, headers, answer = post(f"{cluster.url}/predict", body)
    assert status == 413
    assert headers["Content-Type"] == "application/json"
    assert json.loads(answer)["error"]["status"] == 413


@pytest.mark.server
def test_request_id_travels_through_nginx_and_back(cluster: Cluster) -> None:
    mine = uuid.uuid4().hex
    flight = {"flights": [{"OPERA": "Grupo LATAM", "TIPOVUELO": "I", "MES": 3}]}
    status, headers, _ = post(f"{cluster.url}/predict", json.dumps(flight).encode(),
                              {"X-Request-ID": mine})
    assert status == 200
    assert headers["X-Request-ID"] == mine
    # Without one, nginx's own id is passed on (and echoed).
    status, headers, _ = post(f"{cluster.url}/predict", json.dumps(flight).encode())
    assert status == 200 and re.fullmatch(r"[0-9a-f]{32}", headers["X-Request-ID"])


@pytest.mark.server
def test_requests_reach_every_instance(cluster: Cluster) -> None:
    flight = json.dumps({"flights": [{"OPERA": "Grupo LATAM", "TIPOVUELO": "I",
                                      "MES": 3}]}).encode()
    pids = {post(f"{cluster.url}/predict", flight)[1]["X-Worker-PID"] for _ in range(20)}
    assert len(pids) == len(cluster.members)
