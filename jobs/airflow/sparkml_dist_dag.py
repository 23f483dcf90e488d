"""Airflow 3 DAG ``sparkml_dist``: generate data -> train k-means and AdaBoost on it -> benchmark report, each task a
``spark-submit`` of one of this repository's ``jobs/*.py`` scripts through ``SparkSubmitOperator``.

Parameters come from the job configs (``conf/jobs/generate.yaml``, ``kmeans.yaml``, ``adaboost.yaml``) and can be
changed per run (trigger with a config: ``{"n_rows": 1000000, "k": 16}``). Settings from the environment of the
Airflow worker:

* ``SPARKML_DIST_HOME``: the repository (``jobs/``, ``conf/``); default: two levels above this file.
* ``SPARKML_DIST_OUTPUT``: where runs write (``<output>/<ts_nodash>/...``); default ``<home>/out/airflow``.
* ``SPARKML_DIST_PYTHON``: the driver's and executors' Python (one with the package installed); default ``python3``.
* ``SPARKML_DIST_ARCHIVE``: a packed environment from ``sparkml-dist package`` (``dist/env.tar.gz``): shipped with
  ``--archives ...#environment``, and the executors run ``./environment/bin/python`` from it.
* ``SPARKML_DIST_SPARK_CONF``: extra Spark conf, ``"key=value;key=value"``.
* the Spark connection ``spark_default`` (``AIRFLOW_CONN_SPARK_DEFAULT='spark://host:7077?deploy-mode=client'``).

The file imports only Airflow, the Spark provider and PyYAML, so the scheduler needs neither Spark nor this package.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import yaml
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, Param

HOME = Path(os.environ.get("SPARKML_DIST_HOME", Path(__file__).resolve().parents[2]))
OUTPUT = os.environ.get("SPARKML_DIST_OUTPUT", str(HOME / "out" / "airflow"))
PYTHON = os.environ.get("SPARKML_DIST_PYTHON", "python3")
ARCHIVE = os.environ.get("SPARKML_DIST_ARCHIVE") or None


def job_config(name: str) -> dict:
    """``conf/jobs/<name>.yaml``: the defaults of the DAG's parameters."""
    with open(HOME / "conf" / "jobs" / f"{name}.yaml") as fh:
        return yaml.safe_load(fh)


GENERATE, KMEANS, ADABOOST = job_config("generate"), job_config("kmeans"), job_config("adaboost")


def spark_conf() -> dict[str, str]:
    conf = {"spark.ui.showConsoleProgress": "false"}
    for pair in filter(None, os.environ.get("SPARKML_DIST_SPARK_CONF", "").split(";")):
        key, _, value = pair.partition("=")
        conf[key.strip()] = value.strip()
    return conf


def env_vars() -> dict[str, str]:
    env = {"PYSPARK_DRIVER_PYTHON": PYTHON, "PYSPARK_PYTHON": "./environment/bin/python" if ARCHIVE else PYTHON}
    for name in ("PYTHONPATH", "SPARK_LOCAL_IP", "JAVA_HOME"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


RUN = OUTPUT + "/{{ ts_nodash }}"
DATA = RUN + "/data"

with DAG(
    dag_id="sparkml_dist",
    description="generate data, train k-means and AdaBoost, write the benchmark report (sparkml_dist jobs)",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5)},
    params={
        "n_rows": Param(GENERATE["input"]["n_rows"], type="integer", minimum=1),
        "n_features": Param(GENERATE["input"]["n_features"], type="integer", minimum=1),
        "centers": Param(GENERATE["input"]["centers"], type="integer", minimum=2),
        "k": Param(KMEANS["params"]["k"], type="integer", minimum=2),
        "kmeans_engine": Param(KMEANS["params"]["engine"], enum=["mapreduce", "bsp"]),
        "adaboost_rounds": Param(ADABOOST["params"]["maxIter"], type="integer", minimum=1),
        "bench_suite": Param("quick", enum=["quick", "standard", "full"]),
        "bench_only": Param("*", type="string", description="cases of the bench (family, name, glob; * = all)"),
    },
    tags=["sparkml_dist", "spark"],
) as dag:

    def submit(task_id: str, script: str, args: list[str]) -> SparkSubmitOperator:
        return SparkSubmitOperator(
            task_id=task_id,
            application=str(HOME / "jobs" / script),
            application_args=args,
            conn_id="spark_default",
            name=f"sparkml-dist-{task_id}",
            conf=spark_conf(),
            archives=f"{ARCHIVE}#environment" if ARCHIVE else None,
            env_vars=env_vars(),
        )

    generate = submit("generate_data", "generate_data.py", [
        "--config", str(HOME / "conf" / "jobs" / "generate.yaml"), "--output", DATA,
        "input.n_rows={{ params.n_rows }}", "input.n_features={{ params.n_features }}",
        "input.centers={{ params.centers }}"])
    train_kmeans = submit("train_kmeans", "train_kmeans.py", [
        "--config", str(HOME / "conf" / "jobs" / "kmeans.yaml"), "--output", RUN + "/kmeans",
        "input={path: " + DATA + "/data}", "params.k={{ params.k }}", "params.engine={{ params.kmeans_engine }}"])
    train_adaboost = submit("train_adaboost", "train_adaboost.py", [
        "--config", str(HOME / "conf" / "jobs" / "adaboost.yaml"), "--output", RUN + "/adaboost",
        "input={path: " + DATA + "/data}", "params.maxIter={{ params.adaboost_rounds }}"])
    bench = submit("bench_report", "bench.py", ["--suite", "{{ params.bench_suite }}", "--only",
                                                  "{{ params.bench_only }}", "--out", RUN + "/bench"])

    generate >> [train_kmeans, train_adaboost] >> bench
