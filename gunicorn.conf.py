"""Gunicorn settings: `make serve`, the Docker image and the tests all start exactly this.

Every value can be overridden by the environment variable named beside it (the README's
configuration table). Workers are gevent, so one worker holds thousands of idle or slow connections
while the CPU work (validation, encoding, one XGBoost call) runs between them.
"""

import contextlib
import gc
import importlib
import importlib.util
import os
import select
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path


def _load_by_path(filename: str, name: str):
    """A module of flask_app/, loaded by path: importing the flask_app package here would pull
    Flask, XGBoost and prometheus_client into the master before it has set up the metrics
    directory (prometheus_client fixes its mode at import) and before any fork."""
    path = Path(__file__).resolve().parent / "flask_app" / filename
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_settings = _load_by_path("config.py", "_scl_delay_settings")
env_int, env_choice, LOG_LEVELS = _settings.env_int, _settings.env_choice, _settings.LOG_LEVELS

# XGBoost imports scikit-learn whenever it is installed (for estimator classes serving never
# uses), and with it SciPy's statistics and pandas: with the dev requirements that was most of
# a worker's start-up and ~90 MiB of its memory. A None entry in sys.modules makes that import
# fail as if the package were absent, which XGBoost handles; workers inherit it at the fork.
sys.modules.setdefault("sklearn", None)
# Likewise SciPy's special functions: XGBoost imports them only for its scikit-learn wrappers
# and plotting, inside a try/except ImportError, and serving uses neither (~0.15 s per process).
sys.modules.setdefault("scipy.special", None)

# XGBoost/OpenMP must not start a thread pool per worker on a 2-core box: one worker per core,
# one thread per worker. Set before any worker imports xgboost.
os.environ.setdefault("OMP_NUM_THREADS", "1")

wsgi_app = "flask_app.wsgi:app"
bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"

# Default: one worker per core. The work per request is CPU-bound and gevent already overlaps
# the waiting, so more workers than cores only add context switches (docs/performance.md).
workers = env_int("WEB_CONCURRENCY", os.cpu_count() or 1)
# gevent's own WSGI server (Gunicorn's "gevent_pywsgi") with a handler that closes keep-alive
# connections once the worker retires, so a SIGHUP reload fails no request
# (flask_app/worker.py says why and what it measured). WORKER_CLASS=gevent selects Gunicorn's
# plain gevent worker instead.
_worker = _load_by_path("worker.py", "_scl_delay_worker")
_conn_share = _worker.conn_share
# A bad KEEPALIVE_REQUESTS, FAIR_YIELD or REQUEST_*_TIMEOUT stops start-up here, with its reason.
_worker.keepalive_requests()
_worker.fair_turns()
_worker.request_timeouts()
worker_class = os.environ.get("WORKER_CLASS") or _worker.RetiringPyWSGIWorker
# Connections one worker holds at once; past this Gunicorn stops accepting. Slow or idle
# clients hold one each until their deadline (REQUEST_HEADER_TIMEOUT), so leave room for
# 10,000 of them on two workers next to normal traffic (docs/reliability.md); each needs a file
# descriptor, so on_starting raises the soft RLIMIT_NOFILE to the hard limit.
worker_connections = env_int("WORKER_CONNECTIONS", 10000)
backlog = 4096

# Each worker builds the app (and loads the model) after the fork: no shared OpenMP state.
preload_app = False
timeout = env_int("GUNICORN_TIMEOUT", 30)
graceful_timeout = env_int("GRACEFUL_TIMEOUT", 20)
# Seconds a keep-alive connection may wait idle for its next request; it also bounds how long
# idle connections keep a retiring worker alive (flask_app/worker.py).
keepalive = env_int("KEEPALIVE", 5)

# Off by default: the app logs one JSON line per request with more in it (request id, route,
# latency, batch size, model version; flask_app/request_log.py). ACCESS_LOG=- turns it back on.
accesslog = os.environ.get("ACCESS_LOG") or None
errorlog = "-"
loglevel = env_choice("LOG_LEVEL", LOG_LEVELS)
proc_name = "scl-delay"

# Gunicorn's control socket defaults to one fixed path per user, so two servers (tests, a
# blue/green pair) would fight over it; SIGHUP/SIGTERM cover what we need from it.
control_socket_disable = os.environ.get("GUNICORN_CONTROL_SOCKET", "") == ""
if not control_socket_disable:
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]

