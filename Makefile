# Junction: `make run` starts everything on the embedded default; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: run test lint typecheck fuzz walk setup demo browser clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.requirements: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.requirements-dev: requirements-dev.txt requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.requirements

## Install, migrate, load the demo catalog and create the admin login (all idempotent).
setup: $(VENV)/.requirements
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py load_demo
	$(BIN)/python manage.py ensure_admin

## Web server, Celery worker and Celery beat together; Ctrl-C stops them all.
run: setup
	$(BIN)/honcho --procfile Procfile.dev start

## The whole test suite (installs Chromium for the browser tests when it is missing).
test: $(VENV)/.requirements-dev browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## Lint (ruff, configured in ruff.toml); .ci/run runs it before the suite.
lint: $(VENV)/.requirements-dev
	$(BIN)/ruff check .

## Type check the domain layer (mypy, configured in mypy.ini: services, access, querysets, …).
typecheck: $(VENV)/.requirements-dev
	$(BIN)/mypy

## Fuzz the REST API with schemathesis on a throw-away server, as a publisher and as a customer
## (scripts/api_fuzz.py; the two runs go side by side for API_FUZZ_SECONDS, 90 by default).
fuzz: $(VENV)/.requirements-dev
	$(BIN)/python scripts/api_fuzz.py

## The new user's walk over the REST API (scripts/api_walk.sh, curl) on a throw-away server with a worker.
walk: $(VENV)/.requirements
	$(BIN)/python scripts/api_server.py --worker -- scripts/api_walk.sh

browser:
	@command -v chromium >/dev/null 2>&1 || scripts/install-chromium.sh

clean:
	rm -rf var/
