# Every target installs what it needs into .venv first, so a fresh clone needs only Python 3.11.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FLIGHT_DATA ?= $(firstword $(wildcard data/dataset_SCL.csv ../shared/data/dataset_SCL.csv) data/dataset_SCL.csv)
MODEL_DIR ?= model_artifacts
export FLIGHT_DATA

.PHONY: help install install-runtime serve train test lint format clean

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

clean:
	rm -rf reports .pytest_cache .ruff_cache
