# One-command set-up: `make test` (tests) and `make demo` (encode sample audio end to end)
# create the virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test test-fast demo bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

test: setup
	$(PY) -m pytest tests

test-fast: setup
	$(PY) -m pytest tests -m "not golden"

demo: setup
	$(PY) jobs/encode_demo.py

bench: setup
	$(PY) bench/encode_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache
