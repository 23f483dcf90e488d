#!/usr/bin/env bash
# Airflow 3 + the Spark provider in their own virtual environment (default .venv-airflow), so the main one stays lean.
# The DAG test (tests/test_airflow.py) runs DagBag and dag.test() in it; .ci/run calls this script.
#   jobs/airflow/setup_venv.sh [VENV_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${1:-${SPARKML_DIST_AIRFLOW_VENV:-.venv-airflow}}"
PYTHON="${PYTHON:-python3}"
if [ -f "$VENV/.installed" ]; then exit 0; fi
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q "apache-airflow>=3.0,<4" "apache-airflow-providers-apache-spark>=5.0"
"$VENV/bin/python" -c "import airflow, airflow.providers.apache.spark; print('airflow', airflow.__version__)"
touch "$VENV/.installed"
