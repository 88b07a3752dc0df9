"""``make soak``: the conditions real deployments meet, each against a freshly started server.

Conditions (docs/reliability.md has the targets and the figures):

* ``burst-repeat`` / ``burst-new``: wrk opens 2,000 connections the moment ``/ready`` first
  answers (a deploy, a scale-up, a balancer reconnecting its pool), one repeated flight or
  every flight new; repeated over ``--starts`` fresh starts.
* ``batch8``: 8 keep-alive connections sending batches of 1,000 flights, 2 s after ``/ready``.
* ``sighup``: SIGHUP to the master while 2,000 connections send; the share is of what the new
  workers serve.
* ``slow``: 10,000 connections that send part of a request's headers and then a byte every
  3 s, with a normal client probing ``/predict`` on new connections meanwhile.
* ``kill9``: ``kill -9`` of a worker under 500 connections: how soon answers resume, what it
  cost.

wrk (Debian package ``wrk``) drives the HTTP load; the slow clients and probes are asyncio.
Which worker answered comes from the service's own per-request log line (its ``pid``). Only
loopback is used; every run is bounded in time. Prints a table and writes reports/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

# The checkout whose server is started (SOAK_SERVER_ROOT: compare another version of the code).
ROOT = Path(os.environ.get("SOAK_SERVER_ROOT") or Path(__file__).resolve().parents[1])
GUNICORN = Path(sys.executable).with_name("gunicorn")
FLIGHT = {"OPERA": "Grupo LATAM", "TIPOVUELO": "N", "MES": 3, "Fecha-I": "2017-03-05 21:30",
          "SIGLADES": "Antofagasta"}
CONDITIONS = ("burst-repeat", "burst-new", "batch8", "sighup", "slow", "kill9")

# wrk scripts. "New" flights walk through the year minute by minute, so no two requests of a
# run ask about the same flight (the answer cache never helps).
_POST = 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
REPEAT_LUA = _POST + "wrk.body = '{body}'\n"
NEW_LUA = _POST + """
local threads = 0
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end
local n = 0
request = function()
  n = n + 1
  local minute = (id * 262800 + n * 7) % 525600
  local day = math.floor(minute / 1440) % 336
  local month = math.floor(day / 28) + 1
  local body = string.format('{"OPERA": "Grupo LATAM", "TIPOVUELO": "N", "MES": %d, ' ..
    '"Fecha-I": "2017-%02d-%02d %02d:%02d", "SIGLADES": "Antofagasta"}', month, month,
    (day % 28) + 1, math.floor(minute / 60) % 24, minute % 60)
  return wrk.format(nil, nil, nil, body)
end
"""


@dataclass
class Run:
    """One condition's run: what wrk or the asyncio clients saw, and who served it."""

    condition: str
    requests: int = 0
    failures: int = 0  # socket errors (connect/read/write) and non-2xx answers
    timeouts: int = 0
    shares: dict[str, int] = field(default_factory=dict)  # answers per worker pid
    p50: float = 0.0  # seconds
    p99: float = 0.0
    extra: dict = field(default_factory=dict)

    def min_share(self) -> float:
        total = sum(self.shares.values())
        return min(self.shares.values()) / total if total and len(self.shares) > 1 else 0.0


# --- the server ------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``gunicorn --config gunicorn.conf.py`` as `make serve` runs it, log in a file."""

    def __init__(self, scratch: Path, model_dir: str, workers: int = 2,
                 env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = scratch / f"server-{self.port}-{time.monotonic_ns()}.log"
        full_env = {**os.environ, "PORT": str(self.port), "HOST": "127.0.0.1",
                    "MODEL_DIR": model_dir, "WEB_CONCURRENCY": str(workers),
                    "LOG_LEVEL": "info", **(env or {})}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(GUNICORN), "--config", "gunicorn.conf.py"], cwd=ROOT, env=full_env,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60.0, interval: float = 0.01) -> None:
        """Return the moment ``/ready`` first answers 200 (polled every 10 ms)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(interval)
        raise RuntimeError(f"server not ready after {timeout}s: {self.log()[-2000:]}")

    def loaded_pids(self) -> list[int]:
        """Workers that have loaded the model, in the order they did."""
        return [int(p) for p in re.findall(r"loaded by worker pid (\d+)", self.log())]

    def wait_loaded(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.loaded_pids()) < count and time.monotonic() < deadline:
            time.sleep(0.05)

    def worker_pids(self) -> list[int]:
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return sorted(int(p) for p in path.read_text().split())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


@contextlib.contextmanager
def serving(scratch: Path, model_dir: str, **kwargs) -> Iterator[Server]:
    server = Server(scratch, model_dir, **kwargs)
    try:
        yield server
    finally:
        server.stop()


def served_by(log: str, start: int = 0) -> Counter[int]:
    """/predict answers per worker pid, from the request log lines after offset ``start``."""
    counts: Counter[int] = Counter()
    for line in log[start:].splitlines():
        if '"route":"/predict"' in line and line.startswith("{"):
            counts[json.loads(line)["pid"]] += 1
    return counts


# --- wrk -------------------------------------------------------------------------------------

_UNIT = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _seconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * _UNIT[unit]


def parse_wrk(output: str) -> dict:
    """Requests, errors and latency percentiles from wrk's ``--latency`` report."""
    out = {"requests": int(re.search(r"(\d+) requests in", output).group(1)),
           "connect": 0, "read": 0, "write": 0, "timeout": 0, "non2xx": 0}
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       output)
    if errors:
        out.update(zip(("connect", "read", "write", "timeout"), map(int, errors.groups()),
                       strict=True))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non2xx:
        out["non2xx"] = int(non2xx.group(1))
    for pct in ("50", "99"):
        match = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+(?:us|ms|s|m))\s*$", output, re.M)
        out[f"p{pct}"] = _seconds(match.group(1)) if match else 0.0
    return out


