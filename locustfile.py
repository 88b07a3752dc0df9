"""Traffic for the SCL delay service that looks like SCL's real departures.

Flights are drawn with the real frequencies of routes (airline x flight type x destination),
months, hours and minutes from ``load/traffic_profile.json`` (aggregate counts built by
``python -m load.profile``; never raw rows). At test start the profile is narrowed to what the
served model accepts (``GET /model`` -> ``feature_spec``), so the same file drives the real
model and the tiny synthetic one the test suite serves.

The default mix (no ``--tags``): mostly single flights, some batches, a small share of invalid
requests that must be answered 400 (counted as successes only then), and ``/health``.
Tags pick one kind for a scenario: ``single``, ``batch``, ``invalid``, ``health`` (``predict``
covers the first three). Extra options (also in the web UI):

  --batch-size N    fix the batch size (0: draw it from BATCH_SIZES, the default mix)
  --max-wait S      think time drawn from [0, S] seconds between a user's requests (0: none)
  --min-requests N  exit non-zero unless at least N requests were made (``make stress``)
  --schedule-size N draw single flights from N departures fixed at test start (default 2,000:
                    clients ask about the flights on the board, the same ones many times);
                    0 draws every flight afresh, so nearly every single flight is new
  --schedule-seed N which board: the same seed gives the same departures in every run

    locust -f locustfile.py --host http://127.0.0.1:8000            # web UI on :8089
    locust -f locustfile.py --headless -u 64 -r 64 -t 30s --tags single
"""

from __future__ import annotations

import gc
import json
import logging
import random
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any

import gevent
from locust import FastHttpUser, events, tag, task
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import WorkerRunner

PROFILE_PATH = Path(__file__).resolve().parent / "load" / "traffic_profile.json"

# Which optional inputs a client sends (a guess at real clients: most know the departure time
# and destination; some only the three required fields).
INPUT_MIX: tuple[tuple[tuple[str, ...], int], ...] = (
    (("Fecha-I", "SIGLADES"), 70), (("Fecha-I",), 10), (("SIGLADES",), 10), ((), 10))
# Batch sizes of the default mix and how often each is sent.
BATCH_SIZES: tuple[tuple[int, int], ...] = ((10, 50), (100, 35), (1000, 15))
# The departure board single flights are drawn from (--schedule-size/-seed; see Traffic.plan).
SCHEDULE_SIZE = 2000
SCHEDULE_SEED = 2017
DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # 2017, the data's year
YEAR = 2017


@dataclass
class Sampler:
    """Weighted draws; cumulative weights are computed once, not per call."""

    values: list[Any]
    cum_weights: list[int]

    @classmethod
    def of(cls, pairs: list[tuple[Any, int]]) -> Sampler:
        pairs = [(value, weight) for value, weight in pairs if weight > 0]
        if not pairs:
            raise ValueError("nothing to draw from")
        return cls([v for v, _ in pairs], list(accumulate(w for _, w in pairs)))

    def draw(self, rng: random.Random | None = None) -> Any:
        return (rng or random).choices(self.values, cum_weights=self.cum_weights)[0]


