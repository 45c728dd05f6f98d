# Every target that runs code depends on the pinned install in .venv (requirements.lock).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo
DEMO_PATIENTS ?= 100000
DEMO_MONTHS ?= 24
DEMO_START ?= 2024-09
# pytest-xdist worker processes for `make test` and `make test-fast` (CI machines have 2 cores; 0: one process)
TEST_WORKERS ?= 2

.PHONY: install demo test test-fast lint lock bench clean

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python --require-hashes -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

# Re-resolve the lock after changing dependencies in pyproject.toml.
lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --universal \
		--generate-hashes -q -o requirements.lock

demo: install
	$(BIN)/order-audit synth --patients $(DEMO_PATIENTS) --months $(DEMO_MONTHS) --seed 7 --start $(DEMO_START) --out $(DEMO_DIR)/input
	$(BIN)/order-audit run --input $(DEMO_DIR)/input --out $(DEMO_DIR)/output --warehouse $(DEMO_DIR)/warehouse.duckdb
	@echo "Reports: $(DEMO_DIR)/output/index.html (one folder per audit)"

# The Spark tests (tests/test_spark_models.py, tests/test_spark_inputs.py, tests/test_spark_gate.py,
# tests/test_spark_engine.py: the deck with --engine spark on local[2] and through a Spark Connect
# server they start, the gate's results compared with DuckDB's) need Java 17: without it they
# are skipped. Install it with: apt-get install openjdk-17-jre-headless (or set JAVA_HOME).
test: install
	@command -v java >/dev/null 2>&1 || echo "Java 17 not found: the Spark tests will be skipped (apt-get install openjdk-17-jre-headless)"
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

test-fast: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup -m "not slow"

lint: install
	$(BIN)/ruff check pipeline tests benchmarks
	$(BIN)/ruff format --check pipeline tests benchmarks

bench: install
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
