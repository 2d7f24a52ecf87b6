# make run  — set up and run supportbot on its offline default (no key, no network)
# make test — set up and run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[cloud,dev]"
	# The project's bytecode up front (pip compiles only what it installs into site-packages):
	# the CLI starts faster from the first run, also where PYTHONDONTWRITEBYTECODE is set.
	$(BIN)/python -m compileall -q bot knowledge adapters workers
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/supportbot ingest README.md docs
	$(BIN)/supportbot serve --open

test: $(STAMP)
	bash tests/run.sh

lint: $(STAMP)
	$(BIN)/ruff check bot knowledge workers adapters tests bench
	$(BIN)/mypy bot knowledge

bench: $(STAMP)
	$(BIN)/python bench/retrieval.py
	$(BIN)/python bench/latency.py

clean:
	rm -rf $(VENV) data .pytest_cache
