# syntax=docker/dockerfile:1
# The prediction service: Gunicorn + gevent serving the committed model, started exactly as
# `make serve` starts it (gunicorn --config gunicorn.conf.py). Two stages: the first installs the
# pinned runtime requirements into a virtualenv, the second copies that venv and the code only,
# so no pip, build cache or dev tool is in the image that runs.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
# requirements.txt pins every runtime package, transitive ones included.
RUN /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MODEL_DIR=/app/model_artifacts \
    HOST=0.0.0.0 \
    PORT=8000
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /app app
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY gunicorn.conf.py ./
COPY training/ training/
COPY flask_app/ flask_app/
# The model the image serves and its card (GET /model/card); the report/ plots are not needed.
COPY model_artifacts/metadata.json model_artifacts/model.ubj model_artifacts/model.onnx model_artifacts/MODEL_CARD.md model_artifacts/
USER 10001:10001
EXPOSE 8000
# Liveness only (the process answers); /ready is for the orchestrator's traffic decisions.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=2)"]
CMD ["gunicorn", "--config", "gunicorn.conf.py"]
