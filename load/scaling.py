"""``make cluster-scaling``: throughput through nginx with 1, 2, ... instances, in one run.

For each layout (instances x workers per instance) it starts the ``make cluster`` topology,
warms it up, then runs ``load/client.py`` against nginx for ``--seconds`` and records requests
per second, p50/p99 latency, failures, and the CPU time every part used: the instances, nginx
and the load client. On a machine with few cores those three share them, and the CPU columns say
where the cores went (cores used = CPU seconds / wall seconds), which is what explains the
throughput (docs/deployment.md).

    python -m load.scaling [--layouts 1x1,2x1,3x1,1x2] [--seconds 15] [--connections 64]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from load.cluster import Cluster
from load.cpu import tree_cpu_seconds
from load.failover import LoadClient, summarise


def parse_layouts(text: str) -> list[tuple[int, int, str]]:
    """``"1x1,3x1:round_robin"`` -> [(1, 1, "least_conn"), (3, 1, "round_robin")]: instances x
    workers per instance, and nginx's balancing (least_conn unless named)."""
    layouts = []
    for part in text.split(","):
        shape, _, balancing = part.strip().partition(":")
        instances, _, workers = shape.partition("x")
        layouts.append((int(instances), int(workers or 1), balancing or "least_conn"))
    return layouts


def cpu_of(pids: Sequence[int]) -> float:
    return sum(tree_cpu_seconds(pid) or 0.0 for pid in pids)


def measure(instances: int, workers: int, balancing: str, args) -> dict:
    with Cluster(instances=instances, workers=workers, base_port=args.base_port,
                 port=args.port, balancing=balancing) as cluster:
        warm = LoadClient(cluster.url, args.connections, args.warmup + 30, args.timeout)
        warm.wait_running(args.warmup)
        warm.finish()
        instance_pids = [m.process.pid for m in cluster.members]
        nginx_pid = cluster.nginx_process.pid
        client = LoadClient(cluster.url, args.connections, args.seconds + 30, args.timeout)
        # The client's first second fetches /model and connects: not part of the measurement.
        client.wait_running(1.0)
        before = (cpu_of(instance_pids), cpu_of([nginx_pid]), cpu_of([client.process.pid]),
                  time.monotonic())
        client.wait_running(args.seconds)
        after = (cpu_of(instance_pids), cpu_of([nginx_pid]), cpu_of([client.process.pid]),
                 time.monotonic())
        records = client.finish()
    begin, end = before[3], after[3]
    # Only the requests sent inside the CPU-measured span count, so rate and CPU agree.
    keep = [i for i, start in enumerate(records["starts"]) if begin <= start <= end]
    window = {key: [records[key][i] for i in keep] for key in ("starts", "latencies", "statuses")}
    window["errors"] = records["errors"]
    result = summarise(window)
    wall = end - begin
    return {"instances": instances, "workers": workers, "balancing": balancing,
            "wall_s": round(wall, 2),
            "requests": result.requests, "rps": round(result.requests / wall, 1),
            "failures": result.failures, "p50_ms": round(result.p50_ms, 1),
            "p99_ms": round(result.p99_ms, 1),
            "cores_instances": round((after[0] - before[0]) / wall, 2),
            "cores_nginx": round((after[1] - before[1]) / wall, 2),
            "cores_client": round((after[2] - before[2]) / wall, 2),
            "cpu_ms_per_request_instances": round((after[0] - before[0]) * 1000
                                                  / max(result.requests, 1), 3),
            "errors": asdict(result)["errors"]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layouts", default="1x1,2x1,3x1,1x2",
                        help="instances x workers per instance, comma-separated; "
                             "':round_robin' after one compares nginx's default balancing")
    parser.add_argument("--instances", type=int, default=None,
                        help="instead of --layouts: 1..N instances of --workers workers")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--base-port", type=int, default=int(os.environ.get("BASE_PORT", 38001)))
    parser.add_argument("--port", type=int, default=int(os.environ.get("NGINX_PORT", 38080)))
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=15.0, help="measured, per layout")
    parser.add_argument("--warmup", type=float, default=5.0, help="not measured, per layout")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--json", help="write the rows here as JSON")
    args = parser.parse_args(argv)
    layouts = ([(n, args.workers, "least_conn") for n in range(1, args.instances + 1)]
               if args.instances else parse_layouts(args.layouts))
    rows = []
    print(f"{'layout':<17} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'fail':>5} "
          f"{'cores: instances':>17} {'nginx':>6} {'client':>7} {'CPU ms/req':>11}", flush=True)
    base_port, port = args.base_port, args.port
    for index, (instances, workers, balancing) in enumerate(layouts):
        # Fresh ports per layout: the last layout's closed connections linger in TIME_WAIT on
        # ports of this range (it lies inside Linux's ephemeral range) and can block a bind.
        args.base_port, args.port = base_port + 10 * index, port + index
        row = measure(instances, workers, balancing, args)
        rows.append(row)
        name = f"{instances}x{workers} {balancing}"
        print(f"{name:<17} {row['rps']:>8.1f} {row['p50_ms']:>7.1f} "
              f"{row['p99_ms']:>7.1f} {row['failures']:>5} {row['cores_instances']:>17.2f} "
              f"{row['cores_nginx']:>6.2f} {row['cores_client']:>7.2f} "
              f"{row['cpu_ms_per_request_instances']:>11.3f}", flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"connections": args.connections,
                                               "seconds": args.seconds, "cpus": os.cpu_count(),
                                               "rows": rows}, indent=2))
    return 1 if any(row["failures"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
