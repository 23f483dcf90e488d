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
    out["rl_choices"] = dag.params.get_param("rl_algorithm").schema.get("enum")
    import copy
    out["bad_conf"] = {}
    for key, value in [("torch_epochs", 0), ("rl_algorithm", "dqn"), ("rl_total_steps", "many"), ("k", 1)]:
        trial = copy.deepcopy(dag.params)
        try:
            trial[key] = value
            trial.validate()
            out["bad_conf"][key] = None
        except Exception as exc:
            out["bad_conf"][key] = type(exc).__name__ + ": " + str(exc)
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


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """The DagBag's view of the DAG (loaded once for the module's tests)."""
    env = _airflow_env(tmp_path_factory.mktemp("airflow"), SPARKML_DIST_PYTHON="/opt/py/bin/python",
                       SPARKML_DIST_ARCHIVE="/d/env.tar.gz")
    return _run(LOAD, env, os.path.join(REPO, "jobs", "airflow"))


def test_dag_loads_with_its_tasks_order_and_arguments(loaded):
    out = loaded
    assert out["import_errors"] == {} and out["dag_ids"] == ["sparkml_dist"]
    tasks = out["tasks"]
    assert set(tasks) == {"generate_data", "train_kmeans", "train_adaboost", "train_torch", "train_rl",
                          "bench_report"}
    assert all(t["type"] == "SparkSubmitOperator" and t["conn_id"] == "spark_default" for t in tasks.values())
    assert tasks["generate_data"]["downstream"] == ["train_adaboost", "train_kmeans"]
    assert tasks["train_kmeans"]["upstream"] == tasks["train_adaboost"]["upstream"] == ["generate_data"]
    # the barrier-stage jobs (ranks, actors) hold every slot: one at a time, after the classical ones
    assert tasks["train_torch"]["upstream"] == ["train_adaboost", "train_kmeans"]
    assert tasks["train_kmeans"]["downstream"] == tasks["train_adaboost"]["downstream"] == ["train_torch"]
    assert tasks["train_torch"]["downstream"] == ["train_rl"] and tasks["train_rl"]["upstream"] == ["train_torch"]
    assert tasks["bench_report"]["upstream"] == ["train_rl"] and tasks["bench_report"]["downstream"] == []
    assert tasks["train_torch"]["application"].endswith("jobs/train_torch.py")
    assert tasks["train_rl"]["application"].endswith("jobs/train_rl.py")
    for t in tasks.values():
        assert os.path.isfile(t["application"]), t["application"]
        assert t["archives"] == "/d/env.tar.gz#environment"
        assert t["env_vars"]["PYSPARK_PYTHON"] == "./environment/bin/python"
        assert t["env_vars"]["PYSPARK_DRIVER_PYTHON"] == "/opt/py/bin/python"
        config = [a.replace("{{ params.rl_algorithm }}", out["params"]["rl_algorithm"])
                  for a in t["application_args"] if a.endswith(".yaml")]
        assert len(config) == (0 if t["application"].endswith("bench.py") else 1), t["application_args"]
        assert all(os.path.isfile(c) for c in config), config
    # the parameters' defaults are the job configs' values
    with open(os.path.join(REPO, "conf", "jobs", "generate.yaml")) as fh:
        gen = yaml.safe_load(fh)
    with open(os.path.join(REPO, "conf", "jobs", "kmeans.yaml")) as fh:
        km = yaml.safe_load(fh)
    assert out["params"]["n_rows"] == gen["input"]["n_rows"] and out["params"]["k"] == km["params"]["k"]
    with open(os.path.join(REPO, "conf", "jobs", "deep_torch.yaml")) as fh:
        torch_cfg = yaml.safe_load(fh)
    with open(os.path.join(REPO, "conf", "jobs", "rl_impala.yaml")) as fh:
        rl_cfg = yaml.safe_load(fh)
    assert out["params"]["torch_epochs"] == torch_cfg["params"]["epochs"]
    assert out["params"]["rl_algorithm"] == "impala"
    assert out["params"]["rl_total_steps"] == rl_cfg["params"]["totalSteps"]
    assert out["rl_choices"] == sorted(f[3:-5] for f in os.listdir(os.path.join(REPO, "conf", "jobs"))
                                       if f.startswith("rl_") and f.endswith(".yaml"))
    torch_args = tasks["train_torch"]["application_args"]
    assert torch_args[:2] == ["--config", os.path.join(REPO, "conf", "jobs", "deep_torch.yaml")]
    assert torch_args[2] == "--output" and torch_args[3].endswith("/{{ ts_nodash }}/deep_torch")
    assert "params.epochs={{ params.torch_epochs }}" in torch_args
    rl_args = tasks["train_rl"]["application_args"]
    assert rl_args[1].endswith("/conf/jobs/rl_{{ params.rl_algorithm }}.yaml") and rl_args[3].endswith("/rl")
    assert "params.totalSteps={{ params.rl_total_steps }}" in rl_args and "params.runner=spark" in rl_args
    assert any(a.startswith("params.checkpointDir=") and a.endswith("/{{ ts_nodash }}/rl_checkpoint")
               for a in rl_args)
    args = tasks["train_kmeans"]["application_args"]
    assert "params.k={{ params.k }}" in args and any(a.startswith("input={path: ") for a in args)
    assert tasks["generate_data"]["application_args"][3].endswith("/{{ ts_nodash }}/data")
    assert out["schedule"] == "@daily"
    # a run's config is checked against the params (as Airflow does on trigger), naming the param
    bad = out["bad_conf"]
    assert all(bad[key] and f"Invalid input for param {key}" in bad[key] for key in bad), bad


