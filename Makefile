# Every target sets up what it needs: a virtual environment under .venv with the pinned
# dependencies of requirements-dev.lock (requirements.lock is the runtime subset that the
# image installs), installed once and again only when a lock changes.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: install run test lint format lock clean bench new-service

install: $(INSTALLED)

$(INSTALLED): requirements-dev.lock requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.lock
	touch $(INSTALLED)

## run: the Prefect server, a worker and the API on 127.0.0.1; Ctrl-C stops them all
run: install
	$(PY) -m deployments.local

## new-service: a new service module, its test and its README row (NAME=my-thing)
new-service:
	@test -n "$(NAME)" || { echo "usage: make new-service NAME=my-thing" >&2; exit 2; }
	@$(MAKE) --no-print-directory install
	$(PY) -m services.new $(NAME)

## test: the whole suite against real servers it starts itself, with a coverage check
test: install
	$(PY) -m pytest --cov --cov-report=term-missing

## lint: ruff (lint and format) and mypy --strict
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

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

## bench: the performance benchmark of issue 4 (its own stack; --tasks 200 --repeat 3)
bench: install
	$(PY) -m benchmarks.run
