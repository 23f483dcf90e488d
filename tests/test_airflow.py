"""The Airflow 3 DAG (``jobs/airflow/sparkml_dist_dag.py``), loaded with Airflow's ``DagBag`` in its own virtual
environment (``jobs/airflow/setup_venv.sh`` makes ``.venv-airflow``; ``.ci/run`` calls it), and run end to end with
``dag.test()`` against a real standalone cluster (marker ``cluster``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AIRFLOW_PYTHON = os.environ.get("SPARKML_DIST_AIRFLOW_PYTHON", os.path.join(REPO, ".venv-airflow", "bin", "python"))

if not os.path.isfile(AIRFLOW_PYTHON):
    if os.environ.get("CI"):
        raise RuntimeError(f"{AIRFLOW_PYTHON} is missing: .ci/run must run jobs/airflow/setup_venv.sh first")
    pytest.skip(f"no Airflow venv at {AIRFLOW_PYTHON} (run jobs/airflow/setup_venv.sh)", allow_module_level=True)

LOAD = r"""
import json, sys
try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # early 3.x
    from airflow.models.dagbag import DagBag
import inspect
no_examples = {"include_examples": False} if "include_examples" in inspect.signature(DagBag).parameters else {}
bag = DagBag(dag_folder=sys.argv[1], **no_examples)  # 3.3 dropped the argument: AIRFLOW__CORE__LOAD_EXAMPLES
dag = bag.dags.get("sparkml_dist")
out = {"import_errors": {k: str(v) for k, v in bag.import_errors.items()}, "dag_ids": sorted(bag.dags)}
if dag is not None:
    out["schedule"] = str(dag.schedule)
    out["params"] = {k: dag.params[k] for k in dag.params}
    out["tasks"] = {t.task_id: {"type": type(t).__name__, "application": t.application,
                                "application_args": list(t.application_args), "conn_id": t._conn_id,
                                "archives": t._archives, "env_vars": t.env_vars, "conf": t.conf,
                                "upstream": sorted(t.upstream_task_ids), "downstream": sorted(t.downstream_task_ids)}
                    for t in dag.tasks}
print("RESULT " + json.dumps(out, default=str))
"""


def _airflow_env(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "AIRFLOW"))}
    env.update(AIRFLOW_HOME=str(tmp_path / "airflow"), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__CORE__UNIT_TEST_MODE="False", AIRFLOW__CORE__DAGS_FOLDER=os.path.join(REPO, "jobs", "airflow"),
               SPARKML_DIST_HOME=REPO, **extra)
    return env


def _run(code: str, env: dict, *args: str, timeout: float = 300) -> dict:
    proc = subprocess.run([AIRFLOW_PYTHON, "-c", code, *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"rc={proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def test_dag_loads_with_its_tasks_order_and_arguments(tmp_path):
    env = _airflow_env(tmp_path, SPARKML_DIST_PYTHON="/opt/py/bin/python", SPARKML_DIST_ARCHIVE="/d/env.tar.gz")
    out = _run(LOAD, env, os.path.join(REPO, "jobs", "airflow"))
    assert out["import_errors"] == {} and out["dag_ids"] == ["sparkml_dist"]
    tasks = out["tasks"]
    assert set(tasks) == {"generate_data", "train_kmeans", "train_adaboost", "bench_report"}
    assert all(t["type"] == "SparkSubmitOperator" and t["conn_id"] == "spark_default" for t in tasks.values())
    assert tasks["generate_data"]["downstream"] == ["train_adaboost", "train_kmeans"]
    assert tasks["train_kmeans"]["upstream"] == tasks["train_adaboost"]["upstream"] == ["generate_data"]
    assert tasks["bench_report"]["upstream"] == ["train_adaboost", "train_kmeans"]
    for t in tasks.values():
        assert os.path.isfile(t["application"]), t["application"]
        assert t["archives"] == "/d/env.tar.gz#environment"
        assert t["env_vars"]["PYSPARK_PYTHON"] == "./environment/bin/python"
        assert t["env_vars"]["PYSPARK_DRIVER_PYTHON"] == "/opt/py/bin/python"
        config = [a for a in t["application_args"] if a.endswith(".yaml")]
        assert all(os.path.isfile(c) for c in config)
    # the parameters' defaults are the job configs' values
    with open(os.path.join(REPO, "conf", "jobs", "generate.yaml")) as fh:
        gen = yaml.safe_load(fh)
    with open(os.path.join(REPO, "conf", "jobs", "kmeans.yaml")) as fh:
        km = yaml.safe_load(fh)
    assert out["params"]["n_rows"] == gen["input"]["n_rows"] and out["params"]["k"] == km["params"]["k"]
    args = tasks["train_kmeans"]["application_args"]
    assert "params.k={{ params.k }}" in args and any(a.startswith("input={path: ") for a in args)
    assert tasks["generate_data"]["application_args"][3].endswith("/{{ ts_nodash }}/data")
    assert out["schedule"] == "@daily"


RUN_DAG = r"""
import json, os, sys
from airflow.sdk import DAG  # noqa: F401
try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:
    from airflow.models.dagbag import DagBag
