# Two commands for a fresh machine (README): `make run` and `make test`.
# Each creates or refreshes the virtual environment in .venv first.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.inloop-installed
# The cores this machine lets the process use (more would only oversubscribe them: docs/timings.md).
CORES ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: venv run test lint clean-results

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile -e '.[test]' 2>&1 | grep -v '^WARNING: Location' || true
	@# Bytecode for the installed packages and src/ on every core at once (pip compiles on one); a module that
	@# does not compile (a package's Python 2 test data) is skipped, as pip skips it. Every job imports from it.
	@$(BIN)/python -m compileall -q -j 0 $(VENV)/lib src > /dev/null 2>&1 || true
	@$(BIN)/python -c "import inloop, torch, snakemake" && touch $(STAMP)

venv: $(STAMP)

## The main job on the embedded demo data.
run: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores $(CORES) all

## The whole test suite.
test: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest

lint: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --lint

clean-results:
	rm -rf results/*
