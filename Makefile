# The two commands of the README. Both set up everything on a fresh machine (Python 3.11 + Java 17/21 present).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip

# `make lint` scope: the whole repository (.ruff.toml excludes the virtual environments and outputs)
LINT_PATHS ?= .
# mypy: the runtime, data and engine layers
MYPY_PATHS ?= sparkml_dist/runtime sparkml_dist/data sparkml_dist/engine

.PHONY: setup run test lint bench clean

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned: its CPU wheel is on disk here; a bare `torch` would pull a multi-GB CUDA build
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test]'
	touch $@

setup: $(VENV)/.installed

$(VENV)/.lint-installed: $(VENV)/.installed
	$(PIP) install -q -e ".[lint]"
	touch $@

# ruff (.ruff.toml) and mypy (.mypy.ini); .ci/run runs this before the tests
lint: $(VENV)/.lint-installed
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/mypy $(MYPY_PATHS)

# main job, end to end on the embedded local Spark
run: setup
	$(VENV)/bin/sparkml-dist run quickstart --config conf/jobs/quickstart.yaml --overwrite

# the test suite: local Spark plus a real standalone cluster started by the fixtures
test: setup
	$(VENV)/bin/pytest -q --durations=15 tests

bench: setup
	$(VENV)/bin/sparkml-dist bench --out out/bench --overwrite

clean:
	rm -rf out .pytest_cache spark-warehouse
