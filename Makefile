# The README and CI call these targets; nothing else needs to be installed by hand.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test lint bench clean

setup: $(STAMP) node_modules/.installed

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	# the machine's older pip cannot resolve azure-ai-ml with opencensus-ext-azure
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

## the main job on the local defaults: raw samples into a local lake, ingested, summarised;
## options through ARGS (make run ARGS="--samples samples/raw --no-pipeline")
run: $(STAMP)
	$(PY) -m shared run $(ARGS)

## every test (starts Azurite on free ports by itself), the ten slowest, and coverage with its floor
COVERAGE_FLOOR ?= 87
test: setup
	$(PY) -m pytest --durations=10 --cov --cov-report=term:skip-covered --cov-fail-under=$(COVERAGE_FLOOR)

## ruff (lint and format) and mypy (types)
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

## normalisation throughput and memory against bare pyarrow (prints numbers; not a test)
bench: $(STAMP)
	$(PY) bench/bench_normalise.py

clean:
	rm -rf .lake .pytest_cache .ruff_cache bench/data
