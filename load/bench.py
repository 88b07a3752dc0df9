"""``make bench``: start the service as configured, run fixed Locust scenarios, write a report.

Every scenario runs against the same Gunicorn server (``gunicorn --config gunicorn.conf.py``,
workers as configured) in one run with the same Locust settings, so the numbers compare: the
trivial ``/health`` route is the framework's ceiling on this machine, and ``/predict`` is judged
against it. Load generator and server share the machine's cores, as they would in CI.

    python -m load.bench [--duration 10] [--rounds 3] [--warmup 10] [--users 64]
                         [--processes 1] [--model-dir DIR]

The scenarios run in ``--rounds`` interleaved rounds (health, single, ..., batch; then again),
each scenario ``--duration`` seconds per round. On a shared machine the speed drifts by 15-25 %
over minutes; run back to back, a scenario measured in a fast minute and the ceiling in a slow
one would give a ratio that says more about the minute than about the service. Interleaved,
every scenario sees the same mix of minutes; each round's ratio to that round's ``/health`` is
reported too, so the spread is visible. Latency percentiles are computed from the rounds'
pooled response-time histograms (Locust's ``--json-file``, with Locust's rounding).

Before its first round each scenario runs ``--warmup`` seconds of the same load, not measured:
each worker's single-flight cache fills then, as it would long before a steady state in
production. 10 s, because 5 s left a fifth of the 2,000-departure board unseen by each worker
(each draws ~3,000 of the board's flights in 5 s) and the first round measured those misses.
Failures during the warm-up still count.

Each run also records the CPU time the server's processes used (``load/cpu.py``): per request
it moves far less than req/s between minutes, and it separates the service's own cost from the
share of the two cores the load generator takes.

Writes ``reports/bench.md``, ``reports/bench.json`` and, per scenario and round, Locust's CSV
stats, JSON stats and HTML report under ``reports/bench/``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import psutil  # noqa: E402

from load import wrk  # noqa: E402
from load.cpu import tree_cpu_seconds  # noqa: E402
from tests.server import free_port, wait_ready  # noqa: E402  (the test suite's server helpers)

LOCUST = Path(sys.executable).with_name("locust")
GUNICORN = Path(sys.executable).with_name("gunicorn")


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    tags: str
    users: int
    batch_size: int = 1
    extra: tuple[str, ...] = ()
    server: str = "service"  # or "bare": load/bare_app.py, the reference route


@dataclass
class Sample:
    """One Locust run: counts, measured seconds, the response-time histogram (ms -> n) and the
    CPU seconds the server (Gunicorn master and workers) used during the run, if known."""

    requests: int
    failures: int
    seconds: float
    histogram: Counter[int]
    server_cpu_s: float | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Result:
    scenario: str
    title: str
    users: int
    batch_size: int
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    flights_per_s: float
    rps_by_round: list[float]
    server_cpu_us_per_request: float | None = None
    server_cores: float | None = None


def scenarios(users: int) -> list[Scenario]:
    """(a) ceiling, (b) single flight, (c) batches; batch users are fewer: each is 100x work."""
    return [
        Scenario("bare", "bare Flask route, fixed answer (reference)", "single", users,
                 server="bare"),
        Scenario("health", "GET /health (framework ceiling)", "health", users),
        Scenario("single", "POST /predict, 1 flight (2,000 scheduled departures)", "single",
                 users),
        Scenario("single_unique", "POST /predict, 1 flight (every flight new: no cache hits)",
                 "single", users, extra=("--schedule-size", "0")),
        Scenario("batch100", "POST /predict, batch of 100", "batch", max(users // 4, 1), 100),
        Scenario("batch1000", "POST /predict, batch of 1,000", "batch", max(users // 8, 1),
                 1000),
    ]


def run_locust(url: str, scenario: Scenario, duration: int, processes: int,
               out_dir: Path, label: str = "", server_pid: int | None = None) -> Sample:
    """One headless Locust run, read back from its ``--json-file`` stats, with the CPU the
    server process tree ``server_pid`` used meanwhile (an idle server uses next to none while
    Locust starts and stops, so it all goes to the requests)."""
    prefix = out_dir / f"{scenario.name}{label}"
    cmd = [str(LOCUST), "-f", "locustfile.py", "--headless", "--only-summary",
           "--host", url, "-u", str(scenario.users), "-r", str(scenario.users),
           "-t", f"{duration}s", "--stop-timeout", "5", "--tags", scenario.tags,
           "--csv", str(prefix), "--html", f"{prefix}.html", "--json-file", str(prefix),
           "--loglevel", "WARNING"]
    if scenario.tags == "batch":
        cmd += ["--batch-size", str(scenario.batch_size)]
    cmd += list(scenario.extra)
    if processes > 1:
        cmd += ["--processes", str(processes)]
    cpu_before = tree_cpu_seconds(server_pid) if server_pid else None
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=duration + 120)
    cpu_after = tree_cpu_seconds(server_pid) if server_pid else None
    Path(f"{prefix}.log").write_text(done.stdout + done.stderr)
    sample = sample_from_stats(json.loads(Path(f"{prefix}.json").read_text()))
    if cpu_before is not None and cpu_after is not None:
        sample.server_cpu_s = cpu_after - cpu_before
    return sample


def sample_from_stats(entries: list[dict[str, Any]]) -> Sample:
    """Pool Locust's per-endpoint JSON stats into one sample.

    The measured time runs from the first endpoint's start to the last request, as Locust's
    own "Aggregated" req/s does.
    """
    histogram: Counter[int] = Counter()
    for entry in entries:
        histogram.update({int(ms): n for ms, n in entry["response_times"].items()})
    starts = [e["start_time"] for e in entries if e["num_requests"]]
    ends = [e["last_request_timestamp"] for e in entries if e["num_requests"]]
    seconds = max(ends) - min(starts) if starts else 0.0
    return Sample(sum(e["num_requests"] for e in entries),
                  sum(e["num_failures"] for e in entries), seconds, histogram)


def percentile(histogram: Counter[int], fraction: float) -> float:
    """The smallest recorded time at or below which ``fraction`` of the requests finished;
    NaN for an empty histogram (a run too short to finish one request)."""
    total = sum(histogram.values())
    if not total:
        return float("nan")
    wanted = math.ceil(fraction * total)
    seen = 0
    for ms in sorted(histogram):
        seen += histogram[ms]
        if seen >= wanted:
            return float(ms)
    return float(max(histogram))


def pool(scenario: Scenario, samples: list[Sample], warmup_failures: int = 0) -> Result:
    """One scenario's result over its rounds: counts and times summed, histograms pooled."""
    histogram: Counter[int] = Counter()
    for sample in samples:
        histogram.update(sample.histogram)
    requests = sum(s.requests for s in samples)
    seconds = sum(s.seconds for s in samples)
    rps = requests / seconds if seconds > 0 else 0.0
    cpus = [s.server_cpu_s for s in samples]
    cpu = sum(cpus) if cpus and None not in cpus else None  # one unknown round: unknown
    return Result(scenario.name, scenario.title, scenario.users, scenario.batch_size, requests,
                  sum(s.failures for s in samples) + warmup_failures, round(rps, 1),
                  percentile(histogram, 0.50), percentile(histogram, 0.95),
                  percentile(histogram, 0.99), round(rps * scenario.batch_size, 0),
                  [round(s.rps, 1) for s in samples],
                  round(cpu / requests * 1e6) if cpu is not None and requests else None,
                  round(cpu / seconds, 2) if cpu is not None and seconds > 0 else None)


