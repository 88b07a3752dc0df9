"""Settings read from the environment, with defaults that are safe to run as they are.

Every knob the README documents is read here and nowhere else, so tests can pass a plain dict
to ``create_app`` and get exactly the same keys.
"""

from __future__ import annotations

import os
from typing import Any

DEFAULTS: dict[str, Any] = {
    "MODEL_DIR": "model_artifacts",
    "MAX_BATCH_SIZE": 1000,
    # Exact SHAP costs far more than a prediction (docs/api.md), and a gevent worker serves
    # nobody else meanwhile: a bound keeps one explained request from holding a worker long.
    "MAX_EXPLAIN_BATCH": 100,
    # 1,000 flights with every optional field are ~130 KB of JSON; 1 MiB leaves room, no more.
    "MAX_CONTENT_LENGTH": 1 << 20,
    "LOG_LEVEL": "INFO",
    # auto | on | off: share one booster call among concurrent requests (flask_app/coalesce.py).
    "PREDICT_COALESCING": "auto",
    # auto | off: score calls of up to 32 flights with ONNX Runtime from the artifact's
    # model.onnx, checked against the booster at load (flask_app/fast_path.py).
    "FAST_PATH": "auto",
    # Seconds a client has to send a request's headers (from its first byte), then its body;
    # past either the worker answers 408 and closes (flask_app/worker.py). Read by the worker.
    "REQUEST_HEADER_TIMEOUT": 10,
    "REQUEST_BODY_TIMEOUT": 30,
    # Tests build an app without a model to check /ready's 503; production always loads one.
    "LOAD_MODEL": True,
}


LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error", "critical")


def env_int(name: str, default: int) -> int:
    """A positive integer from the environment; unset or empty means ``default``."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from exc
    if value <= 0:
        raise ValueError(f"environment variable {name} must be positive, got {value}")
    return value


def from_env() -> dict[str, Any]:
    """The service's settings as the environment gives them (the README's configuration table)."""
    return {
        # Under gunicorn.conf.py the master hands workers a validated copy of MODEL_DIR in
        # MODEL_SNAPSHOT_DIR (reload without downtime); elsewhere MODEL_DIR is read directly.
        "MODEL_DIR": (os.environ.get("MODEL_SNAPSHOT_DIR") or os.environ.get("MODEL_DIR")
                      or DEFAULTS["MODEL_DIR"]),
        "MAX_BATCH_SIZE": env_int("MAX_BATCH_SIZE", DEFAULTS["MAX_BATCH_SIZE"]),
        "MAX_EXPLAIN_BATCH": env_int("MAX_EXPLAIN_BATCH", DEFAULTS["MAX_EXPLAIN_BATCH"]),
        "MAX_CONTENT_LENGTH": env_int("MAX_CONTENT_LENGTH", DEFAULTS["MAX_CONTENT_LENGTH"]),
        "LOG_LEVEL": env_choice("LOG_LEVEL", LOG_LEVELS).upper(),
        "PREDICT_COALESCING": env_choice("PREDICT_COALESCING", ("auto", "on", "off")),
        "FAST_PATH": env_choice("FAST_PATH", ("auto", "off")),
        "LOAD_MODEL": DEFAULTS["LOAD_MODEL"],
    }


def env_choice(name: str, allowed: tuple[str, ...]) -> str:
    """The variable's value, lower-cased, if it is one of ``allowed`` (else a clear error)."""
    raw = (os.environ.get(name) or DEFAULTS[name]).strip().lower()
    if raw not in allowed:
        raise ValueError(f"environment variable {name} must be one of {', '.join(allowed)}, "
                         f"got {raw!r}")
    return raw
