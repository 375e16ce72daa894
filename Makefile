# The README's two commands: `make demo` and `make test`. Both start from nothing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint bench schemas clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

## demo: install, make a core of a sleeping Python program with gcore, analyse it
demo: $(VENV)/.installed
	$(BIN)/python scripts/make_demo_core.py demo
	$(BIN)/triage core demo/core.zst

## test: lint and run the whole test suite (makes real cores as it goes)
test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_core.py

clean:
	rm -rf $(VENV) demo .pytest_cache
