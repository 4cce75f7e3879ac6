# Two commands do all the set-up: `make demo` and `make test`. Each builds or reuses the
# environment from the lockfiles (uv.lock, package-lock.json).
SHELL := /bin/bash
PY_VERSION ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9

export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export PYTHONUNBUFFERED := 1

.PHONY: env demo test test-unit test-integration lint typecheck dev bench clean

$(UV):
	$(PY_VERSION) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --python $(PY_VERSION)
	@touch $@

node_modules/.installed: package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

env: $(VENV)/.synced node_modules/.installed
	@mkdir -p $(DAGSTER_HOME) data

postgres:
	@bash scripts/ensure-postgres.sh

demo: env
	$(PY) -m chainlake.demo

lint: env
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: env
	$(VENV)/bin/mypy

test: env postgres lint typecheck
	$(VENV)/bin/dagster definitions validate -m pipelines.definitions
	$(VENV)/bin/pytest

test-unit: env
	$(VENV)/bin/pytest -m "not integration"

test-integration: env postgres
	$(VENV)/bin/pytest -m integration

dev: env
	$(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

bench: env
	$(PY) bench/extract.py
	$(PY) bench/transform.py

clean:
	rm -rf data .dagster_home
