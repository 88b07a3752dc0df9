"""CPU time a process tree has used, for ``make bench`` (through psutil, Locust's own
dependency).

Requests per second move by 15-25 % from one minute to the next on a shared machine; the CPU
the server spends per request moves much less, and it says where a gap to the ceiling comes
from (the service's own work, or a load generator that shares the cores). Gunicorn's workers
are children of the master, so the master's process id is enough to find them.
"""

from __future__ import annotations

import psutil


def tree_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` and its descendants, live or already reaped.

    A live process counts through its own times; one that exited and was reaped (a worker the
    Gunicorn master replaced) through its parent's ``children_user``/``children_system``, so
    nothing is counted twice. ``None`` if ``pid`` is gone: a report then says "not measured"
    instead of guessing.
    """
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    total = 0.0
    for process in tree:
        try:
            times = process.cpu_times()
        except psutil.Error:  # it ended between the listing and the read
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total
