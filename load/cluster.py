"""``make cluster``: N instances of the service behind nginx, on this machine, in the foreground.

Each instance is exactly what ``make serve`` runs (``gunicorn --config gunicorn.conf.py``) with
its own PORT, so it is its own Gunicorn master with its own workers; nginx (Debian's package)
balances over them with the configuration rendered from ``deploy/nginx/nginx.conf.j2``:
keep-alive to the instances, passive health checks, and retry of a failed attempt on the next
instance. Everything runs as child processes with their files in one temporary directory
(nginx's pid and temp files too), so no root configuration is touched and stopping the cluster
leaves nothing behind. ``load/failover.py`` drives the same :class:`Cluster` through restarts
and kills.

    python -m load.cluster [--instances 3] [--workers 1] [--base-port 38001] [--port 38080]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

REPO = Path(__file__).resolve().parents[1]
NGINX_TEMPLATE = REPO / "deploy" / "nginx" / "nginx.conf.j2"
# The configuration docker-compose.yml mounts: the template rendered for its three services.
COMPOSE_NGINX_CONF = REPO / "deploy" / "nginx" / "compose.conf"
COMPOSE_UPSTREAMS = ("api1:8000", "api2:8000", "api3:8000")
GUNICORN = Path(sys.executable).with_name("gunicorn")


def nginx_fail_timeout() -> float:
    """Seconds nginx keeps a failed instance out of the rotation (``fail_timeout`` in the
    template, read from there so the drills and the configuration cannot disagree)."""
    found = re.findall(r"fail_timeout=(\d+)s", NGINX_TEMPLATE.read_text())
    if len(set(found)) != 1:
        raise ValueError(f"expected one fail_timeout in {NGINX_TEMPLATE}, found {found}")
    return float(found[0])


BALANCING = ("least_conn", "round_robin")


def render_nginx(upstreams: Sequence[str], listen: str, runtime_dir: str,
                 worker_processes: str = "1", balancing: str = "least_conn") -> str:
    """The nginx configuration for these instances; an unknown template variable is an error.
    ``balancing="round_robin"`` (nginx's default) exists for comparing the two."""
    if balancing not in BALANCING:
        raise ValueError(f"balancing must be one of {BALANCING}, got {balancing!r}")
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(NGINX_TEMPLATE.parent),
                                     undefined=jinja2.StrictUndefined,
                                     keep_trailing_newline=True, autoescape=False)
    template = environment.get_template(NGINX_TEMPLATE.name)
    return template.render(upstreams=list(upstreams), listen=listen, runtime_dir=runtime_dir,
                           worker_processes=worker_processes, balancing=balancing)


def render_compose_nginx() -> str:
    """deploy/nginx/compose.conf as it must be (a test compares; ``--write-compose-conf``)."""
    return render_nginx(COMPOSE_UPSTREAMS, listen="8080", runtime_dir="/tmp",
                        worker_processes="auto")


def get_status(url: str, timeout: float = 1.0) -> int | None:
    """The HTTP status of GET ``url``, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return None


def answering_pid(url: str, timeout: float = 1.0) -> int | None:
    """The ``X-Worker-PID`` of a 200 answer to GET ``url``, or None."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            pid = response.headers.get("X-Worker-PID")
            return int(pid) if response.status == 200 and pid else None
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError, ValueError):
        return None


def stop_process(process: subprocess.Popen, sig: int, timeout: float) -> None:
    """Send ``sig`` and wait; past ``timeout``, SIGKILL the process's whole group."""
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with_group_killed(process)


def with_group_killed(process: subprocess.Popen) -> None:
    """SIGKILL whatever is left of the process group the process leads (workers included)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


def worker_pids(instance: Instance) -> set[int]:
    """The pids of the instance's Gunicorn workers (children of its master)."""
    process = instance.process
    if process is None or process.poll() is not None:
        return set()
    try:
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text()
    except OSError:
        return set()
    return {int(pid) for pid in children.split()}


