"""Gunicorn settings: `make serve`, the Docker image and the tests all start exactly this.

Every value can be overridden by the environment variable named beside it (README:
Configuration). Workers are gevent, so one worker holds thousands of idle or slow connections
while the CPU work (validation, encoding, one XGBoost call) runs between them.
"""

import os

# XGBoost/OpenMP must not start a thread pool per worker on a 2-core box: one worker per core,
# one thread per worker. Set before any worker imports xgboost.
os.environ.setdefault("OMP_NUM_THREADS", "1")

wsgi_app = "flask_app.wsgi:app"
bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"

# Default: one worker per core. The work per request is CPU-bound, so more workers than cores
# only add context switches (measured in `make bench`, README: Performance).
workers = int(os.environ.get("WEB_CONCURRENCY", os.cpu_count() or 1))
worker_class = "gevent"
# Connections one worker holds at once; past this Gunicorn stops accepting, so keep it well
# above the challenge's 1,000 simultaneous users per worker.
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "4000"))
backlog = 4096

# Each worker builds the app (and loads the model) after the fork: no shared OpenMP state.
preload_app = False
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "20"))
keepalive = 5

accesslog = os.environ.get("ACCESS_LOG", "-") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
proc_name = "scl-delay"

# Gunicorn's control socket defaults to one fixed path per user, so two servers (tests, a
# blue/green pair) would fight over it; SIGHUP/SIGTERM cover what we need from it.
control_socket_disable = os.environ.get("GUNICORN_CONTROL_SOCKET", "") == ""
if not control_socket_disable:
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]
