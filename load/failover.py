"""``make failover``: restart and kill instances behind nginx under load; count every failure.

Starts the ``make cluster`` topology (N instances of ``make serve``'s Gunicorn behind nginx),
puts steady load on nginx with ``load/client.py`` and runs two drills, each with the load
running before, during and after it:

1. rolling restart: every instance in turn gets SIGTERM (Gunicorn finishes what it holds and
   exits), is started again and waited for until its own ``/ready`` answers 200;
2. ``kill -9`` of one instance's master and workers at once (the whole process group), load on
   the remaining instances for ``--down-seconds``, then the instance is started again.

For each drill it prints requests, failures (refused or reset connections, timeouts, non-200
answers: the client retries nothing), p50/p99/max latency, how many requests were in flight at
some moment of the drill's action, and the failed attempts nginx logged (the failover it did).
It exits 1 on any failed request, or when fewer than ``--min-requests`` requests were in flight
during a drill's action.

    python -m load.failover [--instances 3] [--workers 1] [--connections 64]
                            [--min-requests 10000] [--drills rolling,kill] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from load.cluster import REPO, Cluster, nginx_fail_timeout

DRILLS = ("rolling", "kill")


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class LoadResult:
    """What the client recorded over one run, summarised; ``window`` = the action's span."""

    requests: int
    failures: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    over_1s: int
    errors: dict[str, int]
    samples: list = field(default_factory=list)
    in_window: int = 0
    failures_in_window: int = 0
    notes: dict = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def summarise(records: dict, window: tuple[float, float] | None = None) -> LoadResult:
    starts, latencies, statuses = records["starts"], records["latencies"], records["statuses"]
    ordered = sorted(latencies)
    ends = [start + latency for start, latency in zip(starts, latencies, strict=True)]
    span = (max(ends) - min(starts)) if starts else 0.0
    failures = sum(1 for status in statuses if status != 200)
    result = LoadResult(requests=len(statuses), failures=failures, seconds=span,
                        p50_ms=percentile(ordered, 50) * 1000,
                        p99_ms=percentile(ordered, 99) * 1000,
                        max_ms=(ordered[-1] * 1000 if ordered else 0.0),
                        over_1s=sum(1 for latency in latencies if latency > 1.0),
                        errors=dict(records.get("errors", {})),
                        samples=[(datetime.fromtimestamp(start + records.get(
                            "wall_minus_monotonic", 0.0), UTC).isoformat(timespec="milliseconds"),
                            what) for start, what in records.get("samples", [])])
    if window is not None:
        begin, end = window
        # In flight at any moment of the action: sent before it ended, answered after it began
        # (a request in flight when an instance is killed counts).
        inside = [status for start, latency, status in zip(starts, latencies, statuses,
                                                           strict=True)
                  if start <= end and start + latency >= begin]
        result.in_window = len(inside)
        result.failures_in_window = sum(1 for status in inside if status != 200)
    return result


class LoadClient:
    """``load/client.py`` in a child process: start it, stop it, read what it recorded."""

    def __init__(self, url: str, connections: int, max_seconds: float, timeout: float) -> None:
        self.out = Path(tempfile.mkstemp(prefix="scl-delay-load-", suffix=".json")[1])
        self.log = self.out.with_suffix(".log")
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "load.client", "--url", url, "--out", str(self.out),
                 "--connections", str(connections), "--max-seconds", str(max_seconds),
                 "--timeout", str(timeout)], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        self.started = time.monotonic()

    def wait_running(self, seconds: float) -> None:
        """Let the load settle for ``seconds``; an early exit is an error."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"load client exited early:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.05)

    def finish(self) -> dict:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise RuntimeError("load client did not stop within 60 s") from None
        try:
            if self.process.returncode != 0:
                raise RuntimeError(f"load client failed ({self.process.returncode}):\n"
                                   f"{self.log.read_text()[-2000:]}")
            return json.loads(self.out.read_text())
        finally:
            self.out.unlink(missing_ok=True)
            self.log.unlink(missing_ok=True)


def rolling_restart(cluster: Cluster) -> dict:
    """SIGTERM each instance, start it again, wait for its /ready and then until nginx routes
    to it again; one after the other.

    Stopping the next instance before nginx has taken the last one back leaves nginx no live
    upstream: it marked the restarted instance down while it was stopped and tries it again
    only after ``fail_timeout``. A fixed wait of ``fail_timeout`` after /ready was enough on a
    quiet machine and not on a loaded one (1,467 answers of 503 in one drill of the suite).
    """
    limit = 10 * nginx_fail_timeout() + 10
    timings = []
    for instance in cluster.members:
        began = time.monotonic()
        cluster.stop_instance(instance)
        stopped = time.monotonic()
        cluster.start_instance(instance, wait=False)
        ready_after = cluster.wait_ready(instance)
        routed_after = cluster.wait_routed(instance, limit)
        timings.append({"instance": instance.index + 1, "stop_s": round(stopped - began, 2),
                        "start_to_ready_s": round(ready_after, 2),
                        "ready_to_routed_s": round(routed_after, 2)})
    return {"instances": timings}


def kill_one(cluster: Cluster, down_seconds: float, times: int = 1) -> dict:
    """kill -9 the first instance's process group, leave it down, start it again; ``times``
    times in a row (rare outcomes of a kill need many kills to show)."""
    instance = cluster.members[0]
    ready = []
    for _ in range(times):
        cluster.kill_instance(instance)
        time.sleep(down_seconds)
        cluster.start_instance(instance, wait=False)
        ready.append(round(cluster.wait_ready(instance), 2))
    return {"instance": instance.index + 1, "kills": times, "down_s": down_seconds,
            "start_to_ready_s": ready if times > 1 else ready[0]}


def run_drill(cluster: Cluster, action: Callable[[], dict], args) -> LoadResult:
    """Load before, during and after ``action``; the summary marks the action's span."""
    client = LoadClient(cluster.url, args.connections, args.max_seconds, args.timeout)
    try:
        client.wait_running(args.lead_seconds)
        log_offset, _ = cluster.upstream_errors()
        begin = time.monotonic()
        notes = action()
        end = time.monotonic()
        client.wait_running(args.tail_seconds)
        records = client.finish()
    except BaseException:
        if client.process.poll() is None:
            client.process.kill()
            client.process.wait()
        raise
    _, retried = cluster.upstream_errors(log_offset)
    result = summarise(records, (begin, end))
    notes["action_s"] = round(end - begin, 2)
    notes["nginx_upstream_errors"] = dict(retried)
    result.notes = notes
    return result


