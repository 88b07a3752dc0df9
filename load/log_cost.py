"""``make bench-log``: what the request log costs ``/health``, with servers new to every round.

The bench (load/bench.py) boots each server once and loads it for many rounds, so whatever makes
one server process a little faster or slower for its whole life (its hash seed, where its heap
and code landed, which core its workers settled on) stays with that server. Two identical
servers measured that way landed 2-4 % apart (docs/performance.md), as far apart as the 5 % the
log may cost: the bench could not say which side of its target the log is on.

Here every round boots its own servers: this checkout with the log on (``log``) and with
``LOG_LEVEL=WARNING`` (``quiet``), and, on request, a second log-on server of the same code
(``control``, an A/A pair that shows how far two identical servers land apart) and another
checkout's log-on server (``baseline``, to judge a change). Boot order and load order change
from round to round. Each server gets a short warm-up, then ``--duration`` seconds of wrk
(1 thread, 64 connections, ``GET /health``: the bench's own scenario). Each round gives each
arm's req/s as a share of the quiet server's in that round; over the rounds, their mean with a
95 % bootstrap interval. A server's lasting luck now varies from round to round, so it widens
the interval instead of biasing the result.

``--history N`` first sends every server the bench's prediction scenarios, N seconds each, with
the same bodies. A server that has served predictions pays more for its log line than a new one
(docs/performance.md, issue 15 round 8), and production servers have, so that is the figure to
quote; ``make bench-log`` runs it so.

    python -m load.log_cost [--rounds 16] [--duration 8] [--warmup 2] [--history 6]
                            [--control] [--baseline OTHER_CHECKOUT] [--json reports/log_cost.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from load import bench, wrk  # noqa: E402
from load.cluster import answering_pid  # noqa: E402
from load.cpu import tree_cpu_seconds  # noqa: E402
from tests.server import free_port, wait_ready  # noqa: E402

#: The share of the quiet server's ``/health`` req/s the log may cost (issue 15).
TARGET = 0.05
HEALTH = wrk.WrkScenario("health", "GET /health", "service", "health")


@dataclass(frozen=True)
class Arm:
    """One kind of server booted in every round."""

    name: str
    checkout: Path
    quiet: bool = False  # LOG_LEVEL=WARNING: no request line


def arms(control: bool, baseline: Path | None) -> list[Arm]:
    """The servers of a round: the log on and off, then the optional control and baseline."""
    out = [Arm("log", REPO_ROOT), Arm("quiet", REPO_ROOT, quiet=True)]
    if control:
        out.append(Arm("control", REPO_ROOT))
    if baseline is not None:
        out.append(Arm("baseline", baseline))
    return out


def round_order(names: list[str], round_no: int) -> list[str]:
    """Boot order rotates by round, so each arm boots first, second, ... equally often (the
    load order is shuffled apart from it)."""
    shift = round_no % len(names)
    return names[shift:] + names[:shift]


def bootstrap_mean(values: list[float], resamples: int = 10_000,
                   seed: int = 0) -> tuple[float, float]:
    """A 95 % percentile-bootstrap interval for the mean of ``values``.

    Assumes only that rounds are independent draws, not that their spread is normal: one
    server that boots unlucky makes a round an outlier, and a t-interval would be pulled by it.
    """
    if len(values) < 2:
        raise ValueError("an interval needs at least two rounds")
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    return means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]


def _mean_and_interval(arm: dict[str, Any], mean_key: str, interval_key: str,
                       values: list[float], digits: int) -> None:
    """``arm[mean_key]`` = the mean of ``values``, ``arm[interval_key]`` its 95 % interval
    (from two values on); nothing for no values."""
    if values:
        arm[mean_key] = round(statistics.fmean(values), digits)
    if len(values) >= 2:
        arm[interval_key] = [round(bound, digits) for bound in bootstrap_mean(values)]


def summarise(rows: list[dict[str, Any]], target: float = TARGET) -> dict[str, Any]:
    """Per arm other than ``quiet``: its req/s over the same round's quiet server's, mean,
    median, 95 % interval and range; its extra CPU per request; and for ``log``, whether the
    cost is under ``target`` (the interval's lower end of the share at least ``1 - target``)."""
    by_round: dict[int, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_round.setdefault(row["round"], {})[row["arm"]] = row
    out: dict[str, Any] = {"rounds": len(by_round), "target_cost": target, "arms": {}}
    names = dict.fromkeys(r["arm"] for r in rows if r["arm"] != "quiet")
    for name in names:
        shares, extra_cpu, cpu_shares = [], [], []
        for arms_of_round in by_round.values():
            mine, quiet = arms_of_round.get(name), arms_of_round.get("quiet")
            if mine is None or quiet is None or not quiet["rps"]:
                continue
            shares.append(mine["rps"] / quiet["rps"])
            if mine["cpu_us"] is not None and quiet["cpu_us"] is not None:
                extra_cpu.append(mine["cpu_us"] - quiet["cpu_us"])
                cpu_shares.append(mine["cpu_us"] / quiet["cpu_us"] - 1)
        if not shares:
            continue
        arm: dict[str, Any] = {
            "rounds": len(shares), "median_share": round(statistics.median(shares), 4),
            "share_range": [round(min(shares), 4), round(max(shares), 4)],
            "rounds_faster_than_quiet": sum(s > 1 for s in shares),
        }
        _mean_and_interval(arm, "mean_share", "share_95", shares, 4)
        # The extra CPU, also as a share of the quiet server's per request: on CPU-bound
        # workers the cost in throughput, without the load generator's share of the cores.
        _mean_and_interval(arm, "mean_extra_cpu_us", "extra_cpu_us_95", extra_cpu, 1)
        _mean_and_interval(arm, "mean_extra_cpu_share", "extra_cpu_share_95", cpu_shares, 4)
        out["arms"][name] = arm
    log = out["arms"].get("log")
    if log and "share_95" in log:
        low, high = log["share_95"]
        out["verdict"] = ("met" if low >= 1 - target
                          else "missed" if high < 1 - target else "not shown either way")
    return out


def wait_all_workers(url: str, workers: int, timeout: float) -> None:
    """Until ``/ready`` has been answered by ``workers`` different worker pids: a quiet server
    logs no line per worker that loaded its model, so its readiness is asked of the workers."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = answering_pid(f"{url}/ready", timeout=2)
        if pid is not None:
            seen.add(pid)
        if len(seen) >= workers:
            return
        time.sleep(0.02)
    raise RuntimeError(f"only {len(seen)} of {workers} workers answered /ready in {timeout} s")


def _boot(arm: Arm, env: dict[str, str], log_path: Path, workers: int) -> tuple[
        subprocess.Popen, str]:
    port = free_port()
    arm_env = {**env, "PORT": str(port)}
    if arm.quiet:
        arm_env["LOG_LEVEL"] = "WARNING"
    server = bench.start_server([str(bench.GUNICORN), "--config", "gunicorn.conf.py"], arm_env,
                                log_path, arm.checkout)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, server, log_path, timeout=120)
        wait_all_workers(url, workers, timeout=120)
    except BaseException:
        bench.stop_server(server)
        raise
    return server, url


def run_round(round_no: int, plan: list[Arm], env: dict[str, str], workers: int,
              duration: int, warmup: int, scratch: Path, rng: random.Random,
              history: wrk.History | None = None) -> list[dict]:
    """Boot every arm anew, load each in turn (history, warm-up, then measured), stop them all.

    ``history``: the bench's prediction scenarios, ``seconds`` each, sent to each arm first
    with the same bodies, so that /health is measured on servers that have served
    predictions, as in production and as the bench's service before most of its /health rows."""
    by_name = {arm.name: arm for arm in plan}
    running: dict[str, tuple[subprocess.Popen, str]] = {}
    rows = []
    try:
        for name in round_order(list(by_name), round_no):
            running[name] = _boot(by_name[name], env, scratch / f"{name}.log", workers)
        load_order = list(by_name)
        rng.shuffle(load_order)
        for name in load_order:
            server, url = running[name]
            served, failed = (wrk.send_history(url, history, scratch) if history is not None
                              else (0, 0))
            if warmup:
                wrk.run_wrk(url, HEALTH, [b"/health"], warmup, scratch)
            before = tree_cpu_seconds(server.pid)
            sample, _ = wrk.run_wrk(url, HEALTH, [b"/health"], duration, scratch)
            after = tree_cpu_seconds(server.pid)
            cpu_us = ((after - before) / sample.requests * 1e6
                      if before is not None and after is not None and sample.requests else None)
            rows.append({"round": round_no, "arm": name, "requests": sample.requests,
                         "rps": round(sample.rps, 1),
                         "errors": sample.errors + failed, "p99_ms": round(sample.p99_ms, 2),
                         "cpu_us": round(cpu_us, 1) if cpu_us is not None else None,
                         "history_requests": served})
    finally:
        for server, _ in running.values():
            bench.stop_server(server)
    for row in rows:  # a check that each arm is what it says: quiet servers write no line
        row["request_lines"] = (scratch / f"{row['arm']}.log").read_bytes().count(
            b'"event":"request"')
    return rows


def report(summary: dict[str, Any]) -> str:
    lines = [f"GET /health, {summary['rounds']} rounds of fresh servers: req/s as a share of "
             "the quiet server's (LOG_LEVEL=WARNING) in the same round"]
    for name, arm in summary["arms"].items():
        interval = arm.get("share_95")
        cpu = arm.get("extra_cpu_us_95")
        lines.append(
            f"  {name:8s} mean {arm['mean_share']:.3f}"
            + (f" (95 % {interval[0]:.3f}-{interval[1]:.3f})" if interval else "")
            + f", median {arm['median_share']:.3f}, range {arm['share_range'][0]:.3f}-"
              f"{arm['share_range'][1]:.3f}, faster than quiet in "
              f"{arm['rounds_faster_than_quiet']}/{arm['rounds']}"
            + (f"; CPU {arm['mean_extra_cpu_us']:+.1f} us/request"
               if "mean_extra_cpu_us" in arm else "")
            + (f" (95 % {cpu[0]:+.1f} to {cpu[1]:+.1f})" if cpu else "")
            + (f", {arm['mean_extra_cpu_share']:+.1%} of quiet's"
               if "mean_extra_cpu_share" in arm else "")
            + (" (95 % {:+.1%} to {:+.1%})".format(*arm["extra_cpu_share_95"])
               if "extra_cpu_share_95" in arm else ""))
    if "verdict" in summary:
        lines.append(f"The log's cost <= {summary['target_cost']:.0%} of /health: "
                     f"{summary['verdict']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("LOG_COST_ROUNDS", 16)))
    parser.add_argument("--duration", type=int, default=8, help="measured s per server")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured s per server first")
    parser.add_argument("--control", action="store_true",
                        help="also boot a second log-on server of this checkout (A/A)")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another checkout whose log-on server joins every round")
    parser.add_argument("--history", type=int, default=0,
                        help="s of each of the bench's prediction scenarios (one flight, new "
                             "flights, batches) sent to every server before its /health load")
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "reports" / "log_cost.json")
    args = parser.parse_args(argv)
    if args.rounds < 2 or args.duration < 1 or args.warmup < 0 or args.history < 0:
        parser.error("--rounds must be >= 2, --duration >= 1, --warmup and --history >= 0")
    if args.baseline is not None and not (args.baseline / "gunicorn.conf.py").is_file():
        parser.error(f"--baseline {args.baseline} is not a checkout (no gunicorn.conf.py)")
    if wrk.WRK is None:
        parser.error("wrk is not installed (Debian: apt-get install -y wrk)")
    plan = arms(args.control, args.baseline.resolve() if args.baseline else None)
    rng = random.Random(args.seed)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="scl-log-cost-") as tmp:
        scratch = Path(tmp)
        model_dir, _ = bench.model_dir_or_tiny(args.model_dir, scratch)
        env = {**os.environ, "HOST": "127.0.0.1", "MODEL_DIR": str(model_dir)}
        workers = int(env.get("WEB_CONCURRENCY") or os.cpu_count() or 1)
        history = None
        if args.history:
            spec = json.loads((model_dir / "metadata.json").read_text())["feature_spec"]
            history = wrk.history_bodies(wrk.Bodies(spec), args.history)
        for round_no in range(1, args.rounds + 1):
            got = run_round(round_no, plan, env, workers, args.duration, args.warmup,
                            scratch, rng, history)
            rows.extend(got)
            print(f"round {round_no}: " + ", ".join(
                f"{r['arm']} {r['rps']:.0f} req/s {r['cpu_us']} us" for r in got), flush=True)
    summary = summarise(rows)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": bench.machine(), "duration_s": args.duration,
                                     "warmup_s": args.warmup, "history_s": args.history,
                                     "rows": rows,
                                     "summary": summary}, indent=1))
    print(report(summary))
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
