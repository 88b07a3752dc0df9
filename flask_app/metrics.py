"""Prometheus metrics: request counts and latency, flights scored, batch sizes, model version.

Under Gunicorn every worker is its own process, so a plain in-memory registry would answer a
scrape with whichever worker happened to take it. ``prometheus_client``'s multiprocess mode
keeps each worker's values in memory-mapped files in ``PROMETHEUS_MULTIPROC_DIR`` (created by
gunicorn.conf.py before any worker starts) and ``/metrics`` sums them at scrape time. The mode
is chosen when ``prometheus_client`` is first imported, which is why the directory must be in
the environment before then; without it (Flask's test client, ``flask run``) the default
in-process registry is used and the same metric objects work unchanged.

Counters and histograms of a dead worker stay in the sum (the library keeps their files, so
totals never go backwards when a worker is replaced); the model-info gauge is a *live* gauge, so
Gunicorn's ``child_exit`` hook removes a dead worker's value and, after a reload, only the
versions that live workers serve are reported.
"""

from __future__ import annotations

import os

from flask import Flask, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter("scl_delay_http_requests_total", "HTTP requests answered",
                   ["route", "method", "status"])
# Latency buckets: a single prediction takes ~1 ms, a 1,000-flight batch tens of ms.
LATENCY = Histogram("scl_delay_http_request_duration_seconds",
                    "Time from the request reaching Flask to the response leaving it",
                    ["route", "method"],
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                             2.5, 5.0))
FLIGHTS_SCORED = Counter("scl_delay_flights_scored_total",
                         "Flights scored in successful /predict requests")
BATCH_SIZE = Histogram("scl_delay_predict_batch_size",
                       "Flights per successful /predict request",
                       buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000))
PREDICTIONS = Counter("scl_delay_predictions_total",
                      "Predictions by outcome (delayed = probability >= threshold)",
                      ["outcome"])
# Booster calls vs rows: rows/calls is how many flights share one XGBoost call on average
# (flask_app/coalesce.py); near 1 under light load, tens under heavy load.
BOOSTER_CALLS = Counter("scl_delay_booster_calls_total", "XGBoost prediction calls made")
BOOSTER_ROWS = Counter("scl_delay_booster_rows_total", "Flights passed to XGBoost prediction calls")
# The same for ONNX Runtime, which scores the small calls when the model has a fast path
# (flask_app/fast_path.py): together they count every flight scored.
FAST_PATH_CALLS = Counter("scl_delay_fast_path_calls_total",
                          "ONNX Runtime prediction calls made (calls of few flights)")
FAST_PATH_ROWS = Counter("scl_delay_fast_path_rows_total",
                         "Flights passed to ONNX Runtime prediction calls")
# Repeats answered from flask_app/answers.py; against flights scored, the cache's hit rate.
ANSWERS_REUSED = Counter("scl_delay_answers_reused_total",
                         "Single-flight answers served again for a repeated request body")
# 'livesum': each live worker contributes 1 for the version it serves, so the value is the
# number of workers serving that version, and a retired worker's 1 disappears with it.
MODEL_INFO = Gauge("scl_delay_model_info",
                   "Workers serving each model version (1 per live worker)",
                   ["version"], multiprocess_mode="livesum")

UNMATCHED = "unmatched"


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def exposition() -> bytes:
    """The text format for a scrape: every worker's values in multiprocess mode."""
    if multiprocess_dir():
        # A fresh registry per scrape is what the library documents: it reads the files now.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def record_request(route: str, method: str, status: int, seconds: float | None,
                   batch_size: int | None, delayed: int | None) -> None:
    """Count one answered request (flask_app/observe.py calls this once per request).

    ``batch_size``/``delayed`` are given for a successful /predict only. Labelled children are
    looked up once and kept: ``labels()`` validates, stringifies and locks on every call.
    """
    if route == "/metrics":
        # Scrapes are not traffic: counting them would make every scrape change the data.
        return
    key = (route, method, status)
    children = _CHILDREN.get(key)
    if children is None:
        children = _CHILDREN[key] = (REQUESTS.labels(route, method, str(status)),
                                     LATENCY.labels(route, method))
    children[0].inc()
    if seconds is not None:
        children[1].observe(seconds)
    if batch_size is not None and delayed is not None:
        FLIGHTS_SCORED.inc(batch_size)
        BATCH_SIZE.observe(batch_size)
        if delayed:
            _OUTCOMES["delayed"].inc(delayed)
        if batch_size - delayed:
            _OUTCOMES["on_time"].inc(batch_size - delayed)


# (route, method, status) -> (request counter, latency histogram); a handful of keys, bounded
# by the app's routes, methods and statuses.
_CHILDREN: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
_OUTCOMES = {outcome: PREDICTIONS.labels(outcome) for outcome in ("delayed", "on_time")}


def init_app(app: Flask, model_version: str | None) -> None:
    """Publish the served model version and add ``GET /metrics`` (flask_app/observe.py counts
    the requests)."""
    # One process serves one model: drop a previous app's version (tests build many apps in
    # one process; a Gunicorn worker builds exactly one, and the library cannot clear there).
    if not multiprocess_dir():
        MODEL_INFO.clear()
    if model_version is not None:
        MODEL_INFO.labels(model_version).set(1)

    @app.get("/metrics")
    def metrics() -> Response:
        """Prometheus scrape endpoint (text exposition format)."""
        return Response(exposition(), content_type=CONTENT_TYPE_LATEST)
