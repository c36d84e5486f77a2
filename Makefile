# autoexec developer tasks. `make test` is what CI runs (see .ci/run).

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv lock test lint typecheck unit integration faults docs example bench

venv: $(STAMP)

LOCK := requirements/dev.txt

# Installs exactly what the lock file names (hashes checked), then the project itself without
# resolving anything again; reinstalls only when the lock file changes.
$(STAMP): $(LOCK) pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

# The one way to upgrade: every dependency to its newest release within pyproject.toml's ranges.
# Commit the new lock file with a message that says what changed.
lock: venv
	$(BIN)/python -m pip install -q pip-tools
	$(BIN)/pip-compile --quiet --upgrade --generate-hashes --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-find-links --extra dev --extra flower \
		--output-file $(LOCK) pyproject.toml

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

# The docs site, strictly: a broken link or anchor fails the build (mkdocs.yml, validation).
docs: venv
	$(BIN)/mkdocs build --strict --site-dir site

test: venv
	$(BIN)/ruff check autoexec tests
	$(BIN)/ruff format --check autoexec tests
	$(MAKE) docs
	$(BIN)/mypy --strict autoexec
	$(BIN)/pytest -q

example: venv
	$(BIN)/autoexec run examples/hello.json --input x=1

# Every benchmark once, in sequence, with its default size (20 minutes on a busy 2-core VM; needs
# the local services). Each prints one SUMMARY line with its ratio to raw Celery.
BENCHMARKS := chain throughput stream_10k wide_2000 first_item memory

bench: venv
	set -e; for name in $(BENCHMARKS); do $(BIN)/python -m benchmarks.$$name; done
