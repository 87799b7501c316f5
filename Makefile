# Two commands for a fresh machine (README): `make run` and `make test`.
# Each creates or refreshes the virtual environment in .venv first.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.inloop-installed
# The cores this machine lets the process use (more would only oversubscribe them: docs/timings.md).
CORES ?= $(shell nproc 2>/dev/null || echo 2)
# Bytecode: every module a job imports is compiled once, by the first process that imports it, into a cache inside
# the virtual environment (nothing is written next to the sources), even where the shell sets
# PYTHONDONTWRITEBYTECODE (these machines do: each of the ~280 jobs would then compile its imports again). Cheaper
# than compiling all 18,000 modules of the environment ahead (33 s on 2 cores; a job imports ~2,400): docs/timings.md.
PYENV := PYTHONDONTWRITEBYTECODE= PYTHONPYCACHEPREFIX="$(abspath $(VENV))/pycache"
# pip: the venv's own (Python 3.11's 23.2) spent 64 of the 79 s of `pip install` finding the ~200 packages; pip 26
# finds them in 19 s (docs/timings.md), so the environment is made with it.

.PHONY: venv run test lint clean-results

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check 'pip>=26,<27' 2>&1 | grep -v '^WARNING: Location' || true
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile -e '.[test]' 2>&1 | grep -v '^WARNING: Location' || true
	@$(PYENV) $(BIN)/python -c "import inloop, torch, snakemake" && touch $(STAMP)

venv: $(STAMP)

## The main job on the embedded demo data.
run: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(PYENV) $(BIN)/snakemake --cores $(CORES) all

## The whole test suite, on TEST_WORKERS pytest-xdist workers that each take whole test files (a module's fixtures
## and a rehearsal's folder stay in one process): much of the suite is one process on one core, so two workers keep
## both cores busy (docs/timings.md).
TEST_WORKERS ?= 2
test: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(PYENV) $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(PYENV) $(BIN)/snakemake --lint

clean-results:
	rm -rf results/*