import inspect
no_examples = {"include_examples": False} if "include_examples" in inspect.signature(DagBag).parameters else {}
dag = DagBag(dag_folder=sys.argv[1], **no_examples).dags["sparkml_dist"]
run = dag.test(run_conf=json.loads(sys.argv[2]))
print("RESULT " + json.dumps({"state": str(run.state), "tasks": {ti.task_id: str(ti.state)
                                                                  for ti in run.get_task_instances()}}))
"""


@pytest.mark.cluster
@pytest.mark.slow
def test_dag_test_runs_every_task_on_the_standalone_cluster(standalone_cluster, tmp_path):
    from sparkml_dist.runtime.cluster import cluster_env, spark_home

    out = tmp_path / "runs"
    base = cluster_env()
    env = _airflow_env(tmp_path, SPARKML_DIST_OUTPUT=str(out), SPARKML_DIST_PYTHON=sys.executable,
                       PYTHONPATH=base["PYTHONPATH"], SPARK_LOCAL_IP="127.0.0.1", SPARK_HOME=spark_home(),
                       PATH=os.path.join(spark_home(), "bin") + os.pathsep + os.environ["PATH"],
                       AIRFLOW_CONN_SPARK_DEFAULT=standalone_cluster.master_url + "?deploy-mode=client",
                       SPARKML_DIST_SPARK_CONF="spark.driver.host=127.0.0.1;spark.driver.bindAddress=127.0.0.1;"
                                               "spark.executor.memory=768m;spark.ui.enabled=false")
    migrate = subprocess.run([os.path.join(os.path.dirname(AIRFLOW_PYTHON), "airflow"), "db", "migrate"], env=env,
                             capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    conf = {"n_rows": 3000, "n_features": 4, "centers": 3, "k": 3, "adaboost_rounds": 3, "bench_suite": "quick",
            "bench_only": "data"}
    result = _run(RUN_DAG, env, os.path.join(REPO, "jobs", "airflow"), json.dumps(conf), timeout=1800)
    assert result["state"].endswith("success"), result
    assert set(result["tasks"].values()) == {"success"} or all(s.endswith("success") for s in result["tasks"].values())
    (run_dir,) = list(out.iterdir())
    kmeans = json.loads((run_dir / "kmeans" / "metrics.json").read_text())
    assert kmeans["rows"] == 3000 and kmeans["k"] == 3 and kmeans["adjusted_rand_index"] > 0.9
    assert json.loads((run_dir / "adaboost" / "metrics.json").read_text())["job"] == "adaboost"
    bench = json.loads((run_dir / "bench" / "results.json").read_text())
    assert [r["case"] for r in bench["records"]] == ["data/to_blocks/default"] and bench["failed"] == 0
    assert bench["machine"]["master"] == standalone_cluster.master_url  # the submitted session, not a profile's
    assert (run_dir / "bench" / "report.html").is_file()
