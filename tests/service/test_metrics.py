"""Prometheus metrics: exact counts from the test client, and summed across real workers.

The server tests send a known mix of requests to a 2-worker Gunicorn and check that the scrape
adds up to exactly that mix, whichever worker served what; then SIGKILL a worker and check that
its counts stay (totals never go backwards) while its model-info gauge goes (it serves nothing).
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from tests.server import running_server

FLIGHT = {"OPERA": "Sky Airline", "TIPOVUELO": "I", "MES": 3, "SIGLADES": "Lima"}
LATE = {"OPERA": "Sky Airline", "TIPOVUELO": "I", "MES": 3, "Fecha-I": "2017-03-05 21:30"}


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_test_client_counts_requests_flights_and_outcomes(client, app):
    before = {
        "ok": sample("scl_delay_http_requests_total", route="/predict", method="POST",
                     status="200"),
        "bad": sample("scl_delay_http_requests_total", route="/predict", method="POST",
                      status="400"),
        "unmatched": sample("scl_delay_http_requests_total", route="unmatched", method="GET",
                            status="404"),
        "flights": sample("scl_delay_flights_scored_total"),
        "batches": sample("scl_delay_predict_batch_size_count"),
        "delayed": sample("scl_delay_predictions_total", outcome="delayed"),
        "on_time": sample("scl_delay_predictions_total", outcome="on_time"),
    }
    answers = [client.post("/predict", json={"flights": [FLIGHT, LATE, FLIGHT]}),
               client.post("/predict", json=LATE)]
    client.post("/predict", json={"MES": 13})
    client.get("/no/such/path")
    client.get("/metrics")
    delayed = sum(p["delayed"] for a in answers for p in a.get_json()["predictions"])
    assert sample("scl_delay_http_requests_total", route="/predict", method="POST",
                  status="200") - before["ok"] == 2
    assert sample("scl_delay_http_requests_total", route="/predict", method="POST",
                  status="400") - before["bad"] == 1
    assert sample("scl_delay_http_requests_total", route="unmatched", method="GET",
                  status="404") - before["unmatched"] == 1
    assert sample("scl_delay_http_requests_total", route="/metrics", method="GET",
                  status="200") == 0
    assert sample("scl_delay_flights_scored_total") - before["flights"] == 4
    assert sample("scl_delay_predict_batch_size_count") - before["batches"] == 2
    assert sample("scl_delay_predictions_total", outcome="delayed") - before["delayed"] == delayed
    assert (sample("scl_delay_predictions_total", outcome="on_time") - before["on_time"]
            == 4 - delayed)
    version = app.extensions["delay_model"].version
    assert sample("scl_delay_model_info", version=version) == 1


def test_metrics_endpoint_speaks_prometheus_text(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(response.get_data(as_text=True))}
    assert {"scl_delay_http_requests", "scl_delay_http_request_duration_seconds",
            "scl_delay_flights_scored", "scl_delay_predict_batch_size",
            "scl_delay_predictions", "scl_delay_model_info"} <= names


# --- against a real multi-worker server ------------------------------------------------------

def call(url: str, method: str = "GET", body: object | None = None) -> tuple[int, dict | str]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw, status = resp.read().decode(), resp.status
    except urllib.error.HTTPError as err:
        raw, status = err.read().decode(), err.code
    return status, (json.loads(raw) if raw.startswith("{") else raw)


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted label items): value} from one /metrics scrape."""
    status, text = call(f"{url}/metrics")
    assert status == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(samples: dict, name: str, **labels: str) -> float:
    return sum(v for (n, lab), v in samples.items()
               if n == name and all(dict(lab).get(k) == w for k, w in labels.items()))


def worker_pids(master_pid: int) -> list[int]:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    return sorted(int(p) for p in children)


def served_by(log: str) -> dict[int, int]:
    """Requests per worker pid, from the service's JSON request lines."""
    counts: dict[int, int] = {}
    for line in log.splitlines():
        if line.startswith("{") and '"event":"request"' in line:
            pid = json.loads(line)["pid"]
            counts[pid] = counts.get(pid, 0) + 1
    return counts


