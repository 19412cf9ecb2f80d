# Thin wrappers: every target does its own set-up, so `make demo` and `make test`
# work on a fresh clone.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast lint format up down sim-up sim-down clean

setup: $(STAMP)

$(STAMP): pyproject.toml infra/local/install.sh infra/local/check_install.py
	bash infra/local/install.sh $(VENV) dev
	touch $(STAMP)

demo: setup
	bash jobs/demo.sh

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not integration" $(PYTEST_ARGS)

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