def _render(args: list[str], params: dict, ts: str = "20260101T000000") -> list[str]:
    import re

    return [re.sub(r"\{\{ params\.(\w+) \}\}", lambda m: str(params[m.group(1)]), a).replace("{{ ts_nodash }}", ts)
            for a in args]


def test_dag_arguments_pass_the_jobs_own_checks_for_every_rl_choice(loaded, tmp_path, monkeypatch):
    """The torch and RL tasks' arguments, rendered with the defaults and with each rl_algorithm choice, are
    accepted by the jobs' own config checks (``runner.prepare``: schema, algorithm params, budget) before Spark;
    a too-small rl_total_steps is refused by the job, naming totalSteps."""
    from sparkml_dist.runner import ConfigError, prepare

    monkeypatch.setenv("SPARKML_DIST_OUTPUT", str(tmp_path))
    tasks, defaults = loaded["tasks"], loaded["params"]

    def job_args(task: str, **params) -> tuple[str, list[str], str]:
        args = _render(tasks[task]["application_args"], {**defaults, **params})
        assert args[0] == "--config" and args[2] == "--output"
        return args[1], args[4:], str(tmp_path / task)

    config, overrides, output = job_args("train_torch", torch_epochs=2)
    assert prepare("deep_torch", config, overrides, output, False)["params"]["epochs"] == 2
    for algorithm in loaded["rl_choices"]:
        config, overrides, output = job_args("train_rl", rl_algorithm=algorithm, rl_total_steps=4096)
        cfg = prepare("rl", config, overrides, output, False)
        assert cfg["algorithm"] == algorithm and cfg["params"]["totalSteps"] == 4096
        assert cfg["params"]["runner"] == "spark" and cfg["params"]["checkpointDir"].endswith("/rl_checkpoint")
    config, overrides, output = job_args("train_rl", rl_total_steps=100)
    with pytest.raises(ConfigError, match=r"totalSteps=100 is smaller than one learner batch"):
        prepare("rl", config, overrides, output, False)


@pytest.mark.parametrize("env, match", [
    ({"SPARKML_DIST_SPARK_CONF": "spark.executor.memory=1g;spark.ui.enabled"},
     r"SPARKML_DIST_SPARK_CONF: 'spark.ui.enabled' is not key=value"),
    ({"SPARKML_DIST_HOME": "/nonexistent/checkout"}, r"job config /nonexistent/checkout/conf/jobs/generate.yaml not"),
])
def test_dag_bad_environment_is_an_import_error_naming_it(tmp_path, env, match):
    import re

    out = _run(LOAD, {**_airflow_env(tmp_path), **env}, os.path.join(REPO, "jobs", "airflow"))
    assert "sparkml_dist" not in out["dag_ids"]
    (error,) = out["import_errors"].values()
    assert re.search(match, error), error


def test_dag_job_config_without_a_needed_key_names_file_and_key(tmp_path):
    import re
    import shutil

    home = tmp_path / "home"
    shutil.copytree(os.path.join(REPO, "conf"), home / "conf")
    shutil.copytree(os.path.join(REPO, "jobs"), home / "jobs")
    cfg = yaml.safe_load((home / "conf" / "jobs" / "deep_torch.yaml").read_text())
    del cfg["params"]["epochs"]
    (home / "conf" / "jobs" / "deep_torch.yaml").write_text(yaml.safe_dump(cfg))
    out = _run(LOAD, {**_airflow_env(tmp_path), "SPARKML_DIST_HOME": str(home)}, str(home / "jobs" / "airflow"))
    (error,) = out["import_errors"].values()
    assert re.search(r"deep_torch.yaml: no 'params.epochs'", error), error


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
    conf = {"n_rows": 3000, "n_features": 4, "centers": 3, "k": 3, "adaboost_rounds": 3, "torch_epochs": 2,
            "rl_algorithm": "impala", "rl_total_steps": 2048, "bench_suite": "quick", "bench_only": "data"}
    result = _run(RUN_DAG, env, os.path.join(REPO, "jobs", "airflow"), json.dumps(conf), timeout=1800)
    assert result["state"].endswith("success"), result
    assert set(result["tasks"].values()) == {"success"} or all(s.endswith("success") for s in result["tasks"].values())
    (run_dir,) = list(out.iterdir())
    kmeans = json.loads((run_dir / "kmeans" / "metrics.json").read_text())
    assert kmeans["rows"] == 3000 and kmeans["k"] == 3 and kmeans["adjusted_rand_index"] > 0.9
    assert json.loads((run_dir / "adaboost" / "metrics.json").read_text())["job"] == "adaboost"
    deep = json.loads((run_dir / "deep_torch" / "metrics.json").read_text())
    assert len(deep["history"]) == 2 and deep["test_accuracy"] > 0.2  # 2 epochs: well above chance (0.1)
    rl = json.loads((run_dir / "rl" / "metrics.json").read_text())
    assert rl["algorithm"] == "impala" and rl["env_steps"] >= 2048
    bench = json.loads((run_dir / "bench" / "results.json").read_text())
    assert [r["case"] for r in bench["records"]] == ["data/to_blocks/default"] and bench["failed"] == 0
    assert bench["machine"]["master"] == standalone_cluster.master_url  # the submitted session, not a profile's
    assert (run_dir / "bench" / "report.html").is_file()