class Traffic:
    """Flights drawn from the profile, restricted to the served model's vocabularies."""

    def __init__(self, profile: dict[str, Any], feature_spec: dict[str, Any]) -> None:
        airlines = set(feature_spec["airlines"])
        destinations = set(feature_spec["destinations"])
        kinds = set(feature_spec["flight_types"])
        routes = [((a, k, d), n) for a, k, d, n in profile["routes"]
                  if a in airlines and k in kinds and d in destinations]
        if not routes:
            # A model whose vocabulary shares no route with the profile (a synthetic one):
            # stay valid by pairing its own airlines and destinations uniformly.
            routes = [((a, k, d), 1) for a in sorted(airlines) for k in sorted(kinds)
                      for d in sorted(destinations)]
        self.routes = Sampler.of(routes)
        months = set(feature_spec["months"])
        self.months = Sampler.of([(int(m), n) for m, n in profile["months"].items()
                                  if int(m) in months])
        self.hours = Sampler.of([(int(h), n) for h, n in profile["hours"].items()])
        self.minutes = Sampler.of([(int(m), n) for m, n in profile["minutes"].items()])
        self.inputs = Sampler.of(list(INPUT_MIX))
        self.batch_sizes = Sampler.of(list(BATCH_SIZES))
        self.airlines = sorted(airlines)
        self.schedule: list[bytes] = []
        self._batches: dict[int, list[bytes]] = {}

    def plan(self, size: int, seed: int = SCHEDULE_SEED) -> None:
        """Fix the departures single-flight requests ask about (0: none, every draw is new).

        The board is drawn from its own generator seeded with ``seed``, so every Locust run (a
        warm-up and the runs measured after it, each worker process of a distributed run) asks
        about the same departures, as clients of a real board would, and a warm-up warms what
        is then measured. Bodies are serialized once here, so that sending one costs the load
        generator a random pick rather than a draw plus a JSON encoding: on a machine shared
        with the server, every microsecond Locust spends is one the server does not get.
        """
        rng = random.Random(seed)
        self.schedule = [_body(self.flight(rng)) for _ in range(size)]

    def departure(self) -> bytes:
        """A single-flight request: one of the scheduled departures, if there is a schedule."""
        return random.choice(self.schedule) if self.schedule else _body(self.flight())

    def batch(self, size: int) -> bytes:
        """A ``{"flights": [...]}`` body: one of BATCH_POOL drawn once per size, then reused.

        A 1,000-flight body takes Locust ~15 ms to draw and encode, which would otherwise be
        taken from the server it measures; the service caches nothing for batches, so reusing
        bodies does not flatter it.
        """
        pool = self._batches.get(size)
        if pool is None:
            pool = [_body({"flights": [self.flight() for _ in range(size)]})
                    for _ in range(BATCH_POOL)]
            self._batches[size] = pool
        return random.choice(pool)

    def flight(self, rng: random.Random | None = None) -> dict[str, Any]:
        """One flight; draws from ``rng`` if given, else from the module's generator."""
        airline, kind, destination = self.routes.draw(rng)
        month = self.months.draw(rng)
        flight: dict[str, Any] = {"OPERA": airline, "TIPOVUELO": kind, "MES": month}
        optional = self.inputs.draw(rng)
        if "Fecha-I" in optional:
            day = (rng or random).randint(1, DAYS_IN_MONTH[month - 1])
            flight["Fecha-I"] = (f"{YEAR}-{month:02d}-{day:02d} "
                                 f"{self.hours.draw(rng):02d}:{self.minutes.draw(rng):02d}:00")
        if "SIGLADES" in optional:
            flight["SIGLADES"] = destination
        return flight

    def invalid(self) -> tuple[str, Any]:
        """A request the service must refuse with 400, and the field its error must name."""
        flight = self.flight()
        kind = random.randrange(5)
        if kind == 0:
            flight["OPERA"] = "Pan Am"
            return "OPERA", flight
        if kind == 1:
            flight["MES"] = 13
            return "MES", flight
        if kind == 2:
            del flight["TIPOVUELO"]
            return "TIPOVUELO", flight
        if kind == 3:
            flight["Fecha-I"] = "2017-02-30 10:00"
            flight["MES"] = 2
            return "Fecha-I", flight
        return "flights", {"flights": []}


TRAFFIC: Traffic | None = None
# Why test start could not load it (no service at --host): users then stop quietly.
NO_SERVICE: str | None = None
# Distinct bodies kept per batch size (see Traffic.batch).
BATCH_POOL = 16


JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
# Each prediction object carries this key exactly once (flask_app/schemas.py PredictionSchema).
PREDICTION_KEY = b'"delay_probability"'


def prediction_count(body: bytes) -> int:
    """How many predictions an answer holds, counted without parsing it.

    Parsing a 1,000-flight answer costs Locust ~1 ms of the CPU it shares with the server it
    measures; counting a key in the bytes is a single C-level scan. The answers' content is the
    test suite's business (tests/service); here a wrong count is what marks a failure.
    """
    return body.count(PREDICTION_KEY)


def expect_predictions(resp: Any, count: int) -> None:
    """Fail a 200 answer that does not hold ``count`` predictions; other statuses already fail
    through Locust's own ``raise_for_status`` when the ``with`` block exits."""
    if resp.status_code != 200:
        return
    found = prediction_count(resp.content or b"")
    if found != count:
        resp.failure(f"expected {count} prediction(s), got {found}")


