# One-command set-up: `make demo` (the tokenize job end to end on generated sample audio) and
# `make test` (the test suite) create the virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# synthetic:small = random test weights (offline); hf://haoheliu/SemantiCodec = the real ones
CHECKPOINT ?= synthetic:small
DEMO_OUT ?= out/demo_tokens

.PHONY: setup test test-fast demo bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	command -v chromium >/dev/null || { S=$$([ "$$(id -u)" = 0 ] || echo sudo); $$S apt-get update -qq && $$S env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	touch $@

test: setup
	$(PY) -m pytest tests

test-fast: setup
	$(PY) -m pytest tests -m "not golden"

demo: setup
	$(PY) jobs/make_sample_audio.py out/sample_audio
	$(PY) jobs/tokenize_audioset.py --source out/sample_audio --output $(DEMO_OUT) \
		--checkpoint $(CHECKPOINT) --token-rate 100 --semantic-vocab-size 16384 --overwrite

bench: setup
	$(PY) bench/encode_throughput.py
	$(PY) bench/pipeline_efficiency.py

clean:
	rm -rf $(VENV) .pytest_cache