# --- Metrics across workers (flask_app/metrics.py) -------------------------------------------
# prometheus_client chooses multiprocess mode when it is first imported, so the directory must
# be in the environment before any worker starts. This file is read again on SIGHUP; the
# directory is then already set and is kept, so totals survive a reload.
# The directory is made in on_starting (not when this file is read, e.g. by --check-config),
# and removed again if start-up fails.

# --- Model snapshot: reload on SIGHUP without downtime ---------------------------------------
# Workers never load MODEL_DIR itself: they load MODEL_SNAPSHOT_DIR, a copy the master made and
# proved loadable in a short-lived child process, so no booster, XGBoost call or OpenMP thread
# ever exists in the master. On SIGHUP the master re-validates MODEL_DIR before Gunicorn forks
# the new workers; if the new model is corrupt it logs why and keeps the old snapshot, so the
# new workers boot the old model instead of failing to boot (which would make Gunicorn halt the
# whole server).
#
# The child is a fork of the master, not a new interpreter: the master has imported the
# libraries by then (see _preload_libraries), so the check costs the model load alone and no
# second start of Python with its imports before any worker may start.
_CHECK_TIMEOUT_S = 120
_CHILD_SIGNALS = ("SIGHUP", "SIGTERM", "SIGINT", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH",
                  "SIGTTIN", "SIGTTOU", "SIGCHLD")


def _copy_model() -> tuple[Path, str]:
    """Copy MODEL_DIR's files to a new directory; return (MODEL_DIR, the copy)."""
    source = Path(os.environ.get("MODEL_DIR") or "model_artifacts")
    snapshot = tempfile.mkdtemp(prefix="scl-delay-model-")
    try:
        if not source.is_dir():
            raise RuntimeError(f"MODEL_DIR={source} is not a directory")
        for item in source.iterdir():
            if item.is_file():
                shutil.copy2(item, snapshot)
    except BaseException:
        shutil.rmtree(snapshot, ignore_errors=True)
        raise
    return source, snapshot


def _start_check(snapshot: str) -> tuple[int, int]:
    """Fork a child that loads ``snapshot`` as a worker would and writes back ``ok <version>``
    or the reason it failed; return (its pid, the pipe to read that from)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_end)
        return pid, read_end
    # The child: the master's signal handlers are not its own; it must never return.
    status, answer = 1, "the model check ended without an answer"
    try:
        os.close(read_end)
        for name in _CHILD_SIGNALS:
            signal.signal(getattr(signal, name), signal.SIG_DFL)
        here = str(Path(__file__).resolve().parent)
        if here not in sys.path:
            sys.path.insert(0, here)
        from training.artifacts import load_artifact

        answer, status = f"ok {load_artifact(snapshot).version}", 0
    except BaseException as exc:  # every failure is an answer: the master refuses the model
        answer = f"{type(exc).__name__}: {exc}"
    finally:
        try:
            os.write(write_end, answer.encode("utf-8", "replace")[:60000])
        finally:
            os._exit(status)


def _finish_check(pid: int, read_end: int, source: Path) -> str:
    """The checked model's version, or a RuntimeError naming why MODEL_DIR cannot be served
    (a child that crashes, hangs past the timeout or says nothing is a refusal too)."""
    deadline = time.monotonic() + _CHECK_TIMEOUT_S
    chunks: list[bytes] = []
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_end], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                chunks = [f"no answer within {_CHECK_TIMEOUT_S} s".encode()]
                break
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
        with contextlib.suppress(ChildProcessError):  # reaped by Gunicorn's SIGCHLD handling
            os.waitpid(pid, 0)
    answer = b"".join(chunks).decode("utf-8", "replace").strip()
    if answer.startswith("ok "):
        return answer[3:]
    reason = answer.splitlines()[-1] if answer else "(the check died without a word)"
    raise RuntimeError(f"the model in MODEL_DIR={source} cannot be loaded: {reason}")


def _snapshot_model() -> tuple[str, str]:
    """Copy MODEL_DIR's files to a new directory, load the copy; return (path, version)."""
    source, snapshot = _copy_model()
    try:
        return snapshot, _finish_check(*_start_check(snapshot), source)
    except BaseException:
        shutil.rmtree(snapshot, ignore_errors=True)
        raise


