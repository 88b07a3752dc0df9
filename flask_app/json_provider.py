"""Flask's JSON provider backed by orjson: request bodies and responses in one native call.

The profile of ``POST /predict`` showed the stdlib ``json`` module (parse the body, then encode
the answer through ``jsonify``) among the largest Python costs per request, and it grows with
the batch size; orjson does both several times faster and returns bytes, which go straight
into the response without a ``str`` round trip. Everything that uses ``current_app.json`` or
``jsonify`` (views, error handlers) gets it by registering the provider in ``create_app``.

Behaviour differences from the stdlib provider, all deliberate: ``NaN``/``Infinity`` literals
and integers beyond 64 bits are refused as invalid JSON (400) instead of parsed into values no
schema accepts; nesting deeper than 1,024 levels is refused the same way.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response
from flask.json.provider import DefaultJSONProvider

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class OrjsonProvider(DefaultJSONProvider):
    """``dumps``/``loads``/``response`` through orjson; other types via Flask's default hook."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return self._encode(obj).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        """Like Flask's ``jsonify``: body bytes from orjson, no indent, no str detour."""
        obj = self._prepare_response_obj(args, kwargs)
        return self._app.response_class(self._encode(obj), mimetype=self.mimetype)

    def _encode(self, obj: Any) -> bytes:
        options = _OPTIONS | (orjson.OPT_SORT_KEYS if self.sort_keys else 0)
        # Flask's hook handles what orjson does not (Decimal, objects with __html__, ...).
        return orjson.dumps(obj, default=self.default, option=options)
