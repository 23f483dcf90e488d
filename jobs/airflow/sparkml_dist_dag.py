"""Airflow 3 DAG ``sparkml_dist``: generate data -> train k-means and AdaBoost on it -> train a torch net (DDP) ->
train an RL agent -> benchmark report, each task a ``spark-submit`` of one of this repository's ``jobs/*.py`` scripts
through ``SparkSubmitOperator``. The deep-learning and RL jobs each hold every task slot at once (a barrier stage of
ranks / actors), so they run one after the other, after the classical jobs and before the report.

Parameters come from the job configs (``conf/jobs/generate.yaml``, ``kmeans.yaml``, ``adaboost.yaml``,
``deep_torch.yaml``, ``rl_<algorithm>.yaml``) and can be changed per run (trigger with a config:
``{"n_rows": 1000000, "k": 16, "rl_algorithm": "dppo"}``); Airflow checks a run's config against each parameter's
type, range and choices before any task starts. Settings from the environment of the Airflow worker:

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


def job_config(name: str, *keys: str) -> dict:
    """``conf/jobs/<name>.yaml``: the defaults of the DAG's parameters; a missing file or section (``keys``, dotted)
    fails the DAG's import with the file and key named."""
    path = HOME / "conf" / "jobs" / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"job config {path} not found (is SPARKML_DIST_HOME={str(HOME)!r} the checkout?)")
    with open(path) as fh:
        cfg = yaml.safe_load(fh)
    for key in keys:
        node = cfg
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ValueError(f"job config {path}: no {key!r}")
            node = node[part]
    return cfg


GENERATE = job_config("generate", "input.n_rows", "input.n_features", "input.centers")
KMEANS = job_config("kmeans", "params.k", "params.engine")
ADABOOST = job_config("adaboost", "params.maxIter")
TORCH = job_config("deep_torch", "params.epochs")
#: the RL algorithms with a shipped config (``conf/jobs/rl_<name>.yaml``); the default is IMPALA's
RL_ALGORITHMS = sorted(p.stem[3:] for p in (HOME / "conf" / "jobs").glob("rl_*.yaml"))
RL = job_config("rl_impala", "params.totalSteps")


def spark_conf() -> dict[str, str]:
    conf = {"spark.ui.showConsoleProgress": "false"}
    for pair in filter(None, os.environ.get("SPARKML_DIST_SPARK_CONF", "").split(";")):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"SPARKML_DIST_SPARK_CONF: {pair!r} is not key=value (pairs are separated by ';')")
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
    description="generate data, train k-means, AdaBoost, a torch net and an RL agent, write the benchmark report",
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
        "torch_epochs": Param(TORCH["params"]["epochs"], type="integer", minimum=1),
        "rl_algorithm": Param("impala", enum=RL_ALGORITHMS, description="conf/jobs/rl_<algorithm>.yaml"),
        "rl_total_steps": Param(RL["params"]["totalSteps"], type="integer", minimum=1),
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
    train_torch = submit("train_torch", "train_torch.py", [
        "--config", str(HOME / "conf" / "jobs" / "deep_torch.yaml"), "--output", RUN + "/deep_torch",
        "params.epochs={{ params.torch_epochs }}"])
    train_rl = submit("train_rl", "train_rl.py", [
        "--config", str(HOME / "conf" / "jobs") + "/rl_{{ params.rl_algorithm }}.yaml", "--output", RUN + "/rl",
        "params.totalSteps={{ params.rl_total_steps }}", "params.runner=spark",
        "params.checkpointDir=" + RUN + "/rl_checkpoint"])
    bench = submit("bench_report", "bench.py", ["--suite", "{{ params.bench_suite }}", "--only",
                                                  "{{ params.bench_only }}", "--out", RUN + "/bench"])

    generate >> [train_kmeans, train_adaboost] >> train_torch >> train_rl >> bench