def round_ratios(result: Result, health: Result) -> list[float]:
    """``result``'s req/s as a share of ``/health``'s in the same round."""
    return [r / h for r, h in zip(result.rps_by_round, health.rps_by_round, strict=True) if h]


def machine() -> dict[str, Any]:
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "os": platform.platform()}


def model_dir_or_tiny(requested: str | None, scratch: Path) -> tuple[Path, bool]:
    """The real artifact if it exists, else a tiny synthetic one (said so in the report)."""
    path = Path(requested or os.environ.get("MODEL_DIR") or REPO_ROOT / "model_artifacts")
    if (path / "metadata.json").exists():
        return path, False
    from tests.conftest import build_tiny_artifact

    tiny = scratch / "tiny_model"
    build_tiny_artifact(tiny)
    return tiny, True


def write_reports(results: list[Result], meta: dict[str, Any], reports: Path) -> None:
    health = next((r for r in results if r.scenario == "health"), None)
    ratios = {r.scenario: round_ratios(r, health) for r in results} if health else {}
    (reports / "bench.json").write_text(json.dumps(
        {**meta, "results": [{**asdict(r), "share_of_health_by_round":
                              [round(x, 4) for x in ratios.get(r.scenario, [])]}
                             for r in results]}, indent=2) + "\n")
    lines = [
        "# Benchmark (`make bench`)", "",
        f"Machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores, "
        f"Python {meta['machine']['python']}; load generator (Locust {meta['locust']}, "
        f"FastHttpUser, {meta['locust_processes']} process(es)) on the same machine.",
        f"Server: Gunicorn, {meta['workers']} workers of class {meta['worker_class']}; "
        f"model {meta['model_version']}"
        f"{' (TINY synthetic model: no real artifact found)' if meta['tiny_model'] else ''}.",
        f"{meta['rounds']} interleaved round(s) of {meta['duration_s']} s per scenario; before "
        f"its first round each scenario ran a {meta['warmup_s']} s warm-up at the same load "
        "whose numbers are discarded (its failures are counted). Percentiles come from the "
        "rounds' pooled histograms. Server CPU: user + system CPU time of the Gunicorn master "
        "and its workers during the runs (psutil), per request and as cores busy; the "
        "rest of the two cores goes to Locust and the system.", "",
        "| scenario | users | requests | failures | req/s | flights/s | p50 ms | p95 ms | p99 ms |"
        " % of /health req/s | % by round | server CPU µs/request | server cores |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in results:
        share = f"{100 * r.rps / health.rps:.0f} %" if health and health.rps else "-"
        by_round = " / ".join(f"{100 * x:.0f}" for x in ratios.get(r.scenario, [])) or "-"
        cpu = "-" if r.server_cpu_us_per_request is None else f"{r.server_cpu_us_per_request:,.0f}"
        cores = "-" if r.server_cores is None else f"{r.server_cores:.2f}"
        lines.append(f"| {r.title} | {r.users} | {r.requests} | {r.failures} | {r.rps:.0f} | "
                     f"{r.flights_per_s:.0f} | {r.p50_ms:.0f} | {r.p95_ms:.0f} | "
                     f"{r.p99_ms:.0f} | {share} | {by_round} | {cpu} | {cores} |")
    (reports / "bench.md").write_text("\n".join(lines) + "\n")


def measure(servers: dict[str, tuple[str, int]], plan: list[Scenario],
            args: argparse.Namespace, out_dir: Path) -> list[Result]:
    """Warm each scenario up once, then run all of them ``args.rounds`` times in turn.

    ``servers`` maps a scenario's ``server`` to (base URL, Gunicorn master pid)."""
    samples: dict[str, list[Sample]] = {s.name: [] for s in plan}
    warmup_failures = dict.fromkeys(samples, 0)
    for round_no in range(1, args.rounds + 1):
        for scenario in plan:
            url, pid = servers[scenario.server]
            if round_no == 1 and args.warmup:
                warm = run_locust(url, scenario, args.warmup, args.processes, out_dir,
                                  "_warmup")  # its CPU is discarded too: not measured
                warmup_failures[scenario.name] = warm.failures  # discarded, except failures
            sample = run_locust(url, scenario, args.duration, args.processes, out_dir,
                                f"_r{round_no}", pid)
            samples[scenario.name].append(sample)
            print(f"round {round_no} {scenario.name}: {sample.rps:.0f} req/s, "
                  f"p99 {percentile(sample.histogram, 0.99):.0f} ms, {sample.failures} failures",
                  flush=True)
    return [pool(s, samples[s.name], warmup_failures[s.name]) for s in plan]


def worker_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each live child (Gunicorn worker) of ``pid``."""
    out = {}
    try:
        children = psutil.Process(pid).children()
    except psutil.Error:
        return out
    for child in children:
        try:
            times = child.cpu_times()
        except psutil.Error:
            continue
        out[child.pid] = times.user + times.system
    return out


def worker_split(before: dict[int, float], after: dict[int, float]) -> list[float]:
    """Each worker's share of the CPU its server's workers used in between, largest first: how
    evenly the workers split the load (two equal workers: [0.5, 0.5])."""
    used = [after[pid] - before.get(pid, 0.0) for pid in after]
    total = sum(used)
    return sorted((round(u / total, 2) for u in used), reverse=True) if total > 0 else []


def measure_wrk(servers: dict[str, tuple[str, int]], feature_spec: dict[str, Any],
                args: argparse.Namespace, out_dir: Path) -> list[dict[str, Any]]:
    """The wrk scenarios (load/wrk.py), ``args.wrk_rounds`` interleaved rounds; one row per
    scenario and round, with its share of the bare route's req/s in the same round.

    Even rounds run the scenarios in reverse order, so a drift of the machine's speed over the
    run does not favour the scenarios that come first; ratios are taken within a round."""
    bodies = wrk.Bodies(feature_spec)
    # Enough distinct new flights that none repeats even at twice today's best rate.
    new_count = max(20_000 * args.wrk_duration, 1000)
    rows: list[dict[str, Any]] = []
    scratch = out_dir / "wrk"
    scratch.mkdir(parents=True, exist_ok=True)
    plan = wrk.wrk_scenarios(args.wrk_connections)
    if "baseline" in servers:
        plan = wrk.with_baseline(plan, args.baseline_scenarios or wrk.BASELINE_SCENARIOS)
    if args.wrk_scenarios:
        plan = [s for s in plan if s.name.removeprefix("baseline_") in args.wrk_scenarios]
    # Every server whose /health is compared (the log on and off) first serves the same
    # prediction mix: a quiet server that had served none read the log ~2 % dearer than a
    # fair history does (docs/performance.md, issue 15 round 8).
    history_served: dict[str, int] = {}
    if args.wrk_history:
        history = wrk.history_bodies(bodies, args.wrk_history)
        for name in dict.fromkeys(s.server for s in plan if s.body == "health"):
            served, failed = wrk.send_history(servers[name][0], history, scratch)
            if failed:
                raise RuntimeError(f"{failed} errors in the history sent to {name}")
            history_served[name] = served
            print(f"history for {name}: {served} prediction requests, "
                  f"{args.wrk_history} s of each of {', '.join(wrk.HISTORY)}", flush=True)
    for round_no in range(1, args.wrk_rounds + 1):
        this_round = []
        for scenario in plan if round_no % 2 else plan[::-1]:
            url, pid = servers[scenario.server]
            lines = bodies.lines(scenario, 16 if scenario.body == "batch" else new_count)
            cpu_before, workers_before = tree_cpu_seconds(pid), worker_cpu_seconds(pid)
            sample, report = wrk.run_wrk(url, scenario, lines, args.wrk_duration, scratch)
            cpu_after, workers_after = tree_cpu_seconds(pid), worker_cpu_seconds(pid)
            (scratch / f"{scenario.name}_r{round_no}.txt").write_text(report)
            if cpu_before is not None and cpu_after is not None:
                sample.server_cpu_s = cpu_after - cpu_before
            row = {"round": round_no, "scenario": scenario.name, "title": scenario.title,
                   "connections": scenario.connections, "batch_size": scenario.batch_size,
                   "requests": sample.requests, "errors": sample.errors,
                   "rps": round(sample.rps, 1),
                   "flights_per_s": round(sample.rps * scenario.batch_size),
                   "p50_ms": round(sample.p50_ms, 2), "p99_ms": round(sample.p99_ms, 2),
                   "server_cpu_us_per_request":
                       round(sample.server_cpu_s / sample.requests * 1e6)
                       if sample.server_cpu_s is not None and sample.requests else None,
                   "worker_split": worker_split(workers_before, workers_after),
                   "distinct_bodies": sample.distinct_bodies}
            if scenario.server in history_served:
                row["history_requests"] = history_served[scenario.server]
            if scenario.body == "new" and sample.requests > len(lines):
                row["note"] = "bodies repeated: raise the count of new flights"
            this_round.append(row)
            print(f"wrk round {round_no} {scenario.name}: {sample.rps:.0f} req/s, "
                  f"p99 {sample.p99_ms:.1f} ms, {sample.errors} errors, "
                  f"{row['server_cpu_us_per_request']} us CPU/request, "
                  f"workers {row['worker_split']}", flush=True)
        rps = {row["scenario"]: row["rps"] for row in this_round}
        for row in sorted(this_round, key=lambda r: [s.name for s in plan].index(r["scenario"])):
            for reference, key in (("bare", "share_of_bare"),
                                   ("bare_project", "share_of_bare_project")):
                row[key] = round(row["rps"] / rps[reference], 3) if rps.get(reference) else None
            rows.append(row)
    return rows


def wrk_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per scenario over the rounds: the median share of each reference, req/s and p99, and the
    range of the share of the bare route (how far one round can mislead)."""
    out = []
    for name in dict.fromkeys(r["scenario"] for r in rows):
        mine = [r for r in rows if r["scenario"] == name]
        shares = [r["share_of_bare"] for r in mine if r["share_of_bare"] is not None]
        project = [r["share_of_bare_project"] for r in mine
                   if r["share_of_bare_project"] is not None]
        cpu = [r["server_cpu_us_per_request"] for r in mine
               if r["server_cpu_us_per_request"] is not None]
        out.append({"scenario": name, "title": mine[0]["title"], "rounds": len(mine),
                    "median_share_of_bare": round(statistics.median(shares), 3)
                    if shares else None,
                    "share_of_bare_range": [min(shares), max(shares)] if shares else None,
                    "median_share_of_bare_project": round(statistics.median(project), 3)
                    if project else None,
                    "median_rps": round(statistics.median(r["rps"] for r in mine), 1),
                    "median_flights_per_s": round(statistics.median(
                        r["flights_per_s"] for r in mine)),
                    "median_p99_ms": round(statistics.median(r["p99_ms"] for r in mine), 2),
                    "max_p99_ms": max(r["p99_ms"] for r in mine),
                    "median_server_cpu_us_per_request": round(statistics.median(cpu))
                    if cpu else None,
                    "worker_splits": [r["worker_split"] for r in mine]})
    return out


def start_server(cmd: list[str], env: dict[str, str], log_path: Path,
                 cwd: Path = REPO_ROOT) -> subprocess.Popen:
    with log_path.open("wb") as log:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def boot_service(checkout: Path, env: dict[str, str], log_path: Path,
                 workers: int) -> tuple[subprocess.Popen, dict[str, Any]]:
    """Start ``checkout``'s service as ``make serve`` does (its own gunicorn.conf.py and code,
    this interpreter's libraries) and time it: process start to the first /ready answer, and
    to every worker having loaded the model."""
    url = f"http://127.0.0.1:{env['PORT']}"
    started = time.monotonic()
    server = start_server([str(GUNICORN), "--config", "gunicorn.conf.py"], env, log_path,
                          checkout)
    try:
        wait_ready(url, server, log_path, timeout=120)
        first_ready = time.monotonic() - started
        wait_workers_loaded(server, log_path, workers, timeout=120)
    except BaseException:
        stop_server(server)
        raise
    return server, {"start_to_ready_s": round(time.monotonic() - started, 3),
                    "first_ready_s": round(first_ready, 3),
                    "memory_at_ready": worker_memory(server.pid)}


def boot_services(checkouts: dict[str, Path], env: dict[str, str], out_dir: Path,
                  workers: int, rounds: int) -> tuple[dict[str, subprocess.Popen],
                                                      dict[str, dict[str, Any]]]:
    """Boot each checkout ``rounds`` times, alternating their order, one at a time on an
    otherwise idle server side; the last boot of each is kept running for the load. Each
    checkout's start-up figures are those of its median round, with every round's time."""
    ports = {name: free_port() for name in checkouts}
    times: dict[str, list[dict[str, Any]]] = {name: [] for name in checkouts}
    running: dict[str, subprocess.Popen] = {}
    try:
        for round_no in range(rounds):
            order = list(checkouts) if round_no % 2 == 0 else list(checkouts)[::-1]
            for name in order:
                log_path = out_dir / ("server.log" if name == "service" else f"{name}.log")
                server, startup = boot_service(checkouts[name], {**env, "PORT": str(ports[name])},
                                               log_path, workers)
                times[name].append(startup)
                if round_no == rounds - 1:
                    running[name] = server
                else:
                    stop_server(server)
    except BaseException:
        for server in running.values():
            stop_server(server)
        raise
    summary = {}
    for name, boots in times.items():
        median = sorted(boots, key=lambda b: b["start_to_ready_s"])[(len(boots) - 1) // 2]
        summary[name] = {**median, "port": ports[name], "checkout": str(checkouts[name]),
                         "start_to_ready_rounds": [b["start_to_ready_s"] for b in boots]}
    return running, summary


def stop_server(server: subprocess.Popen) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def wait_workers_loaded(server: subprocess.Popen, log_path: Path, workers: int,
                        timeout: float) -> None:
    """Until every worker has logged that it loaded the model (flask_app/__init__.py)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log_path.read_text(errors="replace").count("loaded by worker pid") >= workers:
            return
        if server.poll() is not None:
            raise RuntimeError(f"server exited with {server.returncode}")
        time.sleep(0.01)
    raise RuntimeError(f"not all {workers} workers loaded the model in {timeout} s")


def worker_memory(master_pid: int) -> list[dict[str, float]]:
    """Each worker's resident (RSS), unique (USS) and proportional (PSS) memory in MiB."""
    out = []
    for child in psutil.Process(master_pid).children():
        info = child.memory_full_info()
        out.append({"pid": child.pid, "rss_mib": round(info.rss / 2**20, 1),
                    "uss_mib": round(info.uss / 2**20, 1),
                    "pss_mib": round(getattr(info, "pss", 0) / 2**20, 1)})
    return out


def _startup_line(label: str, startup: dict[str, Any]) -> str:
    memory = "; ".join(f"{m['rss_mib']:.0f} / {m['uss_mib']:.0f} / {m['pss_mib']:.0f}"
                       for m in startup.get("memory_after", startup["memory_at_ready"]))
    rounds = " / ".join(f"{t:.2f}" for t in startup.get("start_to_ready_rounds", []))
    return (f"{label}: start to ready (process start to every worker's model loaded) "
            f"{startup['start_to_ready_s']:.2f} s (median; boots: {rounds}); first /ready "
            f"answer after {startup['first_ready_s']:.2f} s. Worker memory after the run "
            f"(RSS / USS / PSS MiB): {memory}.")


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def write_wrk_report(rows: list[dict[str, Any]], startup: dict[str, Any], reports: Path) -> None:
    lines = ["", "## wrk (1 thread; ratios to the bare route of the same round)", "",
             _startup_line("This checkout", startup)]
    if "baseline" in startup:
        lines.append("")
        lines.append(_startup_line(f"Baseline ({startup['baseline']['checkout']})",
                                   startup["baseline"]))
    summary = wrk_summary(rows)
    lines += [
        "", f"Median over {max((s['rounds'] for s in summary), default=0)} round(s). The "
        "reference is the bare route under Gunicorn's stock gevent worker; the bare route under "
        "the project's worker is a second reference. Worker split: each worker's share of its "
        "server's CPU in each round. Before the first round every /health server (the log on "
        "and off) served the same prediction mix; the quiet server (LOG_LEVEL=WARNING) then "
        "serves only /health, the service predictions too. `make bench-log` measures the "
        "log's cost on new servers every round (docs/performance.md).", "",
        "| scenario | median share of bare | range | share of bare (project worker) | req/s | "
        "flights/s | p99 ms (median / max) | server CPU µs/request | worker split by round |",
        "|---|---:|---|---:|---:|---:|---|---:|---|",
    ]
    for x in summary:
        spread = "-" if x["share_of_bare_range"] is None \
            else "{:.2f}-{:.2f}".format(*x["share_of_bare_range"])
        splits = " · ".join("/".join(f"{100 * w:.0f}" for w in split)
                            for split in x["worker_splits"])
        lines.append(f"| {x['title']} | {_fmt(x['median_share_of_bare'], '.2f')} | {spread} | "
                     f"{_fmt(x['median_share_of_bare_project'], '.2f')} | "
                     f"{x['median_rps']:,.0f} | {x['median_flights_per_s']:,} | "
                     f"{x['median_p99_ms']:.1f} / {x['max_p99_ms']:.1f} | "
                     f"{_fmt(x['median_server_cpu_us_per_request'], ',')} | {splits} |")
    lines += [
        "", "| round | scenario | connections | req/s | flights/s | share of bare | "
        "share of bare (project worker) | p50 ms | p99 ms | errors | server CPU µs/request | "
        "worker split |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        cpu = _fmt(r["server_cpu_us_per_request"], ",")
        lines.append(f"| {r['round']} | {r['title']} | {r['connections']} | {r['rps']:,.0f} | "
                     f"{r['flights_per_s']:,} | {_fmt(r['share_of_bare'], '.2f')} | "
                     f"{_fmt(r['share_of_bare_project'], '.2f')} | {r['p50_ms']:.1f} | "
                     f"{r['p99_ms']:.1f} | {r['errors']} | {cpu} | "
                     f"{'/'.join(f'{100 * w:.0f}' for w in r['worker_split'])} |")
    with (reports / "bench.md").open("a") as handle:
        handle.write("\n".join(lines) + "\n")


def _names(text: str) -> tuple[str, ...]:
    return tuple(name for name in text.split(",") if name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the fixed benchmark scenarios.")
    parser.add_argument("--duration", type=int,
                        default=int(os.environ.get("BENCH_DURATION", 10)),
                        help="s per scenario and round")
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", 3)),
                        help="interleaved rounds of all scenarios (0: no Locust scenarios)")
    parser.add_argument("--warmup", type=int,
                        default=int(os.environ.get("BENCH_WARMUP", 10)),
                        help="s of the same load run first and not measured (0: none)")
    parser.add_argument("--users", type=int, default=int(os.environ.get("BENCH_USERS", 64)))
    parser.add_argument("--processes", type=int,
                        default=int(os.environ.get("BENCH_PROCESSES", 1)),
                        help="Locust processes (--processes); 1 measured best here")
    parser.add_argument("--wrk-rounds", type=int,
                        default=int(os.environ.get("BENCH_WRK_ROUNDS", 1)),
                        help="rounds of the wrk scenarios (0: none)")
    parser.add_argument("--wrk-duration", type=int,
                        default=int(os.environ.get("BENCH_WRK_DURATION", 10)))
    parser.add_argument("--wrk-connections", type=int, default=64)
    parser.add_argument("--wrk-history", type=int,
                        default=int(os.environ.get("BENCH_WRK_HISTORY", 6)),
                        help="s of each prediction scenario sent to every /health server "
                             "before the first round (0: none)")
    parser.add_argument("--startup-rounds", type=int,
                        default=int(os.environ.get("BENCH_STARTUP_ROUNDS", 1)),
                        help="boots timed per checkout (the median is reported)")
    parser.add_argument("--baseline", type=Path,
                        default=os.environ.get("BENCH_BASELINE") or None,
                        help="another checkout (e.g. a `git worktree` of main) whose service is "
                             "booted and measured alternately with this one")
    parser.add_argument("--wrk-scenarios", type=_names, default=None,
                        help="comma-separated wrk scenarios to run (default: all)")
    parser.add_argument("--baseline-scenarios", type=_names, default=None,
                        help="comma-separated wrk scenarios also run on --baseline "
                             f"(default: {','.join(wrk.BASELINE_SCENARIOS)})")
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--reports", type=Path, default=REPO_ROOT / "reports")
    args = parser.parse_args(argv)
    if (args.rounds < 0 or args.duration < 1 or args.wrk_rounds < 0 or args.wrk_duration < 1
            or args.startup_rounds < 1 or args.wrk_history < 0):
        parser.error("--rounds/--wrk-rounds/--wrk-history must be >= 0, durations and "
                     "--startup-rounds >= 1")
    known = {s.name for s in wrk.wrk_scenarios()}
    for flag, names in (("--wrk-scenarios", args.wrk_scenarios),
                        ("--baseline-scenarios", args.baseline_scenarios)):
        if names and not set(names) <= known:
            parser.error(f"{flag}: unknown scenario(s) {sorted(set(names) - known)}; "
                         f"known: {', '.join(sorted(known))}")
    if args.baseline is not None and not (args.baseline / "gunicorn.conf.py").is_file():
        parser.error(f"--baseline {args.baseline} is not a checkout (no gunicorn.conf.py)")
    if not args.rounds and not args.wrk_rounds:
        parser.error("nothing to measure: --rounds and --wrk-rounds are both 0")

    out_dir = args.reports / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="scl-bench-") as scratch:
        model_dir, tiny = model_dir_or_tiny(args.model_dir, Path(scratch))
        bare_port, bare_project_port = free_port(), free_port()
        env = {**os.environ, "HOST": "127.0.0.1", "MODEL_DIR": str(model_dir)}
        workers = int(env.get("WEB_CONCURRENCY") or os.cpu_count() or 1)
        log_path, bare_log = out_dir / "server.log", out_dir / "bare.log"
        checkouts = {"service": REPO_ROOT}
        if args.baseline:
            checkouts["baseline"] = args.baseline.resolve()
        booted: dict[str, subprocess.Popen] = {}
        bare = bare_project = quiet = None
        results: list[Result] = []
        wrk_rows: list[dict[str, Any]] = []
        try:
            booted, boots = boot_services(checkouts, env, out_dir, workers,
                                          args.startup_rounds)
            server = booted["service"]
            startup = boots.pop("service")
            if "baseline" in boots:
                startup["baseline"] = boots["baseline"]
            url = f"http://127.0.0.1:{startup['port']}"
            # Started only now, so the start-up times above are the service's own.
            # The reference: stock gevent worker, no config file (Gunicorn would read ours).
            bare = start_server([str(GUNICORN), "--config", "/dev/null", "-k", "gevent",
                                 "-w", str(workers), "-b", f"127.0.0.1:{bare_port}",
                                 "load.bare_app:app"], env, bare_log)
            bare_url = f"http://127.0.0.1:{bare_port}"
            # A second reference, labelled as such: the same bare app under the project's
            # gunicorn.conf.py (its worker class, connection balancing and settings).
            bare_project = start_server([str(GUNICORN), "--config", "gunicorn.conf.py",
                                         "load.bare_app:app"],
                                        {**env, "PORT": str(bare_project_port)},
                                        out_dir / "bare_project.log")
            bare_project_url = f"http://127.0.0.1:{bare_project_port}"
            # The service without its request log, for the log's cost (/health vs this).
            quiet_port = free_port()
            quiet_log = out_dir / "quiet.log"
            quiet_env = {**env, "PORT": str(quiet_port), "LOG_LEVEL": "WARNING"}
            quiet = start_server([str(GUNICORN), "--config", "gunicorn.conf.py"], quiet_env,
                                 quiet_log)
            quiet_url = f"http://127.0.0.1:{quiet_port}"
            wait_ready(bare_url, bare, bare_log, timeout=120)
            wait_ready(bare_project_url, bare_project, out_dir / "bare_project.log",
                       timeout=120)
            wait_ready(quiet_url, quiet, quiet_log, timeout=120)
            servers = {"service": (url, server.pid), "bare": (bare_url, bare.pid),
                       "bare_project": (bare_project_url, bare_project.pid),
                       "quiet": (quiet_url, quiet.pid)}
            if "baseline" in booted:
                servers["baseline"] = (f"http://127.0.0.1:{startup['baseline']['port']}",
                                       booted["baseline"].pid)
            feature_spec = json.loads((model_dir / "metadata.json").read_text())["feature_spec"]
            if args.wrk_rounds:
                wrk_rows = measure_wrk(servers, feature_spec, args, out_dir)
            if args.rounds:
                results = measure(servers, scenarios(args.users), args, out_dir)
            startup["memory_after"] = worker_memory(server.pid)
            if "baseline" in booted:
                startup["baseline"]["memory_after"] = worker_memory(booted["baseline"].pid)
        finally:
            for process in (*booted.values(), bare, bare_project, quiet):
                if process is not None:
                    stop_server(process)
        server_log = log_path.read_text(errors="replace")
    import locust

    meta = {
        "machine": machine(), "locust": locust.__version__, "locust_processes": args.processes,
        "workers": server_log.count("Booting worker with pid"), "duration_s": args.duration,
        "rounds": args.rounds, "warmup_s": args.warmup,
        "worker_class": next((line.split("Using worker: ", 1)[1].strip()
                              for line in server_log.splitlines() if "Using worker: " in line),
                             "unknown"),
        "model_version": json.loads((model_dir / "metadata.json").read_text())["model_version"]
        if not tiny else "tiny", "tiny_model": tiny, "startup": startup, "wrk": wrk_rows,
        "wrk_summary": wrk_summary(wrk_rows),
    }
    write_reports(results, meta, args.reports)
    write_wrk_report(wrk_rows, startup, args.reports)
    print((args.reports / "bench.md").read_text())
    failed = any(r.failures for r in results) or any(r["errors"] for r in wrk_rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