def wrk_command(url: str, script: Path, connections: int, seconds: float,
                threads: int = 2, timeout: int = 10) -> list[str]:
    return ["wrk", f"-t{min(threads, connections)}", f"-c{connections}", f"-d{seconds:g}s",
            f"--timeout={timeout}s", "--latency", "-s", str(script), f"{url}/predict"]


def run_wrk(command: list[str]) -> dict:
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True)
    return parse_wrk(done.stdout)


def from_wrk(condition: str, result: dict, shares: Counter[int], **extra) -> Run:
    return Run(condition, requests=result["requests"],
               failures=result["connect"] + result["read"] + result["write"] + result["non2xx"],
               timeouts=result["timeout"], shares={str(k): v for k, v in shares.items()},
               p50=result["p50"], p99=result["p99"], extra=extra)


def write_script(scratch: Path, name: str, text: str) -> Path:
    path = scratch / name
    path.write_text(text)
    return path


def batch_body(size: int = 1000) -> str:
    return json.dumps({"flights": [{**FLIGHT, "Fecha-I": f"2017-03-{1 + i % 28:02d} "
                                                        f"{i % 24:02d}:{i % 60:02d}"}
                                   for i in range(size)]})


# --- conditions ------------------------------------------------------------------------------

def burst(args: argparse.Namespace, scratch: Path, new: bool) -> list[Run]:
    """``--connections`` wrk connections started the moment /ready first answers."""
    script = write_script(scratch, "new.lua" if new else "repeat.lua",
                          NEW_LUA if new else REPEAT_LUA.format(body=json.dumps(FLIGHT)))
    runs = []
    for _ in range(args.starts):
        with serving(scratch, args.model_dir) as server:
            server.wait_ready()
            result = run_wrk(wrk_command(server.url, script, args.connections, args.seconds))
            runs.append(from_wrk("burst-new" if new else "burst-repeat", result,
                                 served_by(server.log())))
    return runs


def batch8(args: argparse.Namespace, scratch: Path) -> list[Run]:
    """8 keep-alive connections sending batches of 1,000 flights, 2 s after /ready."""
    script = write_script(scratch, "batch.lua", REPEAT_LUA.format(body=batch_body()))
    runs = []
    for _ in range(args.starts):
        with serving(scratch, args.model_dir) as server:
            server.wait_ready()
            time.sleep(2)
            result = run_wrk(wrk_command(server.url, script, 8, args.seconds, timeout=30))
            runs.append(from_wrk("batch8", result, served_by(server.log())))
    return runs


def sighup(args: argparse.Namespace, scratch: Path) -> list[Run]:
    """SIGHUP 3 s into a run of ``--connections`` connections that goes on ``--seconds`` after
    the new workers are serving; the share is of what the new workers serve."""
    script = write_script(scratch, "repeat.lua", REPEAT_LUA.format(body=json.dumps(FLIGHT)))
    with serving(scratch, args.model_dir) as server:
        server.wait_ready()
        server.wait_loaded(2)
        # wrk's duration is fixed up front: leave room for the reload (a model check in a
        # subprocess, then two workers booting), then stop wrk with SIGINT once the new
        # workers have served ``--seconds``; wrk prints its report on SIGINT.
        load = subprocess.Popen(wrk_command(server.url, script, args.connections, 600),
                                stdout=subprocess.PIPE, text=True)
        time.sleep(3)
        offset = len(server.log())
        hup = time.monotonic()
        server.process.send_signal(signal.SIGHUP)
        deadline = hup + 60
        while len(server.loaded_pids()) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        reloaded = time.monotonic() - hup
        time.sleep(args.seconds)
        load.send_signal(signal.SIGINT)
        output, _ = load.communicate(timeout=60)
        new = set(server.loaded_pids()[2:])
        after = served_by(server.log(), offset)
        shares = Counter({pid: n for pid, n in after.items() if pid in new})
        return [from_wrk("sighup", parse_wrk(output), shares, reload_s=reloaded,
                         old_workers_after_hup=sum(n for p, n in after.items() if p not in new))]


