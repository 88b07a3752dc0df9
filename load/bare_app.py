"""The reference every speed ratio is measured against: a bare Flask app with a fixed answer.

``make bench`` serves this with Gunicorn's stock gevent worker (2 workers, no config file, no
logging, no metrics) beside the real service, and drives it with the same clients in the same
run. Its ``/predict`` reads the body and returns one fixed prediction, so the gap between it and
the real ``/predict`` is what validation, encoding, the model, the request log and the metrics
cost. ``/model`` hands out the served model's feature spec (read from ``metadata.json`` without
loading the booster) only so that the Locust file can draw valid flights for it.

    gunicorn -k gevent -w 2 --config /dev/null load.bare_app:app
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from flask import Flask, jsonify, request

app = Flask(__name__)

_META = Path(os.environ.get("MODEL_DIR") or "model_artifacts") / "metadata.json"
FEATURE_SPEC = json.loads(_META.read_text(encoding="utf-8"))["feature_spec"] \
    if _META.is_file() else {}


@app.get("/health")
def health():
    return jsonify(status="ok")


@app.get("/ready")
def ready():
    return jsonify(status="ready")


@app.get("/model")
def model():
    return jsonify(feature_spec=FEATURE_SPEC)


@app.post("/predict")
def predict():
    request.get_data()
    return jsonify(predictions=[{"delay_probability": 0.1873, "delayed": False}],
                   model_version="bare", threshold=0.3)
