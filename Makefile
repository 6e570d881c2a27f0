# Every target creates .venv and installs what it needs on its own.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint fuzz bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev,embedded,distributed]"
	touch $(STAMP)

install: $(STAMP)

# The demo keeps a catalogue of its own (embedded store, key and Dagster instance under
# DEMO_HOME), apart from the per-user one that `tdsync` uses by default.
DEMO_HOME ?= $(CURDIR)/.tdsync-demo
demo: $(STAMP)
	env -u TDSYNC_MONGO_URI -u TDSYNC_ENCRYPTION_KEY TDSYNC_HOME=$(DEMO_HOME) \
		DAGSTER_HOME=$(DEMO_HOME)/dagster $(BIN)/tdsync demo

# Both tiers; the layer contracts (pyproject.toml, [tool.importlinter]) are checked first.
test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The fast tier: no server, no process of its own (the `fast` marker, tdsync_tests/conftest.py).
test-fast: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -m fast $(PYTEST_ARGS)

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
	rm -rf $(VENV) .tdsync-demo .pytest_cache
