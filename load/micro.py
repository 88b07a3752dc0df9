"""In-process timings of the pieces of a request, old way and new way side by side in one run.

    python -m load.micro [--model-dir model_artifacts]

Prints the best of many calls (µs or ms) for: one prediction call through XGBoost and through
ONNX Runtime at several sizes; validating one flight and a 1,000-flight batch with marshmallow
and with the fast check; encoding 1,000 flights; the request log line written through a
``logging`` record and written directly. Run it under ``flock -x /tmp/scl-cpu.lock`` on the
shared machine; docs/performance.md quotes it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.modules.setdefault("sklearn", None)  # as in the Gunicorn workers (gunicorn.conf.py)


def best(call: Callable[[], object], seconds: float = 0.5) -> float:
    """Fastest of repeated calls, in microseconds, over about ``seconds``."""
    fastest, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        call()
        fastest = min(fastest, time.perf_counter() - start)
    return fastest * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=str(REPO_ROOT / "model_artifacts"))
    args = parser.parse_args(argv)

    import orjson

    from flask_app import request_log
    from flask_app.onnx_model import load_onnx
    from flask_app.schemas import build_schemas
    from load.wrk import Bodies, WrkScenario
    from training.artifacts import load_artifact

    artifact = load_artifact(args.model_dir, nthread=1)
    fast = load_onnx(args.model_dir, artifact)
    schemas = build_schemas(artifact.spec, 1000)
    bodies = Bodies(artifact.spec.to_dict())
    batch = orjson.loads(bodies.lines(WrkScenario("batch", "", "service", "batch", 8, 1000), 1)[0])
    flights = schemas.load_batch(batch)
    matrix = artifact.spec.encode(flights)
    print(f"model {artifact.version}, {artifact.booster.num_boosted_rounds()} trees")
    for rows in (1, 10, 20, 32, 64, 100, 1000):
        part = matrix[:rows]
        xgb = best(lambda p=part: artifact.booster.inplace_predict(p, validate_features=False))
        onnx = best(lambda p=part: fast.predict(p)) if fast else float("nan")
        print(f"predict {rows:>5} rows: XGBoost {xgb:8.0f} µs   ONNX Runtime {onnx:8.0f} µs")
    one = batch["flights"][0]
    print(f"validate 1 flight: marshmallow {best(lambda: schemas.flight.load(one)):.1f} µs, "
          f"fast check {best(lambda: schemas.load_flight(one)):.1f} µs")
    print(f"validate 1,000 flights: marshmallow "
          f"{best(lambda: schemas.batch.load(batch)) / 1000:.2f} ms, "
          f"fast check {best(lambda: schemas.load_batch(batch)) / 1000:.2f} ms")
    print(f"encode 1,000 flights: {best(lambda: artifact.spec.encode(flights)) / 1000:.2f} ms; "
          f"1 flight: {best(lambda: artifact.spec.encode(flights[:1])):.1f} µs")

    fields = {"event": "request", "request_id": "0" * 32, "method": "GET", "route": "/health",
              "path": "/health", "status": 200, "latency_ms": 0.123, "batch_size": None,
              "pid": os.getpid(), "model_version": artifact.version}
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        request_log.configure_logging("INFO")
        logger = request_log.log
        handler = logging.StreamHandler(open(2, "w", closefd=False))  # noqa: SIM115
        handler.setFormatter(request_log.JsonFormatter())
        via_record = logging.getLogger("scl.micro.records")
        via_record.propagate = False
        via_record.addHandler(handler)
        record = best(lambda: via_record.handle(via_record.makeRecord(
            logger.name, logging.INFO, __file__, 0, "request", (), None,
            extra={"fields": fields})))
        direct = best(lambda: request_log.log_request(fields))
    finally:
        os.dup2(saved, 2)
    print(f"request log line: logging record {record:.1f} µs, direct write {direct:.1f} µs")


if __name__ == "__main__":
    main()
