# Every target installs what it needs into .venv first, so a fresh clone needs only Python 3.11.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FLIGHT_DATA ?= $(firstword $(wildcard data/dataset_SCL.csv ../shared/data/dataset_SCL.csv) data/dataset_SCL.csv)
MODEL_DIR ?= model_artifacts
export FLIGHT_DATA

.PHONY: help install install-runtime serve train onnx test lint format clean
.PHONY: load-test load-test-headless stress bench

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-22s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamps record which requirements file was installed, so an edit re-installs and nothing else does.
$(VENV)/.runtime-installed: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime-installed

install-runtime: $(VENV)/.runtime-installed  ## install only what serving needs
install: $(VENV)/.dev-installed  ## install everything (training, tests, load tests, lint)

serve: $(VENV)/.runtime-installed  ## serve the committed model with Gunicorn/gevent on $$PORT (8000)
	$(BIN)/gunicorn --config gunicorn.conf.py

train: $(VENV)/.dev-installed  ## rebuild model_artifacts/ from $$FLIGHT_DATA
	$(BIN)/python -m training.train --data "$(FLIGHT_DATA)" --out "$(MODEL_DIR)"
	$(MAKE) onnx

onnx: $(VENV)/.dev-installed  ## write model.onnx (the fast path for small calls) beside the booster
	$(BIN)/python -m flask_app.onnx_model --model-dir "$(MODEL_DIR)"

test: $(VENV)/.dev-installed  ## run the whole test suite
	$(BIN)/python -m pytest

lint: $(VENV)/.dev-installed  ## ruff, and hadolint on the Dockerfile (no Docker engine needed)
	$(BIN)/ruff check .
	$(BIN)/hadolint Dockerfile

format: $(VENV)/.dev-installed
	$(BIN)/ruff format .

# --- Load tests (locustfile.py; docs/performance.md) -----------------------------------------
# The service the load targets hit (not HOST, which is the address `make serve` binds).
TARGET_URL ?= http://127.0.0.1:8000
USERS ?= 64
SPAWN_RATE ?= 16
DURATION ?= 60s
LOCUST := $(BIN)/locust -f locustfile.py

load-test: $(VENV)/.dev-installed  ## Locust web UI on :8089 against $$TARGET_URL (start `make serve` first)
	$(LOCUST) --host "$(TARGET_URL)" --web-port 8089

load-test-headless: $(VENV)/.dev-installed  ## Locust without UI: USERS= SPAWN_RATE= DURATION= -> reports/
	@mkdir -p reports
	$(LOCUST) --host "$(TARGET_URL)" --headless -u $(USERS) -r $(SPAWN_RATE) -t $(DURATION) \
		--only-summary --csv reports/locust --html reports/locust.html

# The challenge: >= 50,000 single-flight /predict requests in 45 s from 1,000 users, 0 failures.
# Locust exits non-zero on any failure, and on fewer requests via --min-requests (locustfile).
stress: $(VENV)/.dev-installed  ## 1,000 users on /predict for 45 s against $$TARGET_URL: >= 50k requests, 0 failures
	@mkdir -p reports
	$(LOCUST) --host "$(TARGET_URL)" --headless -u 1000 -r 500 -t 45s --tags single \
		--min-requests 50000 --only-summary --csv reports/stress --html reports/stress.html

bench: $(VENV)/.dev-installed  ## start the service, run the fixed scenarios -> reports/bench.md|json
	$(BIN)/python -m load.bench

clean:
	rm -rf reports .pytest_cache .ruff_cache
