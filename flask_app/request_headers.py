"""Request headers for the gevent worker, read without the ``email`` package.

gevent's WSGI server parses headers with ``http.client.parse_headers``, which builds an
``email.message.Message`` through the feed parser: under load that was a tenth of a new
flight's CPU in the worker (docs/performance.md). HTTP/1.1 headers need far less: one
``name: value`` per line up to a blank line (RFC 9112 section 5). This reader keeps the stdlib's
limits (64 KiB per line, 100 headers) and is stricter where RFC 9112 allows it: a line that is
not ``token ":" value`` (no colon, space before the colon, an obs-fold continuation) is refused
with a 400, as the RFC permits, instead of being folded into the previous value.

It has no third-party imports: gunicorn.conf.py's worker module loads it by path in the master.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import BinaryIO

#: The stdlib's limits (http.client's _MAXLINE and _MAXHEADERS), which gevent inherited.
MAX_LINE = 65536
MAX_HEADERS = 100
#: RFC 9110 token characters: what a field name may be made of.
_FIELD_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_OWS = " \t\r\n"
_END = (b"\r\n", b"\n", b"")
# Headers the WSGI environ carries without the HTTP_ prefix (gevent adds them itself).
_UNPREFIXED = frozenset(("CONTENT_TYPE", "CONTENT_LENGTH"))


class RequestHeaders:
    """The part of ``http.client.HTTPMessage``'s interface that gevent and Gunicorn use:
    ``status``, ``get``/``getheader`` (first value, any case), ``typeheader``, ``del``,
    ``items`` (the access log) and ``headers`` (the raw lines)."""

    __slots__ = ("_first", "pairs", "status")

    def __init__(self, pairs: list[tuple[str, str]], status: str = "") -> None:
        self.pairs = pairs  # (name as sent, value without surrounding whitespace), in order
        first: dict[str, str] = {}
        for name, value in pairs:
            first.setdefault(name.lower(), value)
        self._first = first
        self.status = status  # "" or why the block was unreadable (gevent answers 400)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._first.get(name.lower(), default)

    getheader = get

    @property
    def typeheader(self) -> str | None:
        return self._first.get("content-type")

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._first

    def __delitem__(self, name: str) -> None:
        """Remove every field of that name (as ``email.message.Message`` does)."""
        low = name.lower()
        self.pairs = [pair for pair in self.pairs if pair[0].lower() != low]
        self._first.pop(low, None)

    def items(self) -> list[tuple[str, str]]:
        return list(self.pairs)

    @property
    def headers(self) -> list[str]:
        return [f"{name}: {value}\r\n" for name, value in self.pairs]

    def environ_items(self) -> Iterator[tuple[str, str]]:
        """``(HTTP_NAME, value)`` per field, as gevent's ``_headers`` yields them: a name with
        an underscore is dropped (it could pass for a dash-named header in the environ), and
        Content-Type and Content-Length are left to the unprefixed keys."""
        for name, value in self.pairs:
            if "_" in name:
                continue
            key = name.replace("-", "_").upper()
            if key not in _UNPREFIXED:
                yield "HTTP_" + key, value


def read_headers(rfile: BinaryIO) -> RequestHeaders:
    """Read header lines from ``rfile`` up to and including the blank line that ends them.

    A line over :data:`MAX_LINE` gives a ``status`` (gevent then answers 400, as it did for
    the stdlib's ``LineTooLong``); more than :data:`MAX_HEADERS` fields or a malformed line
    raise ``ValueError``, which gevent turns into a 400 without a traceback.
    """
    pairs: list[tuple[str, str]] = []
    while True:
        line = rfile.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            return RequestHeaders([], "Line too long")
        if line in _END:
            return RequestHeaders(pairs)
        if len(pairs) == MAX_HEADERS:
            raise ValueError(f"more than {MAX_HEADERS} request headers")
        text = line.decode("latin-1")
        name, colon, value = text.partition(":")
        if not colon or _FIELD_NAME.fullmatch(name) is None:
            raise ValueError(f"malformed request header line {text[:80]!r}")
        pairs.append((name, value.strip(_OWS)))
