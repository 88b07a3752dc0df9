"""The real service (gunicorn.conf.py: Gunicorn + gevent, 2 workers) under concurrent mixed load.

Checks what only a real server can show: answers stay right when requests interleave across
workers and greenlets, bad requests are refused without hurting a worker, and each worker loads
the model exactly once (the ``model ... loaded by worker pid ...`` log line) and is the one
answering (``X-Worker-PID``).
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests
import xgboost as xgb
from conftest import AIRLINES, DESTINATIONS, synthetic_flights
from server import Server, running_server, wait_until

from training.artifacts import MODEL_FILE
from training.features import FeatureSpec

pytestmark = pytest.mark.server

LOADED = re.compile(r"model (\S+) loaded by worker pid (\d+) from ")
TOLERANCE = 0.5e-4 + 1e-6
REQUESTS = 400
THREADS = 40


@dataclass
class Case:
    """One request and what its answer must be."""

    body: str
    expected: list[float] | None = None  # probabilities for a 200
    status: int = 200
    field: str | None = None  # for a 400: the field it must name
    content_type: str = "application/json"


def request_json(flight: dict, keep: tuple[str, ...]) -> dict:
    body = {k: flight[k] for k in ("OPERA", "TIPOVUELO", "MES")}
    if "Fecha-I" in keep:
        body["Fecha-I"] = flight["Fecha-I"].strftime("%Y-%m-%d %H:%M")
    if "SIGLADES" in keep:
        body["SIGLADES"] = flight["SIGLADES"]
    return body


def build_cases(model_dir: Path) -> list[Case]:
    """Singles, batches and invalid requests, expected values scored by the booster itself."""
    booster = xgb.Booster(model_file=str(model_dir / MODEL_FILE))
    spec = FeatureSpec(AIRLINES, DESTINATIONS)
    rng = random.Random(5)
    flights, _ = synthetic_flights(REQUESTS, seed=21)
    levels = [(), ("Fecha-I",), ("SIGLADES",), ("Fecha-I", "SIGLADES")]
    kept = [levels[rng.randrange(4)] for _ in flights]
    reference = [{k: v for k, v in f.items() if k in ("OPERA", "TIPOVUELO", "MES") or k in keep}
                 for f, keep in zip(flights, kept, strict=True)]
    expected = booster.predict(xgb.DMatrix(spec.encode(reference), missing=np.nan)).tolist()
    bodies = [request_json(f, k) for f, k in zip(flights, kept, strict=True)]

    cases: list[Case] = []
    for i in range(REQUESTS):
        kind = i % 8
        if kind < 4:
            cases.append(Case(json.dumps(bodies[i]), [expected[i]]))
        elif kind < 6:
            size = rng.randint(1, 40)
            picks = [rng.randrange(REQUESTS) for _ in range(size)]
            cases.append(Case(json.dumps({"flights": [bodies[j] for j in picks]}),
                              [expected[j] for j in picks]))
        elif kind == 6:
            bad_at = rng.randrange(5)
            items = [bodies[(i + j) % REQUESTS] for j in range(5)]
            items[bad_at] = {**items[bad_at], "MES": 13}
            cases.append(Case(json.dumps({"flights": items}), status=400,
                              field=f"flights[{bad_at}].MES"))
        else:
            cases.append(rng.choice([
                Case(json.dumps({**bodies[i], "OPERA": "Argentinas"}), status=400,
                     field="OPERA"),
                Case(json.dumps({**bodies[i], "MES": "x"}), status=400, field="MES"),
                Case(json.dumps(bodies[i])[:-7], status=400),
                Case("[" * 50_000 + "]" * 50_000, status=400),
                Case(json.dumps(bodies[i]), status=415, content_type="text/plain"),
            ]))
    rng.shuffle(cases)
    return cases


def worker_pids(server: Server) -> set[int]:
    """The Gunicorn master's current children (its workers)."""
    pid = server.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return {int(c) for c in children}


def wait_for_loads(server: Server, workers: int, timeout: float = 60.0) -> None:
    """/ready answers as soon as one worker is up; wait until every worker has its model."""
    deadline = time.monotonic() + timeout
    while len(set(LOADED.findall(server.log()))) < workers:
        assert time.monotonic() < deadline, server.log()[-3000:]
        time.sleep(0.1)