def _body(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument("--batch-size", type=int, default=0,
                        help="flights per batch request (0: draw from the default mix)")
    parser.add_argument("--max-wait", type=float, default=0.0,
                        help="think time drawn from [0, max-wait] s between requests")
    parser.add_argument("--schedule-size", type=int, default=SCHEDULE_SIZE,
                        help="single flights come from this many fixed departures (0: all new)")
    parser.add_argument("--schedule-seed", type=int, default=SCHEDULE_SEED,
                        help="seed of the departure board (the same in every run by default)")
    parser.add_argument("--min-requests", type=int, default=0,
                        help="exit non-zero unless at least this many requests were made")


@events.test_start.add_listener
def _load_traffic(environment: Environment, **_: Any) -> None:
    """Read the profile and the served model's vocabularies once per (worker) process."""
    global TRAFFIC, NO_SERVICE
    if environment.host is None:
        raise RuntimeError("pass --host (the service's base URL)")
    profile = json.loads(PROFILE_PATH.read_text(encoding="utf-8"))
    # A plain urllib call: this runs before any user exists, outside Locust's statistics.
    import urllib.request

    url = f"{environment.host.rstrip('/')}/model"
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            feature_spec = json.load(resp)["feature_spec"]
    except (OSError, ValueError, KeyError) as error:
        # No service there (or not ours): say so once and end the run, rather than a traceback
        # per user and a run of zero requests.
        _stop_run(environment, f"cannot read the served model from {url} ({error}); is the "
                               "service running? Start it with `make serve`, or point "
                               "--host (TARGET_URL for make) at it")
        return
    TRAFFIC, NO_SERVICE = Traffic(profile, feature_spec), None
    options = environment.parsed_options
    if options:
        TRAFFIC.plan(options.schedule_size, options.schedule_seed)
    else:
        TRAFFIC.plan(SCHEDULE_SIZE)
    # Locust's own ~50,000 start-up objects (its modules, gevent, the profile) never die, yet
    # every full collection walked them: 20-25 ms pauses of the whole load generator, twice in
    # 15 s at 64 users, and each paused response was timed as if the server were slow. Frozen,
    # a full collection takes ~1 ms and Locust's GC time halves (measured with gc.callbacks).
    gc.collect()
    gc.freeze()


def _stop_run(environment: Environment, message: str) -> None:
    """Log ``message`` and end the run: headless, the whole run, with exit code 1; in the web
    UI the test alone, so it can start again once the service is there."""
    global NO_SERVICE
    logging.getLogger("locustfile").error(message)
    NO_SERVICE = message
    runner = environment.runner
    if runner is None:
        return
    if environment.parsed_options and environment.parsed_options.headless:
        environment.process_exit_code = 1
        gevent.spawn(runner.quit)
    else:
        gevent.spawn(runner.stop)


@events.quitting.add_listener
def _enforce_minimum(environment: Environment, **_: Any) -> None:
    """``--min-requests``: a stress run that made too few requests fails like one with errors.

    Judged where all requests are counted: a worker of a distributed run (``--processes``,
    ``--worker``) holds only what it has not yet reported, so it would fail every run."""
    if isinstance(environment.runner, WorkerRunner):
        return
    wanted = environment.parsed_options.min_requests if environment.parsed_options else 0
    made = environment.stats.total.num_requests
    if wanted and made < wanted:
        print(f"FAILED: {made} requests, fewer than --min-requests {wanted}")
        environment.process_exit_code = 1


class FlightClient(FastHttpUser):
    """One client of the service, sending the default mix (or one tag of it)."""

    def wait_time(self) -> float:
        max_wait = self.environment.parsed_options.max_wait if self.environment.parsed_options \
            else 0.0
        return random.uniform(0.0, max_wait) if max_wait > 0 else 0.0

    @property
    def traffic(self) -> Traffic:
        if TRAFFIC is None:
            if NO_SERVICE:
                raise StopUser  # the run is ending, and _load_traffic has said why
            raise RuntimeError("the traffic profile was not loaded at test start")
        return TRAFFIC

    @tag("predict", "single")
    @task(80)
    def single_flight(self) -> None:
        with self.client.post("/predict", data=self.traffic.departure(), headers=JSON_HEADERS,
                              name="/predict [1 flight]", catch_response=True) as resp:
            expect_predictions(resp, 1)

    @tag("predict", "batch")
    @task(8)
    def batch(self) -> None:
        options = self.environment.parsed_options
        size = (options.batch_size if options and options.batch_size
                else self.traffic.batch_sizes.draw())
        with self.client.post("/predict", data=self.traffic.batch(size), headers=JSON_HEADERS,
                              name=f"/predict [batch {size}]", catch_response=True) as resp:
            expect_predictions(resp, size)

    @tag("predict", "invalid")
    @task(2)
    def invalid(self) -> None:
        field, body = self.traffic.invalid()
        with self.client.post("/predict", json=body, name="/predict [invalid -> 400]",
                              catch_response=True) as resp:
            try:
                named = field in resp.json()["error"]["fields"]
            except (ValueError, KeyError, TypeError):
                named = False
            if resp.status_code == 400 and named:
                resp.success()
            else:
                resp.failure(f"expected 400 naming {field!r}, got {resp.status_code}")

    @tag("health")
    @task(10)
    def health(self) -> None:
        self.client.get("/health", name="/health")
