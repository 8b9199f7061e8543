# llm-metrics-adapter task runner. `make demo` and `make test` work on a fresh machine:
# they create the virtualenv, install Python packages and Debian's prometheus themselves.

SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PROMETHEUS ?= /usr/bin/prometheus

.PHONY: help setup prometheus browser control-plane tools peer image image-test lint typecheck importlint fmt unit integration e2e differential test demo clean

help:
	@echo "make demo   - start a real Prometheus, simulated LLM servers and the adapter; show live values"
	@echo "make test   - lint, type-check and run every test tier (builds the control plane if needed)"
	@echo "make image  - build the container image offline with buildah (localhost/llm-metrics-adapter:VERSION)"

$(BIN)/.installed: pyproject.toml
	@echo ">> creating $(VENV) and installing Python packages"
	@$(PYTHON) -m venv $(VENV) || { echo "!! need $(PYTHON) with venv"; exit 1; }
	@$(BIN)/pip install --quiet --upgrade pip
	@$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

setup: $(BIN)/.installed

prometheus:
	@if [ ! -x $(PROMETHEUS) ]; then \
	  echo ">> installing Debian's prometheus (apt-get)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	fi
	@$(PROMETHEUS) --version 2>&1 | head -1

# Headless Chromium for the /debug/ui browser test.
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  echo ">> installing Debian's chromium and chromium-driver (apt-get)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; \
	fi

control-plane:
	@bash hack/build-control-plane.sh

tools:
	@bash hack/install-tools.sh

# prometheus-adapter v0.12.0, built once into ~/.cache by bench/build-prometheus-adapter.sh (a cold
# build takes a few minutes; cached after): the peer of the differential tier and of make bench.
peer:
	@bash bench/build-prometheus-adapter.sh >/dev/null

# The container image from the Dockerfile, with no network in the build: wheels made on the host,
# Debian's buildah (installed if missing), a local bookworm base when the default cannot be pulled.
image: setup
	@PIP_PYTHON=$(abspath $(BIN))/python bash hack/build-image.sh

# The image run with podman as the rendered Deployment runs it (tests/image).
image-test: setup prometheus control-plane tools image
	$(BIN)/pytest -q -m image tests/image

fmt: setup
	$(BIN)/ruff format adapter sim tests bench
	$(BIN)/ruff check --fix adapter sim tests bench

lint: setup
	$(BIN)/ruff check adapter sim tests bench
	$(BIN)/ruff format --check adapter sim tests bench

typecheck: setup
	$(BIN)/mypy

importlint: setup
	$(BIN)/lint-imports

unit: setup tools
	$(BIN)/pytest -q tests/unit tests/api

integration: setup prometheus browser
	$(BIN)/pytest -q -m integration tests/integration

e2e: setup prometheus control-plane tools
	$(BIN)/pytest -q -m e2e tests/e2e

# prometheus-adapter and this adapter side by side on the same data (tests/differential).
differential: setup prometheus control-plane tools peer
	$(BIN)/pytest -q -m differential tests/differential

test: setup lint typecheck importlint prometheus browser control-plane tools peer image
	$(BIN)/pytest -q tests

demo: setup prometheus
	@$(BIN)/python -m sim.demo

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

# The side-by-side benchmark against prometheus-adapter (about 25 minutes once built; never part
# of `make test`). Builds prometheus-adapter and vegeta into ~/.cache, installs wrk and the `bench`
# extra.
# A subset: `make bench BENCH_ARGS="--scenarios hpa,burst --growth 10k"` (see bench/README.md).
.PHONY: bench
bench: setup prometheus control-plane peer
	@$(BIN)/pip install --quiet -e '.[dev,bench]'
	@command -v wrk >/dev/null || { echo ">> installing Debian's wrk (apt-get)"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null \
	  || { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null; }; }
	@bash bench/build-vegeta.sh >/dev/null
	$(BIN)/python -m bench.run $(BENCH_ARGS)
