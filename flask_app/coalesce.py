"""Adaptive batching: concurrent requests in one gevent worker share one XGBoost call.

Every ``inplace_predict`` call pays a fixed cost far larger than one row's share
(docs/performance.md), so under load a worker answering single flights one call at a time
spends most of its CPU on that fixed cost. Here a request hands its encoded
rows to a per-worker :class:`PredictionCoalescer` and waits; a runner greenlet first lets every
other runnable greenlet of the worker reach the same point (it waits for the next turn of the
event loop, after the loop has polled for requests that have arrived meanwhile), then
predicts all queued rows with a single booster call and hands each request its slice.

Under light load a request finds the queue empty and waits one turn of the event loop, a few
microseconds; under heavy load dozens of requests share one call. The answer for a row does not
depend on which other rows share the call (XGBoost scores rows independently; a test compares
it with one call per row).

Each request gets its slice back through a 0 s timer, not gevent's callback queue (where
``AsyncResult.set`` puts the wake-up): a loop turn runs at most 50 callbacks once 5 ms have
passed, while every expired timer (the turns of the worker's kept-alive connections) runs in
the same turn. Woken by callbacks, the 1,000 first requests of a connection burst, batched
together, got their answers 50 per ~0.5 s turn, up to 7 s late (docs/reliability.md).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

import gevent
import numpy as np
from gevent.event import Event
from gevent.hub import Waiter

log = logging.getLogger(__name__)

Predictor = Callable[[np.ndarray], np.ndarray]


class PredictionCoalescer:
    """Queue of (rows, waiter) drained by one runner greenlet per worker."""

    def __init__(self, predict: Predictor, max_rows: int = 8192) -> None:
        self._predict = predict
        self._max_rows = max_rows
        self._queue: deque[tuple[np.ndarray, Waiter]] = deque()
        self._wakeup = Event()
        self._runner: gevent.Greenlet | None = None
        self.calls = 0  # booster calls made, for tests and the curious
        self.rows = 0

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Probabilities for ``matrix``'s rows, computed together with concurrent requests."""
        waiter = Waiter()
        self._queue.append((matrix, waiter))
        if self._runner is None or self._runner.dead:
            self._runner = gevent.spawn(self._run)
        self._wakeup.set()
        return waiter.get()

    def _run(self) -> None:
        while True:
            self._wakeup.wait()
            self._wakeup.clear()
            # One turn of the loop: requests whose bytes have arrived get to validate and
            # enqueue before the booster runs. A positive sleep waits for the next I/O poll;
            # sleep(0) may resume before it (gevent's docs).
            gevent.sleep(1e-6)
            while self._queue:
                self._drain_once()

    def _take(self) -> list[tuple[np.ndarray, Waiter]]:
        taken, rows = [], 0
        while self._queue and (not taken or rows + len(self._queue[0][0]) <= self._max_rows):
            item = self._queue.popleft()
            taken.append(item)
            rows += len(item[0])
        return taken

    def _drain_once(self) -> None:
        taken = self._take()
        try:
            matrix = taken[0][0] if len(taken) == 1 else np.concatenate([m for m, _ in taken])
            out = self._predict(matrix)
        except Exception as exc:  # handed to every waiting request, which answers 500 JSON
            log.exception("batched prediction failed")
            for _, waiter in taken:
                _wake(waiter.throw, exc)
            return
        self.calls += 1
        self.rows += len(out)
        start = 0
        for matrix, waiter in taken:
            _wake(waiter.switch, out[start:start + len(matrix)])
            start += len(matrix)


def _wake(method: Callable, argument: object) -> None:
    """Call a ``Waiter``'s ``switch`` or ``throw`` from the hub on the loop's next round of timers
    (a waiter that is no longer waiting, e.g. its greenlet was killed, just keeps the value)."""
    gevent.get_hub().loop.timer(0).start(method, argument)
