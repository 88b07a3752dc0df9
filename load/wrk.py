"""wrk scenarios for ``make bench``: the same-run ratios the speed targets are stated in.

Locust is the project's load tool, but in Python it takes a large share of the two cores it
shares with the server, so the speed targets are stated with wrk (C, one thread, 64
connections, 10 s per scenario): it leaves the server nearly all of the second core. Every
scenario of one run is measured against the bare Flask route (load/bare_app.py) from the same
run, never against a number from another minute.

Request bodies are written to a file before a scenario and loaded by a small Lua script, which
formats every request once at start-up, so wrk spends no CPU on drawing flights. "Every flight
new" bodies are distinct from each other and from every body sent earlier in the run, with all
five inputs, drawn from the locustfile's traffic profile (real routes and schedules), so no
cache of the service can answer them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

WRK = shutil.which("wrk")

# Loads one request body per line of the file named by the first script argument; cycles.
LUA = """
local requests = {}
local next_one = 0
init = function(args)
  local method = args[2] or "POST"
  local headers = {["Content-Type"] = "application/json"}
  for line in io.lines(args[1]) do
    if method == "GET" then
      requests[#requests + 1] = wrk.format("GET", line)
    else
      requests[#requests + 1] = wrk.format("POST", args[3], headers, line)
    end
  end
end
request = function()
  next_one = next_one % #requests + 1
  return requests[next_one]
end
"""


@dataclass(frozen=True)
class WrkScenario:
    name: str
    title: str
    # "bare", "bare_project" (load/bare_app.py under gunicorn.conf.py), "service", "quiet" (the
    # service with LOG_LEVEL=WARNING) or "baseline" (the service from another checkout)
    server: str
    body: str  # "health", "repeat", "new" or "batch"
    connections: int = 64
    batch_size: int = 1


def wrk_scenarios(connections: int = 64) -> list[WrkScenario]:
    """The targets' scenarios, bare route first: each ratio is to that row of the same round."""
    return [
        WrkScenario("bare", "bare Flask route, fixed answer, stock gevent worker", "bare",
                    "repeat", connections),
        WrkScenario("bare_project", "bare Flask route, fixed answer, the project's worker "
                    "(second reference)", "bare_project", "repeat", connections),
        WrkScenario("health", "GET /health", "service", "health", connections),
        WrkScenario("health_quiet", "GET /health, LOG_LEVEL=WARNING (no request log)", "quiet",
                    "health", connections),
        WrkScenario("single", "POST /predict, one repeated flight", "service", "repeat",
                    connections),
        WrkScenario("single_new", "POST /predict, every flight new (all five inputs)",
                    "service", "new", connections),
        WrkScenario("batch1000", "POST /predict, batches of 1,000 new flights", "service",
                    "batch", 8, 1000),
    ]


#: The scenarios also run against the baseline checkout (``make bench`` ``--baseline``).
BASELINE_SCENARIOS = ("single", "single_new")


def with_baseline(scenarios: list[WrkScenario],
                  names: tuple[str, ...] = BASELINE_SCENARIOS) -> list[WrkScenario]:
    """``scenarios`` with a baseline copy right after each one named in ``names`` (by default
    :data:`BASELINE_SCENARIOS`), so old and new code alternate within every round."""
    out = []
    for scenario in scenarios:
        out.append(scenario)
        if scenario.name in names:
            out.append(replace(scenario, name=f"baseline_{scenario.name}",
                               title=f"{scenario.title} [baseline checkout]",
                               server="baseline"))
    return out


@dataclass
class WrkSample:
    requests: int
    seconds: float
    errors: int  # non-2xx answers plus socket errors
    p50_ms: float
    p99_ms: float
    server_cpu_s: float | None = None
    distinct_bodies: int = 0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)([a-z]+)", text).groups()
    return float(number) * _UNITS[unit]


def parse_wrk(output: str) -> WrkSample:
    """Requests, seconds, errors and the p50/p99 latency from wrk's ``--latency`` report."""
    done = re.search(r"(\d+) requests in ([0-9.]+)(\w+),", output)
    if done is None:
        raise ValueError(f"not a wrk report:\n{output[-2000:]}")
    seconds = _ms(f"{done.group(2)}{done.group(3)}") / 1000.0
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", output))
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       output)
    if socket:
        errors += sum(int(n) for n in socket.groups())
    p50 = re.search(r"^\s+50%\s+(\S+)\s*$", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)\s*$", output, re.MULTILINE)
    return WrkSample(int(done.group(1)), seconds, errors,
                     _ms(p50.group(1)) if p50 else float("nan"),
                     _ms(p99.group(1)) if p99 else float("nan"))


