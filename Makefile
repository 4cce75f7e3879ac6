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
# The project's own modules are compiled once too, not again in every process.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: env demo test test-unit test-integration lint typecheck dev bench clean instance chromium

# This checkout's own instance (README "Your own instance"): the PostgreSQL databases of
# `make dev` (Dagster storage, config/dagster/dagster.yaml) and of the events are named after
# CHAINLAKE_INSTANCE, else after this checkout's path, by chainlake/instance_names.py (asked
# with the system Python, so it answers before .venv exists). An explicit
# DAGSTER_POSTGRES_URL or POSTGRES_URL wins; the events URL needs no export (the code derives it
# the same way).
ifndef DAGSTER_POSTGRES_URL
export DAGSTER_POSTGRES_URL := $(shell $(PY_VERSION) -m chainlake.instance_names dagster-url)
endif
# `make dev DEV_PORT=3001` when another checkout's UI holds port 3000.
DEV_PORT ?= 3000
# The demo's stores, shared by `make dev` so the UI shows the demo's data.
# `make demo` writes its chain's config to data/devnet/; without it, config/ is used.
DEMO_CONFIG := $(if $(wildcard data/devnet/chains.yaml),data/devnet,config)
DEMO_ENV := DELTA_ROOT=$${DELTA_ROOT:-data/delta} DUCKDB_PATH=$${DUCKDB_PATH:-data/chainlake.duckdb} \
	CHAINS_CONFIG=$${CHAINS_CONFIG:-$(DEMO_CONFIG)/chains.yaml} \
	PORTFOLIOS_CONFIG=$${PORTFOLIOS_CONFIG:-$(DEMO_CONFIG)/portfolios.yaml}

$(UV):
	$(PY_VERSION) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

# --compile-bytecode: the tests and the demo start hundreds of Python processes (Dagster runs,
# step workers, code servers); without compiled bytecode in the environment, a shell that sets
# PYTHONDONTWRITEBYTECODE (CI does) makes every one of them compile Dagster from source again.
$(VENV)/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --compile-bytecode --python $(PY_VERSION)
	@touch $@

# `npm ci` refuses this lockfile: anvil's other-platform packages are optional and absent
# from the registry here. `npm install --no-save` installs the locked versions and writes nothing.
node_modules/.installed: package-lock.json
	npm install --no-audit --no-fund --no-save
	@touch $@

env: $(VENV)/.synced node_modules/.installed
	@mkdir -p $(DAGSTER_HOME) data

postgres:
	@bash scripts/ensure-postgres.sh

demo: env instance
	$(PY) -m tools.demo

lint: env
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: env
	$(VENV)/bin/mypy

# Two pytest workers (pytest-xdist), a test module to one worker (its module fixtures set up
# once): while one worker waits on a daemon's tick or a node, the other runs. Modules go out
# in collection order, the slow ones first (tests/conftest.py), not xdist's own order (most
# tests first, which left the backfill test to start late and run alone). `make test
# PYTEST_WORKERS=0` runs in one process.
PYTEST_WORKERS ?= 2
PYTEST := $(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: env postgres chromium lint typecheck
	$(VENV)/bin/dagster definitions validate -m pipelines.definitions
	$(PYTEST)

test-unit: env
	$(PYTEST) -m "not integration"

test-integration: env postgres chromium
	$(PYTEST) -m integration

# Creates this instance's two databases, links config/dagster/dagster.yaml (the PostgreSQL
# instance) into DAGSTER_HOME, sets the pool limits; prints the instance's name and databases.
instance: env postgres
	$(PY) -m chainlake.instance

# The browser test drives Debian's chromium (no browser download is possible on these machines).
chromium:
	@test -x /usr/bin/chromium || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

# The UI and the daemon on the demo's data, with the Postgres-backed instance, and the demo's
# chain back (data/devnet/state.json, saved by `make demo`): anvil detached on the demo's port,
# a block every DEV_BLOCK_TIME seconds (default 120), saved back and stopped when dev exits.
dev: env instance
	@set -e; \
	if [ -f data/devnet/state.json ]; then \
	  trap '$(PY) -m tools.devnet down' EXIT; trap 'exit 130' INT TERM; \
	  $(PY) -m tools.devnet up --state data/devnet/state.json \
	    --port $${DEMO_RPC_PORT:-8545} --block-time $${DEV_BLOCK_TIME:-120}; \
	else \
	  echo "make dev: no saved demo chain (data/devnet/state.json), so no node: run make demo first"; \
	fi; \
	$(DEMO_ENV) $(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p $(DEV_PORT)

# Each writes bench/results/<name>-<time>.json; bench/README.md records the figures.
bench: env postgres
	$(PY) bench/extract.py
	$(PY) bench/transform.py
	$(PY) bench/backfill.py
	$(PY) bench/triggers.py

# data/, .dagster_home and this instance's two PostgreSQL databases (the line names them).
clean:
	rm -rf data .dagster_home
	@if [ -x $(PY) ]; then $(PY) -m chainlake.instance drop; \
	else echo "make clean: no $(PY), so this instance's PostgreSQL databases were left as they are"; fi
