# One-command set-up: `make demo` (tokenize generated sample audio, then a QA spot check of two
# decoded samples) and `make test` (the test suite) create the virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# synthetic:small = random test weights (offline); hf://haoheliu/SemantiCodec = the real ones
CHECKPOINT ?= synthetic:small
DEMO_OUT ?= out/demo_tokens
QA_SAMPLES ?= 2
QA_DDIM_STEPS ?= 4

.PHONY: setup chromium test test-fast demo bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# Only the report test opens a browser: Debian's chromium, installed for the test targets alone.
chromium:
	command -v chromium >/dev/null || { S=$$([ "$$(id -u)" = 0 ] || echo sudo); $$S apt-get update -qq && $$S env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: setup chromium
	$(PY) -m pytest tests

test-fast: setup chromium
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
