# One venv for the app and its tests; a second one (.venv-export) only for the torch-based CLIP exporter.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXPORT_VENV ?= .venv-export
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF

.PHONY: setup run test test-engine test-export lint bench demo-models screenshot clean replica-sources

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip wheel setuptools
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

run: setup
	$(PY) main.py

# The engine, CLI, rerank and GUI tests (Qt offscreen), then the exporter's parity tests.
test: test-engine test-export

test-engine: setup replica-sources
	QT_QPA_PLATFORM=offscreen RETLLM_REQUIRE_REPLICAS=1 $(PY) -m pytest -q -m "not export"

# llama.cpp's vocab-only GGUFs (real tokenizers) from the pinned llama-cpp-python sdist (PyPI), for the
# replicas of the registry's models (tests/test_replicas.py); extracted once into .cache/replica-sources.
replica-sources: setup
	$(PY) -m retllm_desktop.devtools.replicas --fetch-sources

$(EXPORT_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(EXPORT_VENV)
	$(EXPORT_VENV)/bin/pip install --quiet --upgrade pip wheel setuptools
	$(EXPORT_VENV)/bin/pip install --quiet torch==2.14.1 torchvision==0.29.1 open_clip_torch onnx onnxruntime \
		numpy pillow pillow-heif ftfy regex platformdirs "sqlite-utils>=3.36,<4" hnswlib pytest
	$(EXPORT_VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

test-export: $(EXPORT_VENV)/.installed
	$(EXPORT_VENV)/bin/python -m pytest -q -m export

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: setup
	$(PY) bench/bench_indexing.py
	$(PY) bench/bench_query.py
	$(PY) bench/bench_rerank.py
	$(PY) bench/bench_text.py  # needs Debian's fonts-dejavu + fonts-liberation
	$(PY) bench/bench_bursts.py
	$(PY) bench/bench_ann.py  # ~35 min: builds indexes of 1M vectors

# Random-weight models for trying the app without a download (meaningless scores).
demo-models: setup
	$(PY) -m retllm_desktop.devtools.synthetic_models models --size tiny

screenshot: setup
	$(PY) scripts/screenshot.py

clean:
	rm -rf $(VENV) $(EXPORT_VENV) build *.egg-info .pytest_cache .ruff_cache
