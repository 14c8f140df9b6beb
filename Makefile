# Two commands set everything up on a fresh machine:
#   make serve   install the gateway and run it on its embedded defaults (local model, no keys)
#   make test    install what the tests need and run them (this is what .ci/run calls)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8080

.PHONY: serve test install install-dev lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamp files: re-install only when the dependencies change.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

serve: install
	$(BIN)/router serve --host $(HOST) --port $(PORT) $(ARGS)

lint: install-dev
	$(BIN)/ruff check router tests bench
	$(BIN)/ruff format --check router tests bench

format: install-dev
	$(BIN)/ruff format router tests bench
	$(BIN)/ruff check --fix router tests bench

test: lint
	scripts/ensure-test-tools
	$(BIN)/pytest $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
