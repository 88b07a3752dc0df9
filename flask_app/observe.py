"""One pair of request hooks for everything that watches requests.

The JSON request log (flask_app/request_log.py), the Prometheus metrics (flask_app/metrics.py)
and the two identifying response headers (``X-Request-ID``, ``X-Worker-PID``) all need the same
facts about a request: when it started, its route, method and status, and how many flights it
scored. Each registered Flask hook has a fixed cost (Flask checks whether it is a coroutine,
sends signals, and every ``request``/``g`` access goes through a context-local proxy), and with
one hook pair per concern the hooks were about a third of a ``/health`` request's CPU. Here the
facts are gathered once, with each proxy resolved once, and handed to the log and the metrics.
"""

from __future__ import annotations

import os
import time

from flask import Flask, Response, g, request

from flask_app import metrics, request_log

REQUEST_ID_HEADER = request_log.REQUEST_ID_HEADER
WORKER_PID_HEADER = "X-Worker-PID"
UNMATCHED = metrics.UNMATCHED


def init_app(app: Flask, model_version: str | None) -> None:
    """Register the hooks; ``model_version`` is what this app serves for its whole life."""

    @app.before_request
    def _begin() -> None:
        scope = g._get_current_object()
        scope.request_id = request_log.request_id_from(request.headers.get(REQUEST_ID_HEADER))
        scope.started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        scope = g._get_current_object()
        req = request._get_current_object()
        started = getattr(scope, "started", None)
        seconds = time.perf_counter() - started if started is not None else None
        request_id = getattr(scope, "request_id", None) or request_log.new_request_id()
        # Read per request, not at start-up: right even for an app built before a fork. It
        # tells a client, a load test or the real-server test which worker answered.
        pid = os.getpid()
        headers = response.headers
        headers[REQUEST_ID_HEADER] = request_id
        headers[WORKER_PID_HEADER] = str(pid)

        rule = req.url_rule
        route = rule.rule if rule is not None else UNMATCHED
        status = response.status_code
        # The predict view leaves these on ``g`` once it has validated and scored the flights.
        batch_size = getattr(scope, "batch_size", None)
        delayed = getattr(scope, "delayed", None)
        metrics.record_request(route, req.method, status, seconds,
                               batch_size if status == 200 else None, delayed)
        if not request_log.logs_requests():
            return response
        request_log.log_request(
            request_id, req.method, route, req.path, status,
            # Whole microseconds, as milliseconds: a third of the cost of round(x, 3).
            int(seconds * 1e6) / 1000 if seconds is not None else None,
            batch_size, pid, model_version)
        return response
