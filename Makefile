# The project's commands. `make run` starts the whole system; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

# Test defaults: PostgreSQL and Redis on this machine; override any of them from the env.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/orderproj
TEST_BROKER_URL ?= redis://127.0.0.1:6379/1

.PHONY: run test test-postgres test-embedded test-faults explore lint venv venv-dev migrate clean bench-sync bench bench-quick

$(BIN)/.installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(BIN)/.installed-dev: $(BIN)/.installed requirements-dev.txt
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(BIN)/.installed
venv-dev: $(BIN)/.installed-dev

## run: install, migrate, seed demo data, then web + worker + beat in the foreground
run: venv
	exec scripts/run.sh

## test: the whole suite against PostgreSQL and Redis, then the tests marked `embedded`
## again on the embedded SQLite database
test: test-postgres test-embedded

# (The tests serve the simulators themselves and point the clients at them.)
test-postgres: venv-dev
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} \
	CELERY_BROKER_URL=$${CELERY_BROKER_URL:-$(TEST_BROKER_URL)} \
	SECRET_KEY=$${SECRET_KEY:-test-only-secret} \
	SERVE_SIMULATORS=$${SERVE_SIMULATORS:-true} \
	$(BIN)/pytest $(PYTEST_ARGS)

## test-embedded: the tests marked `embedded` on SQLite, as `make run` uses it by default
test-embedded: venv-dev
	var=$$(mktemp -d) && trap 'rm -rf "$$var"' EXIT && \
	env -u DATABASE_URL -u CELERY_BROKER_URL VAR_DIR="$$var" \
	$(BIN)/pytest -m embedded -p no:cacheprovider $(PYTEST_ARGS)

## test-faults: only the fault-injection scenarios (also part of `make test`)
test-faults: venv-dev
	FAULTS_RESTART_POSTGRES=1 $(MAKE) test-postgres PYTEST_ARGS="-m faults $(PYTEST_ARGS)"

## explore: the seeded fault explorer (tests/explore): SEEDS=n seeds from FIRST (default 100
## from 0), or the one seed SEED=n, replayed exactly; reports seeds per minute (make test runs
## the first 24)
explore: venv-dev
	EXPLORE_SEEDS=$(or $(SEEDS),100) EXPLORE_FIRST=$(or $(FIRST),0) EXPLORE_SEED=$(SEED) \
	$(MAKE) test-postgres PYTEST_ARGS="tests/explore -rf $(PYTEST_ARGS)"

## lint: ruff, mypy and the migrations check
lint: venv-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python manage.py makemigrations --check --dry-run

## bench-sync: a full warehouse sync of 100,000 SKUs against PostgreSQL (target: <= 30 s)
bench-sync: venv-dev
	$(BIN)/python -m bench.warehouse_sync $(BENCH_ARGS)

## bench: end-to-end order throughput and latency on PostgreSQL + Redis, with the machine's
## reference limits (bench-results/latest.json, a PNG per scenario; see docs/benchmark.md)
bench: venv-dev
	$(BIN)/python -m bench.orders $(BENCH_ARGS)

## bench-quick: the benchmark's invariants on a small run (CI); never judges speed
bench-quick: venv-dev
	$(BIN)/python -m bench.orders --quick $(BENCH_ARGS)

clean:
	rm -rf var
