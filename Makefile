# One-command set-up: `make demo` (tokenize generated sample audio, then a QA spot check of two
# decoded rows) and `make test` (the test suite) create the virtual environment on first use,
# from the lock file (every package pinned, with hashes), and make it anew whenever the lock changes.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# synthetic:small = random test weights (offline); hf://haoheliu/SemantiCodec = the real ones
CHECKPOINT ?= synthetic:small
DEMO_OUT ?= out/demo_tokens
QA_SAMPLES ?= 2
QA_DDIM_STEPS ?= 4

LOCK_FLAGS = --generate-hashes --universal --python-version 3.11 -c constraints.txt --custom-compile-command "make lock" --quiet

.PHONY: setup lock chromium lint test test-fast demo bench clean

setup: $(VENV)/.installed

# Exactly the lock: no resolution, no package outside it (--no-deps), every file checked by hash.
$(VENV)/.installed: requirements-dev.lock pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes --no-deps -r requirements-dev.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	touch $@

# After changing the dependencies in pyproject.toml (or constraints.txt): resolve anew, then commit both files.
lock: setup
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev $(LOCK_FLAGS) -o requirements-dev.lock
	$(VENV)/bin/uv pip compile pyproject.toml $(LOCK_FLAGS) -c requirements-dev.lock -o requirements.lock

# Only the report test opens a browser: Debian's chromium, installed for the test targets alone.
chromium:
	command -v chromium >/dev/null || { S=$$([ "$$(id -u)" = 0 ] || echo sudo); $$S apt-get update -qq && $$S env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The lint rules are in pyproject.toml ([tool.ruff.lint]); the tests run only on a clean tree.
lint: setup
	$(VENV)/bin/ruff check .

test: setup chromium lint
	$(PY) -m pytest tests

test-fast: setup chromium lint
	$(PY) -m pytest tests -m "not golden"

demo: setup
	$(PY) jobs/make_sample_audio.py out/sample_audio >/dev/null
	$(PY) jobs/tokenize_audioset.py --source out/sample_audio --output $(DEMO_OUT) \
		--checkpoint $(CHECKPOINT) --token-rate 100 --semantic-vocab-size 16384 --overwrite \
		--qa-samples $(QA_SAMPLES) --qa-ddim-steps $(QA_DDIM_STEPS)

bench: setup
	$(PY) bench/encode_throughput.py
	$(PY) bench/pipeline_efficiency.py

clean:
	rm -rf $(VENV) .pytest_cache