def check(case: Case, response: requests.Response) -> None:
    assert response.status_code == case.status, (case.body[:200], response.text[:300])
    body = response.json()
    if case.status == 200:
        got = [p["delay_probability"] for p in body["predictions"]]
        assert len(got) == len(case.expected)
        assert max(abs(g - e) for g, e in zip(got, case.expected, strict=True)) <= TOLERANCE
        return
    error = body["error"]
    assert error["status"] == case.status
    if case.field:
        assert case.field in error["fields"] and case.field in error["message"], error


def test_concurrent_mixed_traffic_is_answered_right_by_stable_workers(
        tiny_model_dir: Path, tmp_path: Path) -> None:
    cases = build_cases(tiny_model_dir)
    local = threading.local()
    sessions: list[requests.Session] = []

    def send(case: Case) -> tuple[Case, requests.Response]:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            sessions.append(session)
        response = session.post(f"{server.url}/predict", data=case.body.encode(),
                                headers={"Content-Type": case.content_type}, timeout=30)
        return case, response

    with running_server(tiny_model_dir, tmp_path, workers=2) as server:
        wait_for_loads(server, workers=2)
        before = worker_pids(server)
        started = time.monotonic()
        with ThreadPoolExecutor(THREADS) as pool:
            results = list(pool.map(send, cases))
        print(f"{REQUESTS} requests in {time.monotonic() - started:.2f}s")
        # Idle keep-alive connections would hold the graceful shutdown for GRACEFUL_TIMEOUT.
        for session in sessions:
            session.close()
        after = worker_pids(server)
        # Request lines are written when the worker's loop goes idle, which can be just after
        # their answers left (flask_app/request_log.py).
        wait_until(lambda: server.log().count('"route":"/predict"') >= REQUESTS, timeout=10)
        log = server.log()

    assert len(results) == REQUESTS
    for case, response in results:
        check(case, response)
    statuses = Counter(response.status_code for _, response in results)
    assert statuses[200] >= REQUESTS * 0.7 and statuses[400] > 0 and statuses[415] > 0

    for symptom in ("WORKER TIMEOUT", "Worker exited", "Traceback"):
        assert symptom not in log, log[-3000:]
    loads = Counter(int(pid) for _, pid in LOADED.findall(log))
    assert len(loads) == 2, f"expected 2 workers to load the model, log says {loads}"
    assert all(count == 1 for count in loads.values()), loads
    served = {r.json()["model_version"] for _, r in results if r.status_code == 200}
    assert {version for version, _ in LOADED.findall(log)} == served
    assert before == after == set(loads), (before, after, loads)
    answering = Counter(int(response.headers["X-Worker-PID"]) for _, response in results)
    assert set(answering) <= set(loads), (answering, loads)
    # Both workers gather their request lines until their loop goes idle
    # (flask_app/request_log.py) into one log: still exactly one whole JSON line per request,
    # none cut or lost.
    lines = [json.loads(line) for line in log.splitlines() if '"event":"request"' in line]
    logged = Counter(line["request_id"] for line in lines if line["route"] == "/predict")
    sent = Counter(response.headers["X-Request-ID"] for _, response in results)
    assert logged == sent and len(sent) == REQUESTS


def test_a_graceful_stop_writes_the_last_request_lines_and_no_traceback(tiny_model_dir,
                                                                         tmp_path):
    """SIGTERM to the master: each worker's last request lines still reach the log, and its
    exit leaves no ``Exception ignored`` traceback there (gevent issue #2148, which the worker
    printed at every exit until flask_app/request_log.py closed logging itself)."""
    with running_server(tiny_model_dir, tmp_path, workers=2) as server:
        wait_for_loads(server, workers=2)
        ids = [requests.get(f"{server.url}/health", timeout=10).headers["X-Request-ID"]
               for _ in range(20)]
    assert server.process.returncode == 0
    log = server.log()
    assert log.count("Worker exiting") == 2, log[-3000:]
    for symptom in ("Exception ignored", "Traceback", "Error"):
        assert symptom not in log, log[-3000:]
    logged = {json.loads(line)["request_id"] for line in log.splitlines()
              if '"event":"request"' in line}
    assert set(ids) <= logged
