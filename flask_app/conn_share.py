"""How many connections each worker holds, in memory the master shares with every worker.

Workers share one listening socket and a keep-alive connection stays with the worker that
accepted it, so whichever worker is ready first (at start-up, after a SIGHUP reload, after a
lost worker is replaced) takes a whole burst and keeps it while its sibling idles. With this
table each worker sees every accepting sibling's count and holds only about its fair share:
it stops accepting while above it (the sibling's accept wins the race) and asks surplus
keep-alive clients to reconnect (``Connection: close``), which lands them on the sibling.

The master makes the table before the first fork (an anonymous shared mapping, so forked
workers inherit it), gives each new worker a free slot (``pre_fork``) and clears a dead
worker's slot (``child_exit``); a worker writes only its own slot. Cell 0 is the number of
slots ever handed out (readers scan only those); each slot is three 64-bit cells: pid, state,
connections held. Readers may see a count a moment old; the limits below
leave slack for that. Pure standard library: gunicorn.conf.py loads this in the master.
"""

from __future__ import annotations

import math
import mmap

#: READY: booted, waiting for booting siblings before it accepts (a cold start).
EMPTY, BOOTING, ACCEPTING, RETIRING, READY = 0, 1, 2, 3, 4
_CELLS = 3  # pid, state, held


class ShareTable:
    """Per-worker connection counts in shared memory (the master creates it before forking)."""

    def __init__(self, slots: int = 64) -> None:
        self.slots = slots
        self._map = mmap.mmap(-1, (1 + slots * _CELLS) * 8)
        self.cells = memoryview(self._map).cast("q")

    def assign(self, in_use: set[int]) -> int | None:
        """A free slot for a worker about to be forked, reset to BOOTING (None if all taken)."""
        for slot in range(self.slots):
            if slot not in in_use:
                base = 1 + slot * _CELLS
                self.cells[base], self.cells[base + 1], self.cells[base + 2] = 0, BOOTING, 0
                self.cells[0] = max(self.cells[0], slot + 1)
                return slot
        return None

    def clear(self, slot: int) -> None:
        """A worker has exited: its connections are gone and it accepts nothing."""
        self.cells[1 + slot * _CELLS + 1] = EMPTY
        self.cells[1 + slot * _CELLS + 2] = 0

    def rows(self) -> list[tuple[int, int, int]]:
        """(pid, state, held) per slot in use, for tests and diagnostics."""
        c = self.cells
        return [tuple(c[1 + i * _CELLS:1 + (i + 1) * _CELLS]) for i in range(c[0])]


class WorkerShare:
    """One worker's view of the table: its own count, and the limits its siblings set."""

    def __init__(self, table: ShareTable, slot: int, pid: int) -> None:
        self.cells = table.cells
        self.base = 1 + slot * _CELLS
        self.open = 0
        self.shedding = 0
        self.cells[self.base] = pid

    def set_state(self, state: int) -> None:
        self.cells[self.base + 1] = state

    def _publish(self) -> None:
        self.cells[self.base + 2] = self.open - self.shedding

    def opened(self) -> None:
        self.open += 1
        self._publish()

    def closed(self) -> None:
        self.open -= 1
        self._publish()

    def shed(self) -> None:
        """A connection has been told to close: count it as gone already, so that one loop
        turn's answers do not all decide to shed for the same surplus."""
        self.shedding += 1
        self._publish()

    def shed_done(self) -> None:
        self.shedding -= 1
        self._publish()

    def _totals(self) -> tuple[int, int]:
        """(accepting workers, connections they hold), this worker included."""
        c, workers, held = self.cells, 0, 0
        for base in range(1, 1 + c[0] * _CELLS, _CELLS):
            if c[base + 1] == ACCEPTING:
                workers += 1
                held += c[base + 2]
        return workers, held

    def replacements_booting(self) -> bool:
        """Whether a worker forked after this one has not started accepting yet."""
        c = self.cells
        return any(c[base + 1] == BOOTING for base in range(1, 1 + c[0] * _CELLS, _CELLS)
                   if base != self.base)

    def cold_start(self) -> bool:
        """Whether no worker accepts yet and a sibling is still booting (a fresh start).
        Call it after ``set_state(READY)``: siblings that are READY too are not waited for."""
        c, booting = self.cells, False
        for base in range(1, 1 + c[0] * _CELLS, _CELLS):
            if c[base + 1] == ACCEPTING:
                return False
            booting = booting or (c[base + 1] == BOOTING and base != self.base)
        return booting

    def may_accept(self, waiting: int = 1) -> bool:
        """Whether one more connection keeps this worker within its share (+1/8, at least 1).

        ``waiting`` is how many connections wait in the listen queue (at least the one to be
        accepted): they count in the share, so each worker takes its part of a queued burst
        in one loop turn. Counting only what the workers hold let a worker get just 1/8
        ahead of its sibling per turn, and a 2,000-connection burst took seconds of ~0.5 s
        turns to be accepted. The slack is below the shedding threshold, so a connection
        accepted is never one that would be shed at once."""
        workers, held = self._totals()
        if workers <= 1:
            return True
        fair = (held + max(waiting, 1)) / workers
        return self.open - self.shedding + 1 <= fair + max(1.0, fair / 8)

    def over_share(self) -> bool:
        """Whether this worker holds more than its share (+1/4, at least 1): shed one."""
        workers, held = self._totals()
        if workers <= 1:
            return False
        fair = held / workers
        return self.open - self.shedding > fair + max(1.0, math.floor(fair / 4))
