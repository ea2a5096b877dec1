# docbits: the two quick-start commands are `make run` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= ./data
# Use the local CPU wheel where this machine has one; otherwise the PyTorch CPU index (never CUDA).
TORCH_PIP_ARGS ?= $(if $(wildcard /opt/wheels/torch-2.13.0+cpu*),,--index-url https://download.pytorch.org/whl/cpu)

.PHONY: install install-dev install-bench run test test-slow test-reliability lint format bench-quality bench-index bench-service bench-concurrency bench-corpora clean

# Stamps: .runtime = the service's own dependencies (all `make run` needs); .dev adds the test
# tools, .bench the benchmark libraries. Each is redone when pyproject.toml changes.
$(VENV)/.runtime: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_PIP_ARGS) "torch==2.13.0"
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

$(VENV)/.bench: $(VENV)/.dev
	$(PY) -m pip install -q -e ".[dev,bench]"
	touch $@

install: $(VENV)/.runtime

install-dev: $(VENV)/.dev

install-bench: $(VENV)/.bench

run: install
	$(VENV)/bin/docbits serve --data-dir $(DATA) --host 127.0.0.1 --port 8000

test: install-dev
	$(PY) -m pytest -q -m "not slow"

test-slow: install-bench
	$(PY) -m pytest -q -m slow

# Crash, concurrency, hostile-input, fuzz, auth and disk tests, the long (slow) ones included.
test-reliability: install-dev
	$(PY) -m pytest -q -s tests/reliability

lint: install-dev
	$(VENV)/bin/ruff format --check . && $(VENV)/bin/ruff check .

format: install-dev
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

bench-quality: install-bench
	$(PY) bench/quality.py

bench-index: install-bench
	$(PY) bench/index_speed.py

bench-service: install-bench
	$(PY) bench/service_load.py

bench-concurrency: install-bench
	$(PY) bench/concurrency.py

bench-corpora: install-bench
	$(PY) bench/quality_corpora.py --embeddings cached

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
