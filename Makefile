# Every target creates .venv and installs what it needs on its own.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint fuzz bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev,embedded,distributed]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tdsync demo

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check tdsync tdsync_tests benchmarks
	$(BIN)/ruff format --check tdsync tdsync_tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .tdsync .pytest_cache
