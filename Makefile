# Memanto server. `make run` serves a development instance; `make test` runs the suite.
# Both create .venv and install the project on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install run migrate key test lint format clean bench-memory

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

migrate: install
	$(BIN)/memanto-server migrate

key: install
	$(BIN)/memanto-server keys dev

run: migrate key
	$(BIN)/memanto-server serve --host $(HOST) --port $(PORT)

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

# Code only: this ruff also formats Python blocks inside Markdown, which docs may lay out by hand.
LINTED := app tests bench

lint: install
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

format: install
	$(BIN)/ruff check --fix $(LINTED)
	$(BIN)/ruff format $(LINTED)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info

# Issue-3 benchmarks (not part of `make test`): recall at 1k vs 1M memories, batch vs single writes.
bench-memory: install
	$(BIN)/python -m bench.batch_vs_single
	$(BIN)/python -m bench.recall_scale