def kill9(args: argparse.Namespace, scratch: Path) -> list[Run]:
    """``kill -9`` of one worker under 500 connections; probe until answers resume."""
    import psutil

    script = write_script(scratch, "repeat.lua", REPEAT_LUA.format(body=json.dumps(FLIGHT)))
    seconds = max(args.seconds, 12)
    connections = min(args.connections, 500)
    with serving(scratch, args.model_dir) as server:
        server.wait_ready()
        server.wait_loaded(2)
        load = subprocess.Popen(wrk_command(server.url, script, connections, seconds),
                                stdout=subprocess.PIPE, text=True)
        time.sleep(seconds / 3)
        victim = server.worker_pids()[0]
        held = sum(1 for c in psutil.Process(victim).net_connections("tcp")
                   if c.status == psutil.CONN_ESTABLISHED)
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        first_answer = replacement_answer = None
        body = json.dumps(FLIGHT).encode()
        while replacement_answer is None and time.monotonic() - killed < 30:
            pid = probe(server.url, body)
            now = time.monotonic() - killed
            if pid is not None:
                first_answer = first_answer if first_answer is not None else now
                if pid != victim and pid not in server.loaded_pids()[:2]:
                    replacement_answer = now
            time.sleep(0.05)
        output, _ = load.communicate(timeout=seconds + 60)
        return [from_wrk("kill9", parse_wrk(output), served_by(server.log()),
                         victim_connections=held, first_answer_s=first_answer,
                         replacement_answer_s=replacement_answer)]


def probe(url: str, body: bytes, timeout: float = 5.0) -> int | None:
    """One /predict on a new connection: the answering worker's pid, or None."""
    request = urllib.request.Request(f"{url}/predict", data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Connection": "close"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return int(resp.headers["X-Worker-PID"]) if resp.status == 200 else None
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError, ValueError):
        return None


def slow(args: argparse.Namespace, scratch: Path) -> list[Run]:
    """``--slow`` clients trickling their headers while a normal client probes."""
    header_timeout = int(os.environ.get("REQUEST_HEADER_TIMEOUT") or 10)
    with serving(scratch, args.model_dir) as server:
        server.wait_ready()
        server.wait_loaded(2)
        result = asyncio.run(slow_clients(server.url, args.slow, header_timeout))
    return [Run("slow", requests=result["probes"], failures=result["probe_failures"],
                timeouts=result["probe_timeouts"], shares=result["shares"],
                p50=result["p50"], p99=result["p99"],
                extra={k: result[k] for k in ("slow", "opened", "closed_by_deadline",
                                              "answered_408", "latest_close_s",
                                              "header_timeout")})]