class Bodies:
    """Request bodies for the scenarios, new flights never repeating within one bench run."""

    def __init__(self, feature_spec: dict[str, Any], seed: int = 15) -> None:
        import random

        import locustfile

        profile = json.loads(locustfile.PROFILE_PATH.read_text(encoding="utf-8"))
        self.traffic = locustfile.Traffic(profile, feature_spec)
        self.traffic.inputs = locustfile.Sampler.of([(("Fecha-I", "SIGLADES"), 1)])
        self.rng = random.Random(seed)
        self.seen: set[bytes] = set()
        self.repeat = self.encode(self.traffic.flight(random.Random(seed)))

    @staticmethod
    def encode(payload: Any) -> bytes:
        return json.dumps(payload, separators=(",", ":")).encode()

    def new_flights(self, count: int) -> Iterator[dict[str, Any]]:
        made = 0
        while made < count:
            flight = self.traffic.flight(self.rng)
            key = self.encode(flight)
            if key in self.seen:
                continue
            self.seen.add(key)
            made += 1
            yield flight

    def lines(self, scenario: WrkScenario, count: int) -> list[bytes]:
        if scenario.body == "health":
            return [b"/health"]
        if scenario.body == "repeat":
            return [self.repeat]
        if scenario.body == "new":
            return [self.encode(f) for f in self.new_flights(count)]
        return [self.encode({"flights": list(self.new_flights(scenario.batch_size))})
                for _ in range(count)]


def run_wrk(url: str, scenario: WrkScenario, lines: list[bytes], duration: int,
            scratch: Path) -> tuple[WrkSample, str]:
    """One wrk run (1 thread) of ``scenario`` against ``url``; the sample and wrk's report."""
    if WRK is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install -y wrk)")
    script = scratch / "bodies.lua"
    script.write_text(LUA)
    bodies = scratch / f"{scenario.name}.txt"
    bodies.write_bytes(b"\n".join(lines) + b"\n")
    method = "GET" if scenario.body == "health" else "POST"
    cmd = [WRK, "-t1", f"-c{scenario.connections}", f"-d{duration}s", "--latency",
           "--timeout", "10s", "-s", str(script), url, "--", str(bodies), method, "/predict"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-2000:]}")
    sample = parse_wrk(done.stdout)
    sample.distinct_bodies = len(lines)
    return sample, done.stdout


#: The bench's prediction scenarios, in its order: what its service serves between its /health
#: rows. A server that has served them pays more for its request line than a new one
#: (docs/performance.md, issue 15 round 8), so every server whose /health is compared first
#: gets the same mix (a "history"), as production servers have.
HISTORY = ("single", "single_new", "batch1000")
History = tuple[int, list[tuple[WrkScenario, list[bytes]]]]


def history_bodies(bodies: Bodies, seconds: int) -> History:
    """The bodies of :data:`HISTORY`, ``seconds`` each, made once so that every server is sent
    the same ones; enough new flights that none repeats within one server's history."""
    plan = [s for s in wrk_scenarios() if s.name in HISTORY]
    return seconds, [(s, bodies.lines(s, 16 if s.body == "batch" else 12_000 * seconds))
                     for s in plan]


def send_history(url: str, history: History, scratch: Path) -> tuple[int, int]:
    """Send ``url`` the history; the requests it served and the errors among them."""
    seconds, plan = history
    served = failed = 0
    for scenario, lines in plan:
        sample = run_wrk(url, scenario, lines, seconds, scratch)[0]
        served, failed = served + sample.requests, failed + sample.errors
    return served, failed
