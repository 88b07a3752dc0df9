"""``load/cpu.py``: the server's CPU time, as ``make bench`` reports it per request."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil

from load.cpu import tree_cpu_seconds

# Burns ``argv[1]`` s of CPU, says so, then waits for a line on stdin before it exits.
BURN = ("import sys, time\n"
        "end = time.process_time() + float(sys.argv[1])\n"
        "while time.process_time() < end: pass\n"
        "print('done', flush=True)\n"
        "sys.stdin.readline()\n")


def burner(seconds: float) -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, "-c", BURN, str(seconds)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "done"
    return child


def test_cpu_burnt_by_a_child_counts_while_it_runs_and_after_it_is_reaped() -> None:
    before = tree_cpu_seconds(os.getpid())
    assert before is not None
    child = burner(0.5)
    running = tree_cpu_seconds(os.getpid())
    child.communicate("\n", timeout=30)  # exits and is reaped by this process
    reaped = tree_cpu_seconds(os.getpid())
    assert running is not None and running - before >= 0.45
    assert reaped is not None and reaped - before >= 0.45


def test_cpu_of_a_process_outside_the_tree_does_not_count() -> None:
    idle = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()"],
                            stdin=subprocess.PIPE, text=True)
    try:
        before = tree_cpu_seconds(idle.pid)
        sibling = burner(0.5)  # a child of this process, not of ``idle``
        sibling.communicate("\n", timeout=30)
        after = tree_cpu_seconds(idle.pid)
    finally:
        idle.communicate("\n", timeout=30)
    assert before is not None and after is not None
    assert after - before < 0.1


def test_a_process_that_is_gone_is_not_measured() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not psutil.pid_exists(child.pid)
    assert tree_cpu_seconds(child.pid) is None
