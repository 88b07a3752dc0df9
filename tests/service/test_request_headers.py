"""The worker's header reader gives what the stdlib parser gave gevent, and refuses what RFC 9112
lets a server refuse.

The reference is the code it replaced: ``http.client.parse_headers`` into gevent's own
``OldMessage``, and gevent's ``WSGIHandler._headers`` for the environ keys.
"""

from __future__ import annotations

import io
from http import client

import pytest
from gevent.pywsgi import WSGIHandler, headers_factory

from flask_app.request_headers import MAX_HEADERS, RequestHeaders, read_headers
from flask_app.worker import RetiringHandler

BLOCKS = [
    b"Host: localhost:8000\r\nContent-Type: application/json\r\nContent-Length: 97\r\n\r\n",
    b"host: x\r\ncontent-length:12\r\nX-Request-ID:   abc-1  \r\nAccept: */*\r\n\r\n",
    # Repeated fields: the first wins in get(), all are joined in the environ.
    b"Host: x\r\nAccept: text/html\r\nAccept: application/json\r\nCookie: a=1\r\n"
    b"Cookie: b=2\r\n\r\n",
    # Underscored names are dropped from the environ (they could pose as dashed ones).
    b"Host: x\r\nX_Forwarded_For: 1.2.3.4\r\nX-Forwarded-For: 5.6.7.8\r\n\r\n",
    b"Host: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"Host: x\r\nX-Latin: caf\xe9\r\nX-Empty:\r\n\r\n",
    b"Host: x\nBare-LF: yes\n\n",
    b"\r\n",
]


def stdlib(block: bytes):
    return headers_factory(io.BytesIO(block))


def environ_of(handler_class: type, headers) -> dict[str, str]:
    handler = handler_class.__new__(handler_class)
    handler.headers = headers
    env: dict[str, str] = {}
    for key, value in handler._headers():  # gevent's merge of repeated keys, as get_environ
        env[key] = env[key] + ("; " if "COOKIE" in key else ",") + value if key in env else value
    return env


@pytest.mark.parametrize("block", BLOCKS)
def test_well_formed_blocks_read_as_the_stdlib_read_them(block: bytes) -> None:
    ours, theirs = read_headers(io.BytesIO(block)), stdlib(block)
    assert ours.status == theirs.status == ""
    for name in ("host", "Content-Type", "CONTENT-LENGTH", "accept", "cookie", "connection",
                 "transfer-encoding", "x-request-id", "x-latin", "x-empty", "missing"):
        theirs_value = theirs.get(name)
        assert ours.get(name) == (theirs_value.strip() if theirs_value is not None else None)
    assert ours.typeheader == theirs.typeheader
    assert ours.getheader("content-length") == theirs.getheader("content-length")
    assert environ_of(RetiringHandler, ours) == environ_of(WSGIHandler, theirs)
    assert [(k, v.strip()) for k, v in theirs.items()] == ours.items()


def test_reading_stops_at_the_blank_line_and_leaves_the_body() -> None:
    stream = io.BytesIO(b"Content-Length: 4\r\n\r\nbody")
    headers = read_headers(stream)
    assert headers.get("content-length") == "4"
    assert stream.read() == b"body"


def test_deleting_a_field_removes_every_copy_in_any_case() -> None:
    headers = read_headers(io.BytesIO(b"Content-Length: 4\r\ncontent-length: 5\r\nA: b\r\n\r\n"))
    del headers["CONTENT-LENGTH"]
    assert "content-length" not in headers and headers.get("Content-Length") is None
    assert headers.items() == [("A", "b")] and headers.headers == ["A: b\r\n"]


def test_a_line_longer_than_the_stdlib_limit_is_marked_like_the_stdlib_marks_it() -> None:
    block = b"X-Huge: " + b"a" * 70_000 + b"\r\n\r\n"
    assert read_headers(io.BytesIO(block)).status == stdlib(block).status == "Line too long"


def test_more_headers_than_the_stdlib_allows_are_refused() -> None:
    fits = b"".join(b"X-%d: y\r\n" % i for i in range(MAX_HEADERS)) + b"\r\n"
    assert len(read_headers(io.BytesIO(fits)).items()) == MAX_HEADERS
    over = b"X-extra: y\r\n" + fits
    with pytest.raises(ValueError, match="more than 100"):
        read_headers(io.BytesIO(over))
    with pytest.raises(client.HTTPException):  # the stdlib refused it too (as a non-ValueError)
        client.parse_headers(io.BytesIO(over))


@pytest.mark.parametrize("line", [
    b"no colon here\r\n",
    b"Host : spaced-before-colon\r\n",
    b" folded: continuation\r\n",
    b"\tX-Fold: tab\r\n",
    b": no name\r\n",
    b"Bad(Name): x\r\n",
])
def test_lines_rfc_9112_lets_a_server_refuse_are_refused(line: bytes) -> None:
    with pytest.raises(ValueError, match="malformed request header"):
        read_headers(io.BytesIO(b"Host: x\r\n" + line + b"\r\n"))


def test_the_reader_keeps_the_interface_gunicorn_and_gevent_use() -> None:
    headers = RequestHeaders([("Content-Type", "application/json")])
    assert headers.status == "" and headers.typeheader == "application/json"
    assert "content-type" in headers and headers.get("x", "d") == "d"
