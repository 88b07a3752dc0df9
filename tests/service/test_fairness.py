"""Keep-alive connections in one gevent worker must take turns (flask_app/fairness.py)."""

from __future__ import annotations

from itertools import pairwise

import gevent
import pytest
from flask import request

from flask_app import create_app


def handled_order(model_dir, fair: bool) -> list[str]:
    """Two clients, each sending 5 requests back to back in its own greenlet (as two
    keep-alive connections of one worker); the order in which the app handled them."""
    app = create_app({"TESTING": True, "MODEL_DIR": str(model_dir), "FAIR_YIELD": fair})
    order: list[str] = []

    @app.after_request
    def _record(response):
        order.append(request.args["client"])
        return response

    def client(name: str) -> None:
        test_client = app.test_client()
        for _ in range(5):
            assert test_client.get(f"/health?client={name}").status_code == 200

    gevent.joinall([gevent.spawn(client, "a"), gevent.spawn(client, "b")], raise_error=True)
    return order


@pytest.mark.skipif(not gevent.monkey.is_module_patched("socket"),
                    reason="fair turns apply only in a gevent-patched process")
def test_clients_take_turns_with_fair_yield(tiny_model_dir):
    order = handled_order(tiny_model_dir, fair=True)
    assert sorted(order) == ["a"] * 5 + ["b"] * 5
    # Neither client gets two requests in a row while the other is waiting.
    switches = sum(1 for x, y in pairwise(order) if x != y)
    assert switches >= 8, order


def test_without_it_one_client_runs_all_its_requests_first(tiny_model_dir):
    """The control: this is the starvation the hook exists to prevent."""
    order = handled_order(tiny_model_dir, fair=False)
    assert order == ["a"] * 5 + ["b"] * 5
