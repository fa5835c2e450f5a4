# Every target sets up what it needs: a virtual environment under .venv with the pinned
# dependencies of requirements-dev.lock (requirements.lock is the runtime subset that the
# image installs), installed once and again only when a lock changes.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: install postgres run run-scaled test test-fast lint format lock clean bench bench-prefect bench-scale new-service chaos soak

install: $(INSTALLED)

$(INSTALLED): requirements-dev.lock requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.lock
	touch $(INSTALLED)

## postgres: Debian's PostgreSQL server, for the distributed mode; installed (apt-get, as
## root or through sudo) only when no initdb is found
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || { \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends postgresql; }

## run: the Prefect server, a worker and the API on 127.0.0.1; Ctrl-C stops them all
run: install
	$(PY) -m deployments.local

## run-scaled: the distributed mode: PostgreSQL, a Prefect server on it, APIS APIs and
## WORKERS workers on 127.0.0.1; Ctrl-C stops them all
APIS ?= 2
WORKERS ?= 2
run-scaled: install postgres
	$(PY) -m deployments.scaled --apis $(APIS) --workers $(WORKERS)

## new-service: a new service module, its test and its README row (NAME=my-thing)
new-service:
	@test -n "$(NAME)" || { echo "usage: make new-service NAME=my-thing" >&2; exit 2; }
	@$(MAKE) --no-print-directory install
	$(PY) -m services.new $(NAME)

## test: the whole suite against real servers it starts itself, with a coverage check, in
## XDIST processes side by side (the distributed cluster's tests in one, those over the
## suite's stack in two others, each over a stack of its own, the rest wherever there is
## room: tests/conftest.py), its slowest tests listed
XDIST ?= 3
test: install postgres
	$(PY) -m pytest -n $(XDIST) --no-loadscope-reorder \
	  --cov --cov-report=term-missing --durations=25

## test-fast: the unit tests alone (no server), for the inner loop
test-fast: install
	$(PY) -m pytest tests/unit --durations=10

## lint: ruff (lint and format), mypy --strict, and the Compose files and Kubernetes
## manifests against their schemas
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.compose-spec docker-compose*.yml
	$(PY) -m deployments.check_manifests

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## lock: re-pin every dependency after changing pyproject.toml
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet ".[dev]"
	.lock-venv/bin/pip freeze --exclude-editable | grep -v "^prefect-core-service" > requirements-dev.lock
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --constraint requirements-dev.lock .
	.lock-venv/bin/pip freeze --exclude-editable | grep -v "^prefect-core-service" > requirements.lock
	rm -rf .lock-venv build *.egg-info

clean:
	rm -rf $(VENV) .data .coverage .coverage.* .pytest_cache .mypy_cache .ruff_cache

## bench: how fast the service accepts and runs tasks (its own stack; --tasks 200 --repeat 3)
bench: install
	$(PY) -m benchmarks.run

## bench-prefect: the Prefect server's CPU for each call of a flow run, alone (its own server)
## (Prefect, imported by the script, makes .env's PREFECT_HOME but not .data above it)
bench-prefect: install
	mkdir -p .data
	$(PY) -m benchmarks.prefect_calls

## bench-scale: throughput with 1, 2 and 4 workers on PostgreSQL (its own cluster)
bench-scale: install postgres
	$(PY) -m benchmarks.scale

## chaos: tasks at a steady rate while parts of the service fail at random, then every
## task checked (its own stack; DURATION s, default 600; SEED replays a run's faults)
DURATION ?=
SEED ?=
chaos: install
	$(PY) -m chaos $(if $(DURATION),--duration $(DURATION)) $(if $(SEED),--seed $(SEED))

## soak: the chaos stream without faults, minute by minute (its own stack; DURATION s,
## default 1800; RATE tasks a second, default 2; or IN_FLIGHT tasks kept in flight)
RATE ?=
IN_FLIGHT ?=
soak: install
	$(PY) -m chaos.soak $(if $(DURATION),--duration $(DURATION)) $(if $(RATE),--rate $(RATE)) \
	  $(if $(IN_FLIGHT),--in-flight $(IN_FLIGHT))

## screenshots: the pictures of the Prefect UI in docs/images, from a real run (a stack of
## its own, Debian's Chromium headless; installed with apt-get if missing)
.PHONY: screenshots
screenshots: install
	@command -v chromium >/dev/null || { \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium; }
	$(PY) -m scripts.screenshots

## bench-results: what keeping a stage's result costs, by the size of the data
bench-results: install
	$(PY) -m benchmarks.results_cost