def report(name: str, result: LoadResult) -> str:
    errors = ", ".join(f"{k}: {v}" for k, v in sorted(result.errors.items())) or "none"
    return (f"{name:<8} requests {result.requests:>7,}  failures {result.failures:>3}  "
            f"p50 {result.p50_ms:6.1f} ms  p99 {result.p99_ms:6.1f} ms  "
            f"max {result.max_ms:7.1f} ms (>1 s: {result.over_1s})"
            f"  {result.rps:7.1f} req/s  in flight during the action {result.in_window:,} "
            f"(failed {result.failures_in_window})\n"
            f"         action took {result.notes.get('action_s')} s; errors: {errors}; "
            f"{json.dumps({k: v for k, v in result.notes.items() if k != 'action_s'})}"
            + "".join(f"\n         failed: {when} {what}" for when, what in result.samples))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=int(os.environ.get("INSTANCES", 3)))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("INSTANCE_WORKERS", 1)))
    parser.add_argument("--base-port", type=int, default=int(os.environ.get("BASE_PORT", 38001)))
    parser.add_argument("--instance-ports", default="",
                        help="comma-separated ports, one per instance (instead of --base-port)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("NGINX_PORT", 38080)))
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--drills", default=",".join(DRILLS),
                        help="comma-separated, from: " + ", ".join(DRILLS))
    parser.add_argument("--min-requests", type=int, default=10000,
                        help="fail a drill with fewer requests in flight while its action ran")
    parser.add_argument("--lead-seconds", type=float, default=3.0,
                        help="load before each action")
    parser.add_argument("--tail-seconds", type=float, default=2.0, help="load after each action")
    parser.add_argument("--down-seconds", type=float, default=5.0,
                        help="how long the killed instance stays down under load")
    parser.add_argument("--kills", type=int, default=1,
                        help="kill drill: kill and restart the instance this many times")
    parser.add_argument("--max-seconds", type=float, default=300.0,
                        help="hard limit of one load client run")
    parser.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    parser.add_argument("--json", help="write the results here as JSON")
    parser.add_argument("--keep-files", action="store_true",
                        help="keep the instances' and nginx's logs (their directory is printed)")
    args = parser.parse_args(argv)
    drills = [d.strip() for d in args.drills.split(",") if d.strip()]
    unknown = set(drills) - set(DRILLS)
    if unknown:
        parser.error(f"unknown drills: {', '.join(sorted(unknown))}")

    results: dict[str, LoadResult] = {}
    ports = [int(p) for p in args.instance_ports.split(",") if p.strip()] or None
    with Cluster(instances=args.instances, workers=args.workers, base_port=args.base_port,
                 instance_ports=ports, port=args.port, keep_files=args.keep_files) as cluster:
        print(f"{args.instances} instances x {args.workers} worker(s) behind nginx at "
              f"{cluster.url}; {args.connections} client connections", flush=True)
        for name in drills:
            action = ((lambda: rolling_restart(cluster)) if name == "rolling"
                      else (lambda: kill_one(cluster, args.down_seconds, args.kills)))
            results[name] = run_drill(cluster, action, args)
            print(report(name, results[name]), flush=True)

    failed = [n for n, r in results.items() if r.failures]
    short = [n for n, r in results.items() if r.in_window < args.min_requests]
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(
            {"instances": args.instances, "workers": args.workers,
             "connections": args.connections,
             "drills": {n: {**asdict(r), "rps": r.rps} for n, r in results.items()}}, indent=2))
    if failed:
        print(f"FAILED: failed requests in {', '.join(failed)}", file=sys.stderr)
    if short:
        print(f"FAILED: fewer than {args.min_requests} requests in flight during the action of "
              f"{', '.join(short)}",
              file=sys.stderr)
    return 1 if failed or short else 0


if __name__ == "__main__":
    sys.exit(main())