@dataclass
class Instance:
    """One Gunicorn master (and its workers) on one port."""

    index: int
    port: int
    log_path: Path
    tmp_dir: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Cluster:
    """N instances and nginx in front; a context manager that always stops all of them."""

    instances: int = 3
    workers: int = 1
    base_port: int = 38001
    # Explicit instance ports (tests take free ones); default base_port, base_port + 1, ...
    instance_ports: Sequence[int] | None = None
    port: int = 38080
    model_dir: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    nginx: str = "nginx"
    balancing: str = "least_conn"
    ready_timeout: float = 90.0
    keep_files: bool = False
    runtime_dir: Path = field(init=False)
    members: list[Instance] = field(init=False, default_factory=list)
    nginx_process: subprocess.Popen | None = field(init=False, default=None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Cluster:
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="scl-delay-cluster-"))
        # Debian's nginx started by root runs its workers as "nobody": they must reach the
        # temp files under this directory.
        self.runtime_dir.chmod(0o755)
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # --- instances -------------------------------------------------------------------------
    def start(self) -> None:
        ports = list(self.instance_ports or range(self.base_port,
                                                  self.base_port + self.instances))
        if len(ports) != self.instances:
            raise ValueError(f"{self.instances} instances but {len(ports)} ports: {ports}")
        for index, port in enumerate(ports):
            tmp_dir = self.runtime_dir / f"instance-{index + 1}"
            tmp_dir.mkdir()
            self.members.append(Instance(index, port,
                                         self.runtime_dir / f"instance-{index + 1}.log", tmp_dir))
        for instance in self.members:
            self.start_instance(instance, wait=False)
        for instance in self.members:
            self.wait_ready(instance)
        self.start_nginx()

    def start_instance(self, instance: Instance, wait: bool = True) -> None:
        """``make serve``'s command with this instance's PORT, in its own process group."""
        env = {**os.environ, **self.env, "PORT": str(instance.port), "HOST": "127.0.0.1",
               "WEB_CONCURRENCY": str(self.workers),
               # The metrics and model-snapshot directories Gunicorn makes go under here, so
               # even an instance killed with SIGKILL leaves nothing behind after stop().
               "TMPDIR": str(instance.tmp_dir)}
        if self.model_dir:
            env["MODEL_DIR"] = str(self.model_dir)
        with instance.log_path.open("ab") as log:
            instance.process = subprocess.Popen(
                [str(GUNICORN), "--config", "gunicorn.conf.py"], cwd=REPO, env=env,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if wait:
            self.wait_ready(instance)

    def wait_ready(self, instance: Instance) -> float:
        """Seconds until the instance answers GET /ready with 200 (error if it dies or stalls)."""
        started = time.monotonic()
        while time.monotonic() - started < self.ready_timeout:
            if instance.process is None or instance.process.poll() is not None:
                raise RuntimeError(f"instance {instance.index + 1} exited:\n"
                                   f"{self.log_tail(instance)}")
            if get_status(f"{instance.url}/ready") == 200:
                return time.monotonic() - started
            time.sleep(0.05)
        raise RuntimeError(f"instance {instance.index + 1} not ready after "
                           f"{self.ready_timeout:.0f}s:\n{self.log_tail(instance)}")

    def wait_routed(self, instance: Instance, timeout: float) -> float:
        """Seconds until nginx hands ``instance`` a request again: an answer through nginx
        comes from one of its workers. nginx takes back an instance it marked down only once
        ``fail_timeout`` has passed and a live request got through, so ready is not yet routed;
        on a loaded machine that took longer than any fixed wait (docs/deployment.md)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            pid = answering_pid(f"{self.url}/health")
            if pid is not None and pid in worker_pids(instance):
                return time.monotonic() - started
            time.sleep(0.05)
        raise RuntimeError(f"nginx routed nothing to instance {instance.index + 1} within "
                           f"{timeout:.0f}s of its /ready")

    def stop_instance(self, instance: Instance, timeout: float = 40.0) -> None:
        """Graceful stop: SIGTERM, Gunicorn lets requests in flight finish, then exits."""
        if instance.process is not None:
            stop_process(instance.process, signal.SIGTERM, timeout)

    def kill_instance(self, instance: Instance) -> None:
        """``kill -9`` of the master and every worker at once (the whole process group)."""
        if instance.process is not None:
            with_group_killed(instance.process)

    def log_tail(self, instance: Instance, chars: int = 3000) -> str:
        try:
            return instance.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    # --- nginx ------------------------------------------------------------------------------
    def start_nginx(self) -> None:
        if shutil.which(self.nginx) is None:
            raise RuntimeError(f"{self.nginx} not found: apt-get install -y nginx")
        conf = self.runtime_dir / "nginx.conf"
        conf.write_text(render_nginx([f"127.0.0.1:{m.port}" for m in self.members],
                                     listen=f"127.0.0.1:{self.port}",
                                     runtime_dir=str(self.runtime_dir),
                                     balancing=self.balancing))
        log_path = self.nginx_log
        # -e: the error log before the configuration is read (the compiled-in default is under
        # /var/log, which needs root); -p: relative paths resolve here.
        with log_path.open("ab") as log:
            self.nginx_process = subprocess.Popen(
                [self.nginx, "-p", str(self.runtime_dir), "-c", str(conf), "-e", "stderr"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.nginx_process.poll() is not None:
                raise RuntimeError(f"nginx exited:\n{log_path.read_text(errors='replace')}")
            if get_status(f"{self.url}/ready") == 200:
                return
            time.sleep(0.05)
        raise RuntimeError(f"nginx not answering on {self.url}:\n"
                           f"{log_path.read_text(errors='replace')}")

    @property
    def nginx_log(self) -> Path:
        return self.runtime_dir / "nginx.log"

    def upstream_errors(self, since: int = 0) -> tuple[int, Counter[str]]:
        """nginx's logged failed attempts after byte ``since`` of its log, by kind; and the
        log's size now. One met before any of the answer reached the client was passed on to the
        next instance (or, when none was left, answered 503 by nginx itself), so a drill that
        failed no request but shows none here did not exercise failover at all."""
        try:
            text = self.nginx_log.read_bytes()
        except OSError:
            return since, Counter()
        kinds: Counter[str] = Counter()
        for line in text[since:].decode(errors="replace").splitlines():
            if "[error]" not in line:
                continue
            message = line.split("[error]", 1)[1]
            # Keep the phase ("while reading response header": nothing reached the client yet, so
            # nginx retried; "while reading upstream": the answer had begun, so it could not).
            message = re.sub(r"^\s*\d+#\d+: \*\d+ ", "", message).split(", client:")[0]
            kinds[message.strip()] += 1
        return len(text), kinds

    # --- all --------------------------------------------------------------------------------
    def stop(self) -> None:
        """nginx first (graceful, SIGQUIT), then every instance; then the temporary files."""
        if self.nginx_process is not None:
            stop_process(self.nginx_process, signal.SIGQUIT, 10)
        for instance in self.members:
            self.stop_instance(instance)
        if self.keep_files:
            print(f"cluster files kept in {self.runtime_dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)


def interrupt(signum, frame) -> None:
    """SIGTERM (a supervisor, ``kill``) stops the cluster the way Ctrl-C does."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=int(os.environ.get("INSTANCES", 3)))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("INSTANCE_WORKERS", 1)),
                        help="WEB_CONCURRENCY of each instance")
    parser.add_argument("--base-port", type=int, default=int(os.environ.get("BASE_PORT", 38001)),
                        help="first instance's port; the others follow")
    parser.add_argument("--port", type=int, default=int(os.environ.get("NGINX_PORT", 38080)),
                        help="nginx's port (loopback)")
    parser.add_argument("--keep-files", action="store_true",
                        help="keep the logs and rendered nginx.conf after stopping")
    parser.add_argument("--write-compose-conf", action="store_true",
                        help="rewrite deploy/nginx/compose.conf from the template and exit")
    args = parser.parse_args(argv)
    if args.write_compose_conf:
        COMPOSE_NGINX_CONF.write_text(render_compose_nginx())
        return 0
    signal.signal(signal.SIGTERM, interrupt)
    cluster = Cluster(instances=args.instances, workers=args.workers, base_port=args.base_port,
                      port=args.port, keep_files=args.keep_files)
    try:
        with cluster:
            for member in cluster.members:
                print(f"instance {member.index + 1}: {member.url} "
                      f"(pid {member.process.pid}, log {member.log_path})")
            print(f"nginx: {cluster.url} -> {len(cluster.members)} instances; Ctrl-C stops all",
                  flush=True)
            while True:
                for member in cluster.members:
                    if member.process is not None and member.process.poll() is not None:
                        print(f"instance {member.index + 1} exited "
                              f"({member.process.returncode}); nginx routes around it",
                              file=sys.stderr)
                        member.process = None
                time.sleep(1)
    except KeyboardInterrupt:
        print("stopping", file=sys.stderr)
    except RuntimeError as error:  # nginx missing, an instance that would not start, ...
        print(f"make cluster: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
