# Two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv demo test lint bench clean

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

clean:
	rm -rf $(VENV) .pytest_cache