def wait_for_model_info(url: str, version: str, workers: int, gone: tuple[str, ...] = (),
                        timeout: float = 90) -> dict:
    """Scrape until ``workers`` live workers report ``version`` and none still reports a
    version in ``gone``; return that scrape (the last one if the timeout passes first).

    After a reload the new workers report in before the old ones have retired and been
    dropped from the gauge, so one scrape can show both versions: a test that means "the old
    version is gone" must wait for that too, not only for the new one to arrive."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(url)
        if ((total(samples, "scl_delay_model_info", version=version) == workers
             and not any(total(samples, "scl_delay_model_info", version=old) for old in gone))
                or time.monotonic() > deadline):
            return samples
        time.sleep(0.2)


def wait_until_logged(server, text: str, timeout: float = 90) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in server.log():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.server
def test_metrics_add_up_across_workers_and_survive_a_killed_worker(tiny_model_dir, tmp_path):
    with running_server(tiny_model_dir, tmp_path, workers=2) as server:
        url = server.url
        version = call(f"{url}/model")[1]["model_version"]
        # /ready answers once one worker is up; wait for both so both take traffic.
        wait_for_model_info(url, version, 2)
        sizes = [1] * 12 + [2, 3, 10, 1, 4, 7]
        delayed = 0
        for i, size in enumerate(sizes):
            body = ({"flights": [LATE if j % 2 else FLIGHT for j in range(size)]} if i % 3
                    else FLIGHT)
            if not i % 3:
                size = 1
            status, answer = call(f"{url}/predict", "POST", body)
            assert status == 200
            delayed += sum(p["delayed"] for p in answer["predictions"])
        flights = sum(1 if not i % 3 else s for i, s in enumerate(sizes))
        bad = [{"MES": 0}, {"flights": []}, [1, 2], {**FLIGHT, "OPERA": "Nobody"}]
        for body in bad:
            assert call(f"{url}/predict", "POST", body)[0] == 400
        for _ in range(3):
            assert call(f"{url}/no/such/path")[0] == 404
        for _ in range(5):
            assert call(f"{url}/model")[0] == 200

        def check(samples: dict) -> None:
            requests = "scl_delay_http_requests_total"
            assert total(samples, requests, route="/predict", status="200") == len(sizes)
            assert total(samples, requests, route="/predict", status="400") == len(bad)
            assert total(samples, requests, route="unmatched", status="404") == 3
            assert total(samples, requests, route="/model", status="200") == 5 + 1  # + version
            assert total(samples, requests, route="/metrics") == 0
            # Everything else is the harness's /ready polling.
            others = {dict(lab)["route"] for (n, lab) in samples if n == requests} - {
                "/predict", "unmatched", "/model"}
            assert others <= {"/ready"}
            assert total(samples, "scl_delay_flights_scored_total") == flights
            assert total(samples, "scl_delay_predict_batch_size_count") == len(sizes)
            assert total(samples, "scl_delay_predict_batch_size_sum") == flights
            assert total(samples, "scl_delay_predictions_total", outcome="delayed") == delayed
            assert (total(samples, "scl_delay_predictions_total", outcome="on_time")
                    == flights - delayed)
            assert total(samples, "scl_delay_http_request_duration_seconds_count",
                         route="/predict") == len(sizes) + len(bad)

        first = scrape(url)
        check(first)
        # 'livesum': one per live worker serving the version.
        assert total(first, "scl_delay_model_info", version=version) == 2

        # Kill a worker that served traffic: its counts must stay, its gauge must go.
        counts = served_by(server.log())
        pids = worker_pids(server.process.pid)
        victim = max(pids, key=lambda p: counts.get(p, 0))
        assert counts.get(victim, 0) > 0
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            live = worker_pids(server.process.pid)
            if len(live) == 2 and victim not in live:
                break
            time.sleep(0.1)
        live = worker_pids(server.process.pid)
        assert victim not in live
        # The replacement publishes its gauge once it has loaded the model; scrape after that,
        # or a leftover gauge of the dead worker could stand in for the missing one.
        (replacement,) = set(live) - set(pids)
        assert wait_until_logged(server, f"loaded by worker pid {replacement} ")
        after = scrape(url)
        assert total(after, "scl_delay_model_info") == 2, "a dead worker's gauge is left over"
        check(after)
        assert server.process.poll() is None
        assert call(f"{url}/predict", "POST", FLIGHT)[0] == 200
