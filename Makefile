# The README and CI call these targets; nothing else needs to be installed by hand.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# checkov and check-jsonschema pin their own dependencies: a separate venv for them
TOOLS_VENV ?= .venv-tools
TOOLS_STAMP := $(TOOLS_VENV)/.installed

.PHONY: setup run test test-clock lint typecheck bench bench-watch bench-scale clean

setup: $(STAMP) $(TOOLS_STAMP) node_modules/.installed

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	# the machine's older pip cannot resolve azure-ai-ml with opencensus-ext-azure
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

$(TOOLS_STAMP): requirements-tools.txt
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS_VENV)/bin/python -m pip install --quiet -r requirements-tools.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

## the main job on the local defaults: raw samples into a local lake, ingested, summarised;
## options through ARGS (make run ARGS="--samples samples/raw --no-pipeline")
run: $(STAMP)
	$(PY) -m shared run $(ARGS)

## every test (starts Azurite on free ports by itself), the ten slowest, and coverage with its floor
COVERAGE_FLOOR ?= 88
test: setup
	$(PY) -m pytest --durations=10 --cov --cov-report=term:skip-covered --cov-fail-under=$(COVERAGE_FLOOR)

## every test again with the clock a year ahead (shared/clock.py): no test may depend on today's date
test-clock: setup
	FORECASTOPS_TEST_CLOCK_OFFSET_DAYS=365 $(PY) -m pytest -q -p no:cacheprovider

## ruff (lint and format) and the type check
lint: typecheck
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

## mypy over the product code (settings in pyproject.toml, with the pydantic plugin)
typecheck: $(STAMP)
	$(PY) -m mypy

## normalisation throughput and memory against bare pyarrow (prints numbers; not a test)
bench: $(STAMP)
	$(PY) bench/bench_normalise.py

## the durable watch following 28 runs for 6 hours, polling only and with AML's job events
## (prints numbers; not a test; ARGS="--runs 500" for a larger batch)
bench-watch: $(STAMP)
	$(PY) bench/bench_watch.py $(ARGS)

## the weekly batch at 1x, 4x and 16x make run's stores: each stage's seconds, series/s per core,
## peak RSS per process, lake bytes, the ratios (prints numbers; not a test; ARGS="--sizes 1,4")
bench-scale: $(STAMP)
	$(PY) bench/bench_scale.py $(ARGS)

clean:
	rm -rf .lake .pytest_cache .ruff_cache bench/data
