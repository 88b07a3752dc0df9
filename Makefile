# Every target installs what it needs into .venv first, so a fresh clone needs only Python 3.11.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FLIGHT_DATA ?= $(firstword $(wildcard data/dataset_SCL.csv ../shared/data/dataset_SCL.csv) data/dataset_SCL.csv)
MODEL_DIR ?= model_artifacts
export FLIGHT_DATA

.PHONY: help install install-runtime serve train test lint format clean
.PHONY: load-test load-test-headless stress bench bench-log soak
.PHONY: cluster failover cluster-scaling

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
# Locust worker processes on this machine (Locust's --processes: a master and N workers, one per
# core is the most that helps; -1 = one per core). Empty: one process, as before. For workers on
# other machines see docs/deployment.md (--master / --worker).
LOCUST_PROCESSES ?=
LOCUST := $(BIN)/locust -f locustfile.py $(if $(LOCUST_PROCESSES),--processes $(LOCUST_PROCESSES))

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

# The request log's cost on /health: new servers each round, log on and off, a 95 % interval;
# each server first serves the bench's predictions, 6 s of each kind, as production ones have.
LOG_COST_ARGS ?= --history 6
bench-log: $(VENV)/.dev-installed  ## the request log's cost on /health, fresh servers per round -> reports/log_cost.json
	@command -v wrk >/dev/null || { echo "make bench-log needs wrk (apt-get install wrk)"; exit 1; }
	$(BIN)/python -m load.log_cost $(LOG_COST_ARGS)

# Reliability conditions against freshly started servers (docs/reliability.md); needs wrk.
SOAK_ARGS ?=
soak: $(VENV)/.dev-installed  ## bursts, reload, slow clients, kill -9 against real servers -> table, reports/soak.json
	@command -v wrk >/dev/null || { echo "make soak needs wrk (apt-get install wrk)"; exit 1; }
	$(BIN)/python -m load.soak $(SOAK_ARGS)

# --- Past one machine (docs/deployment.md) -------------------------------------------------
# N instances of `make serve`'s Gunicorn (each INSTANCE_WORKERS workers) on BASE_PORT.. behind
# Debian's nginx on NGINX_PORT (apt-get install -y nginx), all on loopback.
INSTANCES ?= 3
INSTANCE_WORKERS ?= 1
BASE_PORT ?= 38001
NGINX_PORT ?= 38080
CLUSTER_ARGS = --instances $(INSTANCES) --workers $(INSTANCE_WORKERS) --base-port $(BASE_PORT) \
	--port $(NGINX_PORT)

cluster: $(VENV)/.runtime-installed  ## INSTANCES= copies of the service behind nginx on $$NGINX_PORT (38080); Ctrl-C stops all
	$(BIN)/python -m load.cluster $(CLUSTER_ARGS)

failover: $(VENV)/.dev-installed  ## under load via nginx: rolling restart + kill -9; exits 1 on any failed request
	@mkdir -p reports
	$(BIN)/python -m load.failover $(CLUSTER_ARGS) --json reports/failover.json

# instances x workers each (:round_robin = nginx's default balancing instead of least_conn);
# 1x2 is one instance using both cores, for comparison.
SCALING_LAYOUTS ?= 1x1,2x1,3x1,1x2,2x1:round_robin,3x1:round_robin

cluster-scaling: $(VENV)/.dev-installed  ## req/s through nginx for SCALING_LAYOUTS (1, 2, 3 instances) -> reports/scaling.json
	@mkdir -p reports
	$(BIN)/python -m load.scaling --layouts $(SCALING_LAYOUTS) --base-port $(BASE_PORT) \
		--port $(NGINX_PORT) --json reports/scaling.json

clean:
	rm -rf reports .pytest_cache .ruff_cache
