# marketbot: the two commands a newcomer needs are `make run` and `make test`.
# Everything is installed by these targets into ./.tools (uv) and ./.venv (the workspace).

SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
RUN := $(UV) run --frozen --no-sync
# Every package of the namespace, type-checked by import name (one src/ per member).
PACKAGES := $(addprefix -p marketbot.,$(notdir $(wildcard libs/*/src/marketbot/* services/*/src/marketbot/*)))
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)
export UV_LINK_MODE := copy

.PHONY: help sync test lint fmt typecheck unit run infra bench schema clean browser

help:
	@echo "make run    - start the whole platform on embedded NATS + PostgreSQL and send a demo alert"
	@echo "make test   - install everything, then format check, lint, type check and all tests"
	@echo "make lint   - ruff format check + ruff lint + mypy"
	@echo "make infra  - start embedded NATS (JetStream) + PostgreSQL and print their URLs"
	@echo "make bench  - run every benchmark and print one comparison table"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.synced: $(UV) uv.lock pyproject.toml $(wildcard libs/*/pyproject.toml services/*/pyproject.toml)
	$(UV) sync --frozen --all-packages
	@touch $@

sync: $(VENV)/.synced

lint: sync
	$(RUN) ruff format --check .
	$(RUN) ruff check .
	$(RUN) mypy $(PACKAGES)

fmt: sync
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

typecheck: sync
	$(RUN) mypy $(PACKAGES)

# The web app's browser tests drive Debian's chromium; installed here when root can.
browser:
	@bash .ci/install-browser

test: lint browser
	$(RUN) pytest -n 2 --dist loadgroup -q

unit: sync
	$(RUN) pytest -q -m "not slow"

run: sync
	$(RUN) marketbot-run $(RUN_ARGS)

infra: sync
	$(RUN) python -m marketbot.runtime.infra

bench: sync
	$(RUN) python bench/run.py

schema: sync
	$(RUN) python -m marketbot.contracts.schema docs/schemas

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
