# Two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

# Every dependency, the dev tools and the build back-end at the versions constraints.txt pins
# (PIP_CONSTRAINT reaches pip's isolated build environment too; -c alone does not).
LOCK := constraints.txt
LINTED := gateway adapters tests benchmarks

.PHONY: venv demo test lint lock lock-check wheel docs bench bench-compare clean

$(BIN)/gateway: pyproject.toml setup.py $(LOCK)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	PIP_CONSTRAINT=$(CURDIR)/$(LOCK) $(BIN)/pip install -q -c $(LOCK) -e '.[dev]'
	touch $(BIN)/gateway

venv: $(BIN)/gateway

demo: venv
	$(BIN)/gateway demo --records 200

test: venv
	$(BIN)/ruff check $(LINTED)
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check $(LINTED)

# Re-pin constraints.txt from pyproject.toml (runtime + dev) and constraints.in, for Python 3.11 on
# Linux; commit the result. `make lock UPGRADE=--upgrade` moves every pin to the newest allowed.
# No "# via" notes: moving a requirement between pyproject.toml and constraints.in changes no line.
lock: venv
	$(BIN)/uv pip compile --quiet --no-annotate pyproject.toml constraints.in --extra dev --python-version 3.11 \
		--python-platform x86_64-unknown-linux-gnu --custom-compile-command "make lock" $(UPGRADE) -o $(LOCK)

# Whether constraints.txt is what `make lock` writes today (asks the package index, so it is not part of
# `make test`, whose tests talk to this machine only): exit 1 and the difference when it is not.
lock-check: venv
	cp $(LOCK) $(LOCK).check
	$(MAKE) --no-print-directory lock LOCK=$(LOCK).check
	diff -u $(LOCK) $(LOCK).check; status=$$?; rm -f $(LOCK).check; exit $$status

# The wheel (what the Docker image installs) into dist/; build/ goes first, or a file deleted from
# the sources since the last build would still ship.
wheel: venv
	rm -rf build
	PIP_CONSTRAINT=$(CURDIR)/$(LOCK) $(BIN)/pip wheel -q --no-deps -c $(LOCK) -w dist .

# The configuration and common-schema references under docs/reference/, regenerated from the code.
docs: venv
	$(BIN)/gateway docs write docs/reference

# The gateway beside Node-RED and bare Python (installs the pinned Node-RED with npm on first use).
# Fewer records or repeats: make bench-compare BENCH_ARGS="--records 20000 --repeats 1"
bench-compare: venv
	$(BIN)/python benchmarks/compare.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache dist build
