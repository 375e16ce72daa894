# The README's two commands: `make demo` and `make test`. Both start from nothing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test test-fast lint docs bench fuzz schemas clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The base install's wheels are fetched here too, so that tests/test_install.py can build
# a fresh venv of the base install offline.
WHEELS ?= $(HOME)/.cache/triage/wheels
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[sweep,dev]'
	$(BIN)/python -m pip download -q -d $(WHEELS) pip setuptools wheel \
	    $$($(BIN)/python scripts/base_requirements.py)
	touch $@

## demo: install; make sample cores (gcore and real crashes); analyse one; sweep them all on
## the embedded Dask cluster into a Parquet dataset; group the crashes; build the dashboard
demo: $(VENV)/.installed
	rm -rf demo
	$(BIN)/python scripts/make_demo_core.py demo/cores --crashes
	$(BIN)/triage core demo/cores/core.zst
	$(BIN)/triage sweep demo/cores --output demo/dataset
	$(BIN)/triage groups demo/dataset
	$(BIN)/triage dashboard demo/dataset -o demo/dashboard.html

## test: system packages if missing (root), lint (ruff, mypy), the whole suite (makes real cores
## as it goes)
test: $(VENV)/.installed
	scripts/install-system-deps.sh
	$(BIN)/ruff check .
	$(BIN)/mypy
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir build/site
	$(BIN)/python -m pytest

## test-fast: day-to-day: the engine on one interpreter; no sysroot, browser, clusters,
## object stores or long runs (under a minute)
test-fast: $(VENV)/.installed
	$(BIN)/python -m pytest -q -m "not slow and not needs_sysroot and not needs_chromium"

## docs: the documentation site (MkDocs, Material theme) into build/site, strictly
docs: $(VENV)/.installed
	$(BIN)/python scripts/gen_docs.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir build/site

## lint: ruff (checks, formatting) and mypy (pyproject.toml's [tool.mypy]; strict on the engine)
lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## fuzz: the long fuzzing run for a nightly job (make test runs a one-minute share of it)
fuzz: $(VENV)/.installed
	$(BIN)/python scripts/fuzz.py

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_core.py --write benchmarks/RESULTS-core.md
	$(BIN)/python benchmarks/bench_sweep.py --write benchmarks/RESULTS-sweep.md

clean:
	rm -rf $(VENV) demo .pytest_cache
