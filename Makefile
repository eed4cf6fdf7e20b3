# Everyday commands. `make run` sets up and runs the main job; `make test` sets up and tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test test-fast test-all lint format bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,postgres]'
	touch $(STAMP)

# The main job: the quickstart equal-budget comparison on Fashion-MNIST, then its results.
run: setup
	scripts/ensure-fashion-mnist.sh
	$(VENV)/bin/archbench run experiments/quickstart.yaml --workers 2 --threads 1

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# The default suite, integration tests (real archbench processes) included; CI runs this.
test: setup lint
	$(PY) -m pytest -q -m "not slow"

# The default suite without the integration tests: the quick loop while editing.
test-fast: setup lint
	$(PY) -m pytest -q -m "not slow and not integration"

test-all: setup lint
	$(PY) -m pytest -q

bench: setup
	for f in benchmarks/*.py; do $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache results
