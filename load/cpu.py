"""CPU time a process tree has used, read from Linux's ``/proc``, for ``make bench``.

Requests per second move by 15-25 % from one minute to the next on a shared machine; the CPU
the server spends per request moves much less, and it says where a gap to the ceiling comes
from (the service's own work, or a load generator that shares the cores). Gunicorn's workers
are children of the master, so the master's process id is enough to find them.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")


def tree_cpu_seconds(pid: int, proc: Path = PROC) -> float | None:
    """User + system CPU seconds of ``pid``, its live children and its reaped children.

    A worker that exited and was reaped by ``pid`` (a Gunicorn master replacing a worker)
    still counts, through the master's ``cutime``/``cstime``. ``None`` where there is no
    ``/proc`` (not Linux), so a report can say "not measured" instead of guessing.
    """
    if not (proc / str(pid) / "stat").exists():
        return None
    ticks = 0
    for stat in proc.glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended between the listing and the read
            continue
        # Field 2 (the command name) may hold spaces and parentheses: split after the last ")".
        # Then index 0 is field 3 (state): ppid is field 4, utime/stime 14/15, cutime/cstime
        # 16/17 (proc(5)).
        fields = text[text.rindex(")") + 2:].split()
        this_pid = int(stat.parent.name)
        if this_pid == pid:
            ticks += sum(int(f) for f in fields[11:15])
        elif int(fields[1]) == pid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")
