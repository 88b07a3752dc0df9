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
import time

from flask import Flask, Response, g, request
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


def record_predictions(count: int, delayed: int) -> None:
    """Count one successful /predict of ``count`` flights, ``delayed`` of them over threshold."""
    FLIGHTS_SCORED.inc(count)
    BATCH_SIZE.observe(count)
    if delayed:
        PREDICTIONS.labels("delayed").inc(delayed)
    if count - delayed:
        PREDICTIONS.labels("on_time").inc(count - delayed)


def init_app(app: Flask, model_version: str | None) -> None:
    """Register the request hooks and ``GET /metrics``; publish the served model version."""
    # One process serves one model: drop a previous app's version (tests build many apps in
    # one process; a Gunicorn worker builds exactly one, and the library cannot clear there).
    if not multiprocess_dir():
        MODEL_INFO.clear()
    if model_version is not None:
        MODEL_INFO.labels(model_version).set(1)
    # Pre-create the outcome series so a scrape shows both at 0 before the first prediction.
    PREDICTIONS.labels("delayed")
    PREDICTIONS.labels("on_time")

    @app.before_request
    def _start_timer() -> None:
        g.metrics_start = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        rule = request.url_rule
        route = rule.rule if rule is not None else UNMATCHED
        if route == "/metrics":
            # Scrapes are not traffic: counting them would make every scrape change the data.
            return response
        method = request.method
        REQUESTS.labels(route, method, str(response.status_code)).inc()
        started = g.get("metrics_start")
        if started is not None:
            LATENCY.labels(route, method).observe(time.perf_counter() - started)
        # The predict view leaves these on ``g`` once it has validated and scored the flights.
        delayed = g.get("delayed")
        if delayed is not None and response.status_code == 200:
            record_predictions(g.batch_size, delayed)
        return response

    @app.get("/metrics")
    def metrics() -> Response:
        """Prometheus scrape endpoint (text exposition format)."""
        return Response(exposition(), content_type=CONTENT_TYPE_LATEST)
