"""Finished answers to repeated single-flight requests, keyed by the request body's exact bytes.

Clients of a departure board send the same few thousand bodies again and again. The row cache
in ``flask_app/model.py`` already spares the booster for those, but each repeat still paid for
parsing, marshmallow validation, encoding and JSON output, about an eighth of such a request's
server CPU (docs/performance.md, whole-answer cache).

What is kept is the JSON the view produced for the first request with those bytes. Parsing and
validation are pure functions of the bytes (the view checks the headers before looking here),
and the model that scored them owns this cache, so a repeat gets the very answer the full path
would give it. Only 200 answers are stored: an invalid body is validated, and refused, every
time.
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import suppress
from typing import NamedTuple

#: Longest body kept. A single flight is ~60-130 bytes; the limit bounds the cache's memory
#: (entries x this) whatever clients send.
MAX_BODY_BYTES = 1024


class Answer(NamedTuple):
    """A response body, and how many of its flights were predicted delayed (for the metrics)."""

    payload: bytes
    delayed: int


class AnswerCache:
    """A bounded LRU map from request body to :class:`Answer`, one per served model.

    An ``OrderedDict`` is the standard library's LRU building block; every operation here is a
    single dict step with no I/O, so greenlets of one worker never see it half-updated.
    """

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, Answer] = OrderedDict()
        self.hits = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, body: object) -> bool:
        return body in self._entries

    @staticmethod
    def accepts(body: bytes) -> bool:
        return len(body) <= MAX_BODY_BYTES

    def get(self, body: bytes) -> Answer | None:
        answer = self._entries.get(body)
        if answer is not None:
            self.hits += 1
            # Evicted by another thread in between (a threaded server): nothing to move.
            with suppress(KeyError):
                self._entries.move_to_end(body)
        return answer

    def put(self, body: bytes, answer: Answer) -> None:
        if self.max_entries <= 0 or not self.accepts(body):
            return
        # A fresh copy of exactly the payload's size: orjson builds its output in a 4 KiB
        # buffer and the bytes it returns keep that allocation, so 16,384 kept answers held
        # 64 MiB of a worker instead of ~2 MiB.
        answer = Answer(memoryview(answer.payload).tobytes(), answer.delayed)
        # Removed first so that the new entry goes in as the most recently used.
        self._entries.pop(body, None)
        self._entries[body] = answer
        while len(self._entries) > self.max_entries:
            with suppress(KeyError):  # emptied by another thread in between
                self._entries.popitem(last=False)
