# autoexec developer tasks. `make test` is what CI runs (see .ci/run).

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test lint typecheck unit integration faults example bench

venv: $(STAMP)

# Reinstall only when the dependencies change.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

lint: venv
	$(BIN)/ruff check autoexec tests
	$(BIN)/ruff format --check autoexec tests

typecheck: venv
	$(BIN)/mypy --strict autoexec

unit: venv
	$(BIN)/pytest -q tests/unit

integration: venv
	$(BIN)/pytest -q tests/integration

faults: venv
	$(BIN)/pytest -q tests/faults

test: venv
	$(BIN)/ruff check autoexec tests
	$(BIN)/ruff format --check autoexec tests
	$(BIN)/mypy --strict autoexec
	$(BIN)/pytest -q

example: venv
	$(BIN)/autoexec run examples/hello.json --input x=1

# Every benchmark once, in sequence, with its default size (20 minutes on a busy 2-core VM; needs
# the local services). Each prints one SUMMARY line with its ratio to raw Celery.
BENCHMARKS := chain throughput stream_10k wide_2000 first_item memory

bench: venv
	set -e; for name in $(BENCHMARKS); do $(BIN)/python -m benchmarks.$$name; done
