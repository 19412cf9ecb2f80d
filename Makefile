# Thin wrappers: every target does its own set-up, so `make demo` and `make test`
# work on a fresh clone.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
# Two pytest workers: the integration tests run in order in one of them (one Ray head and
# MLflow server, started once), the unit tests in both, on the cores the integration tests
# leave idle while they wait for Ray. TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2

.PHONY: setup demo test test-fast lint format up down sim-up sim-down clean

setup: $(STAMP)

$(STAMP): pyproject.toml infra/local/install.sh infra/local/check_install.py
	bash infra/local/install.sh $(VENV) dev
	touch $(STAMP)

demo: setup
	bash jobs/demo.sh

test: setup
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not integration" -n $(TEST_WORKERS) $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

up: setup
	bash infra/local/up.sh

down:
	bash infra/local/down.sh

sim-up: setup
	bash infra/sim/up.sh

sim-down:
	bash infra/sim/down.sh

clean:
	rm -rf runs .pytest_cache
