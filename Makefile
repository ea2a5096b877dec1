# docbits: the two quick-start commands are `make run` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= ./data
# Use the local CPU wheel where this machine has one; otherwise the PyTorch CPU index (never CUDA).
TORCH_PIP_ARGS ?= $(if $(wildcard /opt/wheels/torch-2.13.0+cpu*),,--index-url https://download.pytorch.org/whl/cpu)

.PHONY: install run test test-slow test-reliability lint format bench-quality bench-index bench-service bench-concurrency clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_PIP_ARGS) "torch==2.13.0"
	$(PY) -m pip install -q -e ".[dev,bench]"
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/docbits serve --data-dir $(DATA) --host 127.0.0.1 --port 8000

test: install
	$(PY) -m pytest -q -m "not slow"

test-slow: install
	$(PY) -m pytest -q -m slow

# Crash, concurrency, hostile-input, fuzz, auth and disk tests, the long (slow) ones included.
test-reliability: install
	$(PY) -m pytest -q -s tests/reliability

lint: install
	$(VENV)/bin/ruff format --check . && $(VENV)/bin/ruff check .

format: install
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

bench-quality: install
	$(PY) bench/quality.py

bench-index: install
	$(PY) bench/index_speed.py

bench-service: install
	$(PY) bench/service_load.py

bench-concurrency: install
	$(PY) bench/concurrency.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
