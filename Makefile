# The two commands of the README. Both set up everything on a fresh machine (Python 3.11 + Java 17/21 present).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip

# `make lint` scope: the files brought in line so far; widen it (or `make lint LINT_PATHS=.`) as the rest follows
LINT_PATHS ?= sparkml_dist/runner.py sparkml_dist/cli.py sparkml_dist/quickstart.py sparkml_dist/runtime/__init__.py \
              sparkml_dist/runtime/session.py sparkml_dist/runtime/cluster.py sparkml_dist/runtime/logs.py \
              sparkml_dist/runtime/pydaemon.py \
              sparkml_dist/data/io.py sparkml_dist/data/sources.py sparkml_dist/data/generators.py \
              sparkml_dist/clustering/transform.py sparkml_dist/classification/prediction_columns.py \
              sparkml_dist/clustering/jobs.py sparkml_dist/classification/jobs.py jobs setup.py \
              tests/test_runner_cli.py tests/test_session.py tests/test_cluster.py tests/test_logs.py \
              tests/test_data_sources.py tests/test_parquet_input.py tests/test_readme.py
# mypy: the runtime and data layers (add sparkml_dist/engine when it lands)
MYPY_PATHS ?= sparkml_dist/runtime sparkml_dist/data

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
