# lockgate: every target creates its own virtual environment first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo run worker test lint typecheck bench clean

SCENARIO ?= healthy

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)  ## a whole rollout on this machine, watched live (SCENARIO=regression|violations|drifting|broken|overuse-capped|review-rejected|harm-one-region|overspend)
	$(BIN)/lockgate demo --scenario $(SCENARIO)

run worker: $(STAMP)  ## the worker with an embedded Temporal dev server (UI on :8233)
	$(BIN)/python worker.py

test: $(STAMP)  ## lint, types, then every test against real servers
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy .

clean:
	rm -rf $(VENV) .lockgate .mypy_cache .ruff_cache .pytest_cache test-artifacts
