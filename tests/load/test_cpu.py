"""``load/cpu.py``: the server's CPU time, as ``make bench`` reports it per request."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from load.cpu import tree_cpu_seconds

TICKS = os.sysconf("SC_CLK_TCK")


def write_stat(proc: Path, pid: int, comm: str, ppid: int, utime: int, stime: int,
               cutime: int, cstime: int) -> None:
    """A /proc/<pid>/stat line laid out as proc(5) describes it (fields 1-17, then more)."""
    (proc / str(pid)).mkdir(parents=True)
    fields = [str(pid), f"({comm})", "S", str(ppid), *["0"] * 9, str(utime), str(stime),
              str(cutime), str(cstime), "20", "0", "1", "0"]
    (proc / str(pid) / "stat").write_text(" ".join(fields) + "\n")


def test_master_children_and_reaped_children_count_others_do_not(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    # A command name with spaces and parentheses must not shift the fields.
    write_stat(proc, 100, "gunicorn: (master) [app]", 1, 5, 3, 7, 1)   # own 8 + reaped 8
    write_stat(proc, 101, "gunicorn: worker", 100, 20, 4, 50, 50)      # 24; its cutime not ours
    write_stat(proc, 102, "gunicorn: worker", 100, 6, 0, 0, 0)         # 6
    write_stat(proc, 103, "locust", 1, 1000, 1000, 0, 0)               # not in the tree
    write_stat(proc, 104, "sh", 101, 300, 300, 0, 0)                   # a grandchild: not counted
    assert tree_cpu_seconds(100, proc) == pytest.approx((8 + 8 + 24 + 6) / TICKS)


def test_a_process_that_is_gone_is_not_measured(tmp_path: Path) -> None:
    assert tree_cpu_seconds(4242, tmp_path / "proc") is None


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
def test_cpu_burnt_by_a_child_counts_while_it_runs_and_after_it_is_reaped() -> None:
    before = tree_cpu_seconds(os.getpid())
    assert before is not None
    burn = ("import sys, time\n"
            "end = time.process_time() + 0.5\n"
            "while time.process_time() < end: pass\n"
            "print('done', flush=True)\n"
            "sys.stdin.readline()\n")
    child = subprocess.Popen([sys.executable, "-c", burn], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "done"
        running = tree_cpu_seconds(os.getpid())
    finally:
        child.communicate("\n", timeout=30)
    reaped = tree_cpu_seconds(os.getpid())
    assert running - before >= 0.45
    assert reaped - before >= 0.45
