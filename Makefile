# regime-allocator: `make demo` and `make test` work on a fresh clone (they set up .venv themselves).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export ALLOC_HOME ?= $(CURDIR)/.alloc
export DAGSTER_HOME ?= $(ALLOC_HOME)/dagster

.PHONY: setup demo test test-fast bench ui clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e '.[dev]' || $(BIN)/python -m pip install --quiet -e '.[dev]'
	@# bytecode for the project too: with PYTHONDONTWRITEBYTECODE set (as on some CI images) every process
	@# (each Dagster run worker) would otherwise recompile dagster and the code location from source
	$(BIN)/python -m compileall -q -j 0 alloc_assets resources > /dev/null
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/python -m alloc_assets.demo

test: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --timeout 900

test-fast: setup
	$(BIN)/python -m pytest -q -n 2 -m "not slow and not timed"

bench: setup
	$(BIN)/python -m benchmarks.run

ui: setup
	@mkdir -p $(DAGSTER_HOME)
	$(BIN)/python -c "from alloc_assets.instance import prepare_instance_home; prepare_instance_home()"
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

clean:
	rm -rf $(ALLOC_HOME)
