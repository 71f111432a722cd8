# Two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv demo test lint docs bench bench-compare clean

$(BIN)/gateway: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(BIN)/gateway

venv: $(BIN)/gateway

demo: venv
	$(BIN)/gateway demo --records 200

test: venv
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check gateway adapters tests

# The configuration and common-schema references under docs/reference/, regenerated from the code.
docs: venv
	$(BIN)/gateway docs write docs/reference

# The gateway beside Node-RED and bare Python (installs the pinned Node-RED with npm on first use).
# Fewer records or repeats: make bench-compare BENCH_ARGS="--records 20000 --repeats 1"
bench-compare: venv
	$(BIN)/python benchmarks/compare.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