# --- Libraries imported once, in the master ----------------------------------------------------
# Every worker imports the same libraries (~1 s of a worker's start on this machine): imported
# once in the master, the forked workers (and the model check) inherit them. Only third-party
# code, and only importing it: no booster is loaded and nothing runs XGBoost or OpenMP, so no
# thread exists in the master to be lost at the fork (OMP_NUM_THREADS=1 is set above, before
# numpy's OpenBLAS reads it). The project's own modules (flask_app, training) are still
# imported by each worker after the fork, so a SIGHUP reload picks up new code; upgrading a
# library needs a restart. prometheus_client picks its multiprocess mode when imported, so it
# is imported only after on_starting has set PROMETHEUS_MULTIPROC_DIR.
_EARLY_LIBRARIES = ("numpy", "xgboost")  # what the model check needs: imported before its fork
_LATE_LIBRARIES = ("flask", "marshmallow", "apispec", "apispec.ext.marshmallow", "holidays",
                   "holidays.countries", "gevent.pywsgi", "prometheus_client",
                   "swagger_ui_bundle")


def _import_all(names: tuple[str, ...]) -> None:
    for name in names:
        importlib.import_module(name)


def on_starting(server):
    """Master start: clear stale metrics files, import the libraries, snapshot the model (a bad
    one stops start-up), make the connection-share table the workers balance by, raise the
    open-files limit (soft, up to the hard limit, at most 65,536)."""
    import resource

    # Room for 2 x WORKER_CONNECTIONS and more; capped, as some libraries size tables by it.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    # Kept on the arbiter, which outlives SIGHUP (this file is read again then).
    server.scl_share_table = _conn_share.ShareTable()
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="scl-delay-metrics-")
        os.environ["SCL_DELAY_OWNS_METRICS_DIR"] = "1"
    metrics_dir = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    metrics_dir.mkdir(parents=True, exist_ok=True)
    for stale in metrics_dir.glob("*.db"):
        stale.unlink()
    try:
        _import_all(_EARLY_LIBRARIES)
        source, path = _copy_model()
        os.environ["MODEL_SNAPSHOT_DIR"] = path  # on_exit removes it if the check refuses
        check = _start_check(path)
        # While the child loads the model, the master imports the rest (two cores).
        _import_all(_LATE_LIBRARIES)
        version = _finish_check(*check, source)
    except BaseException:
        # Gunicorn calls on_exit only for a server that started; clean up what we made.
        on_exit(server)
        raise
    # Everything imported so far is shared with the workers: out of the collector's view, so
    # a worker's collections neither scan it nor copy its pages (gc.freeze's documented use).
    gc.freeze()
    server.log.info("serving model version %s from snapshot %s", version, path)


def on_reload(server):
    """SIGHUP: switch new workers to MODEL_DIR's model only if it loads; else keep the old one."""
    current = os.environ.get("MODEL_SNAPSHOT_DIR", "")
    try:
        path, version = _snapshot_model()
    except Exception as exc:  # any failure must leave the old model serving
        server.log.error("model reload refused, new workers keep the previous model (%s): %s",
                         current, exc)
        return
    os.environ["MODEL_SNAPSHOT_DIR"] = path
    # Keep one previous snapshot: a worker forked just before this switch may still be reading
    # it; the one before that has been loaded by every worker that will ever use it.
    older = os.environ.get("SCL_DELAY_PREVIOUS_SNAPSHOT")
    if older and older != current:
        shutil.rmtree(older, ignore_errors=True)
    os.environ["SCL_DELAY_PREVIOUS_SNAPSHOT"] = current
    server.log.info("model reload: new workers serve version %s from snapshot %s",
                    version, path)


def pre_fork(server, worker):
    """Give the worker about to be forked a free slot in the connection-share table."""
    table = getattr(server, "scl_share_table", None)
    if table is not None:
        in_use = {getattr(w, "scl_share_slot", None) for w in server.WORKERS.values()}
        worker.scl_share_table = table
        worker.scl_share_slot = table.assign(in_use)


def child_exit(server, worker):
    """Drop a dead worker's live gauges (the model version it served) from /metrics, and its
    connections from the share table (a worker killed with -9 could not do it itself)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
    slot = getattr(worker, "scl_share_slot", None)
    if slot is not None:
        server.scl_share_table.clear(slot)


def on_exit(server):
    """Remove the directories this master created."""
    for name in ("MODEL_SNAPSHOT_DIR", "SCL_DELAY_PREVIOUS_SNAPSHOT"):
        if os.environ.get(name):
            shutil.rmtree(os.environ[name], ignore_errors=True)
    if os.environ.get("SCL_DELAY_OWNS_METRICS_DIR"):
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def post_worker_init(worker):
    """Move everything the worker built at start-up (Flask, schemas, model wrapper) out of the
    garbage collector's view: collections then scan only per-request objects, which keeps
    their pauses, and the latency tail under load, short."""
    import gc

    gc.collect()
    gc.freeze()
