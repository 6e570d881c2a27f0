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

# Property-based run of the API's OpenAPI contract, 1,000 generated requests (make test runs 200).
fuzz: $(STAMP)
	TDSYNC_FUZZ_CASES=$${TDSYNC_FUZZ_CASES:-1000} $(BIN)/python -m pytest -s -p no:cacheprovider \
		tdsync_tests/test_api/test_schemathesis.py $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .tdsync .pytest_cache
