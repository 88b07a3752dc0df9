"""A closed-loop load client that counts every failure, for ``make failover`` and the scaling run.

Why not Locust here: the failover drills must know when each request started (to tell the ones
sent while an instance was down from the rest) and must count a refused connection, a reset, a
timeout and a non-200 answer all as failures, with nothing retried on the client side (a retry
here would hide exactly the failures the drill looks for; geventhttpclient never retries a
POST). So: ``--connections`` greenlets, each with one keep-alive connection, each sending its
next single-flight ``POST /predict`` as soon as the last one is answered, until SIGTERM/SIGINT
or ``--max-seconds``. Every request is recorded as (start on the system's monotonic clock,
latency, status; 0 = no HTTP answer), so a parent process can cut the run into windows.

    python -m load.client --url http://127.0.0.1:38080 --out result.json [--connections 64]

Bodies are flights drawn from the served model's vocabularies (``GET /model``), 2,000 of them
fixed by a seed, like the departure board the Locust profile draws single flights from.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence
from urllib.parse import urlsplit

import gevent
import gevent.event
from geventhttpclient import HTTPClient

BOARD_SIZE = 2000


def flight_bodies(feature_spec: dict, count: int = BOARD_SIZE, seed: int = 2017) -> list[bytes]:
    """``count`` single-flight request bodies drawn from the model's own vocabularies."""
    rng = random.Random(seed)
    bodies = []
    for _ in range(count):
        flight = {"OPERA": rng.choice(feature_spec["airlines"]),
                  "TIPOVUELO": rng.choice(feature_spec["flight_types"]),
                  "MES": rng.choice(feature_spec["months"]),
                  "SIGLADES": rng.choice(feature_spec["destinations"])}
        bodies.append(json.dumps({"flights": [flight]}).encode())
    return bodies


def fetch_feature_spec(host: str, port: int, timeout: float) -> dict:
    client = HTTPClient(host, port, connection_timeout=timeout, network_timeout=timeout)
    try:
        response = client.get("/model")
        body = response.read()
        if response.status_code != 200:
            raise RuntimeError(f"GET /model answered {response.status_code}: {body[:200]!r}")
        return json.loads(body)["feature_spec"]
    finally:
        client.close()


class Recorder:
    """Every request's start, latency and status, in three flat lists (cheap to append)."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.latencies: list[float] = []
        self.statuses: list[int] = []
        self.errors: Counter[str] = Counter()
        # The first few failures in full (when, what), to match against the server logs.
        self.samples: list[tuple[float, str]] = []

    def failed(self, started: float, what: str) -> None:
        if len(self.samples) < 20:
            self.samples.append((started, what))

    def as_dict(self) -> dict:
        return {"starts": self.starts, "latencies": self.latencies, "statuses": self.statuses,
                "errors": dict(self.errors), "samples": self.samples,
                # Add to a monotonic time to get the wall clock the server logs use.
                "wall_minus_monotonic": time.time() - time.monotonic()}


def connection_loop(host: str, port: int, bodies: Sequence[bytes], offset: int,
                    stop: gevent.event.Event, recorder: Recorder, timeout: float) -> None:
    """One client connection: request after request until ``stop``; reconnects after a failure."""
    headers = {"Content-Type": "application/json"}
    client = HTTPClient(host, port, connection_timeout=timeout, network_timeout=timeout)
    index = offset
    while not stop.is_set():
        body = bodies[index % len(bodies)]
        index += 1
        started = time.monotonic()
        status = 0
        try:
            response = client.post("/predict", body=body, headers=headers)
            answer = response.read()
            status = response.status_code
            if status == 200 and not answer.startswith(b'{"predictions"'):
                recorder.errors["200 without predictions"] += 1
                recorder.failed(started, f"200 without predictions: {answer[:200]!r}")
                status = -1
            elif status != 200:
                recorder.failed(started, f"HTTP {status}: {answer[:200]!r}")
        except Exception as exc:  # every transport failure counts, by kind
            recorder.errors[type(exc).__name__] += 1
            recorder.failed(started, f"{type(exc).__name__}: {exc}"[:300])
            client.close()
            client = HTTPClient(host, port, connection_timeout=timeout, network_timeout=timeout)
        recorder.starts.append(started)
        recorder.latencies.append(time.monotonic() - started)
        recorder.statuses.append(status)
        if status != 200 and status > 0:
            recorder.errors[f"HTTP {status}"] += 1
    client.close()


def run(url: str, connections: int, max_seconds: float, timeout: float) -> Recorder:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    bodies = flight_bodies(fetch_feature_spec(host, port, timeout))
    stop = gevent.event.Event()
    gevent.signal_handler(signal.SIGTERM, stop.set)
    gevent.signal_handler(signal.SIGINT, stop.set)
    recorder = Recorder()
    step = len(bodies) // max(connections, 1)
    loops = [gevent.spawn(connection_loop, host, port, bodies, i * step, stop, recorder, timeout)
             for i in range(connections)]
    stop.wait(max_seconds)
    stop.set()
    # Requests in flight finish (each bounded by the timeout) and are counted.
    gevent.joinall(loops, timeout=timeout * 3 + 5)
    return recorder


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:38080")
    parser.add_argument("--out", required=True, help="JSON file for the per-request records")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--max-seconds", type=float, default=300.0,
                        help="stop on its own after this long (SIGTERM stops it earlier)")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="connect and read timeout per request, seconds")
    args = parser.parse_args(argv)
    recorder = run(args.url, args.connections, args.max_seconds, args.timeout)
    with open(args.out, "w") as out:
        json.dump(recorder.as_dict(), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