async def slow_clients(url: str, count: int, header_timeout: float) -> dict:
    """Open ``count`` slow connections, probe every 0.2 s until all are closed (or the
    deadline + 5 s passes), and report probe latency and how each slow one ended."""
    host, port = url.removeprefix("http://").split(":")
    closes: list[tuple[float, bool]] = []  # (seconds from first byte to close, got a 408)
    opened = 0
    gate = asyncio.Semaphore(256)  # connects in flight at once (the listen backlog is 4,096)

    async def one() -> None:
        nonlocal opened
        async with gate:
            try:
                reader, writer = await asyncio.open_connection(host, int(port))
            except OSError:
                return
        opened += 1
        started = time.monotonic()
        writer.write(b"POST /predict HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json"
                     b"\r\n")
        got = b""
        try:
            while True:
                try:
                    chunk = await asyncio.wait_for(reader.read(4096), 3.0)
                except TimeoutError:
                    writer.write(b"X")  # one more byte of a header that never ends
                    continue
                if not chunk:
                    break
                got += chunk
        except OSError:
            pass
        closes.append((time.monotonic() - started, got.startswith(b"HTTP/1.1 408")))
        writer.close()

    async def prober(stop: asyncio.Event) -> tuple[list[float], Counter[str], int, int]:
        latencies, shares, failures, timeouts = [], Counter(), 0, 0
        body = json.dumps(FLIGHT).encode()
        request = (b"POST /predict HTTP/1.1\r\nHost: probe\r\nContent-Type: application/json"
                   b"\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
        while not stop.is_set():
            started = time.monotonic()
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, int(port)), 5)
                writer.write(request)
                answer = await asyncio.wait_for(reader.read(), 5)
                writer.close()
                if answer.startswith(b"HTTP/1.1 200"):
                    latencies.append(time.monotonic() - started)
                    pid = re.search(rb"X-Worker-PID: (\d+)", answer)
                    shares[pid.group(1).decode() if pid else "?"] += 1
                else:
                    failures += 1
            except TimeoutError:
                timeouts += 1
            except OSError:
                failures += 1
            await asyncio.sleep(0.2)
        return latencies, shares, failures, timeouts

    stop = asyncio.Event()
    probing = asyncio.create_task(prober(stop))
    clients = [asyncio.create_task(one()) for _ in range(count)]
    await asyncio.wait(clients, timeout=header_timeout + 20)
    stop.set()
    latencies, shares, failures, timeouts = await probing
    for task in clients:
        task.cancel()
    latencies.sort()
    late = [t for t, _ in closes if t > header_timeout + 1.0]
    return {"slow": count, "opened": opened, "probes": len(latencies) + failures + timeouts,
            "probe_failures": failures, "probe_timeouts": timeouts, "shares": dict(shares),
            "p50": pct(latencies, 0.5), "p99": pct(latencies, 0.99),
            "closed_by_deadline": len(closes) - len(late),
            "answered_408": sum(1 for _, got in closes if got),
            "latest_close_s": max((t for t, _ in closes), default=0.0),
            "header_timeout": header_timeout}


def pct(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, int(fraction * len(values)))] if values else 0.0


# --- report ----------------------------------------------------------------------------------

def table(runs: list[Run]) -> str:
    """One row per condition: totals over its runs, the worst per-worker share of any run,
    the median of the runs' p50 and the worst p99."""
    lines = ["| condition | runs | requests | failures | timeouts | lowest worker share "
             "| p50 | p99 | p99/p50 | notes |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for condition in CONDITIONS:
        mine = [r for r in runs if r.condition == condition]
        if not mine:
            continue
        p50s = sorted(r.p50 for r in mine)
        p50, p99 = p50s[len(p50s) // 2], max(r.p99 for r in mine)
        notes = "; ".join(f"{k}={_fmt(v)}" for r in mine[:1] for k, v in r.extra.items())
        lines.append(
            f"| {condition} | {len(mine)} | {sum(r.requests for r in mine):,} | "
            f"{sum(r.failures for r in mine):,} | {sum(r.timeouts for r in mine):,} | "
            f"{100 * min(r.min_share() for r in mine):.0f} % | {p50 * 1000:.0f} ms | "
            f"{p99 * 1000:.0f} ms | {p99 / p50 if p50 else 0:.1f} | {notes} |")
    return "\n".join(lines)


def _fmt(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def raise_open_files(wanted: int) -> None:
    """Each client connection is a descriptor here and one in the server: raise the soft
    limit to the hard one (10,000 slow clients need more than the usual 1,024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(wanted, soft)), hard))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    parser.add_argument("--starts", type=int, default=10, help="fresh starts per burst test")
    parser.add_argument("--seconds", type=float, default=8, help="wrk duration per run")
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--slow", type=int, default=10000, help="slow clients")
    parser.add_argument("--model-dir", default=os.environ.get("MODEL_DIR", "model_artifacts"))
    parser.add_argument("--json", default="reports/soak.json")
    args = parser.parse_args(argv)
    chosen = [c.strip() for c in args.conditions.split(",") if c.strip()]
    if unknown := set(chosen) - set(CONDITIONS):
        parser.error(f"unknown conditions {sorted(unknown)}; choose from {CONDITIONS}")
    if shutil.which("wrk") is None and set(chosen) - {"slow"}:
        parser.error("wrk is not installed (Debian: apt-get install wrk)")
    raise_open_files(args.slow + args.connections + 1000)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="scl-soak-") as tmp:
        scratch = Path(tmp)
        for condition in chosen:
            started = time.monotonic()
            if condition in ("burst-repeat", "burst-new"):
                done = burst(args, scratch, new=condition == "burst-new")
            else:
                done = {"batch8": batch8, "sighup": sighup, "slow": slow,
                        "kill9": kill9}[condition](args, scratch)
            runs += done
            for run in done:
                print(json.dumps(asdict(run)), flush=True)
            print(f"# {condition}: {time.monotonic() - started:.0f} s", file=sys.stderr)
    print(table(runs))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps([asdict(r) for r in runs], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
