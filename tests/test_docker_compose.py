"""docker-compose.yml (no Docker engine here): it parses and has the local cluster's topology, classes and ports."""

import json
import os
import shlex
import subprocess
import sys

import pytest
import yaml

from sparkml_dist.runtime import cluster

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_compose_matches_the_local_standalone_cluster():
    with open(os.path.join(REPO, "docker-compose.yml")) as fh:
        compose = yaml.safe_load(fh)
    services = compose["services"]
    assert {"spark-master", "spark-worker-1", "spark-worker-2", "submit"} <= set(services)
    for svc in services.values():
        image = svc["image"]
        assert image.startswith("apache/spark:4.") and image.endswith("-python3"), image
        assert "bitnami" not in image
    master_cmd = " ".join(services["spark-master"]["command"])
    assert cluster.MASTER_CLASS in master_cmd and "spark-class" in master_cmd
    assert "--port 7077" in master_cmd and "--webui-port 8080" in master_cmd
    assert "7077:7077" in services["spark-master"]["ports"]
    for name in ("spark-worker-1", "spark-worker-2"):
        cmd = " ".join(services[name]["command"])
        assert cluster.WORKER_CLASS in cmd and "spark-class" in cmd
        assert "spark://spark-master:7077" in cmd
        assert "--cores 1" in cmd and "--memory 2g" in cmd  # = `sparkml-dist cluster start` defaults
    submit = " ".join(services["submit"]["command"])
    assert "spark-submit --master spark://spark-master:7077 jobs/quickstart.py" in submit
    assert os.path.isfile(os.path.join(REPO, "jobs", "quickstart.py"))
    # the local cluster command uses the same defaults
    local = cluster.LocalStandaloneCluster()
    assert (local.workers, local.cores, local.memory, local.master_port, local.webui_port) == (2, 1, "2g", 7077, 8080)


def _steps(service: dict) -> list[str]:
    """The `&&`-joined steps of a service's `bash -c` command."""
    cmd = service["command"]
    assert cmd[:2] == ["bash", "-c"], cmd
    return [s.strip() for s in cmd[2].split("&&")]


def test_compose_up_runs_the_job_after_the_workers_are_ready():
    with open(os.path.join(REPO, "docker-compose.yml")) as fh:
        services = yaml.safe_load(fh)["services"]
    submit = services["submit"]
    assert "profiles" not in submit  # `docker compose up` starts it too
    assert submit["depends_on"]["spark-worker-1"] == {"condition": "service_healthy"}
    assert submit["depends_on"]["spark-worker-2"] == {"condition": "service_healthy"}
    for name in ("spark-worker-1", "spark-worker-2"):
        assert services[name]["healthcheck"]["test"] == ["CMD", "python3", "-c", "import sparkml_dist"]
        assert any("pip install -q -e /opt/sparkml_dist" == s for s in _steps(services[name]))
    assert _steps(submit)[-1].startswith("exec /opt/spark/bin/spark-submit --master spark://spark-master:7077 ")


@pytest.mark.cluster
@pytest.mark.slow  # ~1 min: the default suite stays under 20 minutes; `pytest -m slow` runs it
def test_compose_commands_run_against_the_local_cluster(standalone_cluster, tmp_path):
    """The submit service's and the workers' health-check commands, with the compose host names and paths mapped to
    this machine (spark-master -> the local master, /opt/spark -> pyspark's Spark, /opt/sparkml_dist -> the checkout),
    run for real: the job writes its models and metrics."""
    with open(os.path.join(REPO, "docker-compose.yml")) as fh:
        services = yaml.safe_load(fh)["services"]
    env = cluster.cluster_env()
    health = services["spark-worker-1"]["healthcheck"]["test"][1:]
    assert subprocess.run([sys.executable if health[0] == "python3" else health[0], *health[1:]], env=env,
                          cwd="/").returncode == 0
    argv = shlex.split(_steps(services["submit"])[-1])[1:]  # drop `exec`; the pip steps are the image's set-up
    out = tmp_path / "compose-quickstart"
    mapping = {"spark://spark-master:7077": standalone_cluster.master_url, "out/compose-quickstart": str(out)}
    argv = [mapping.get(a, a.replace("/opt/spark/", cluster.spark_home() + "/")) for a in argv]
    script = argv.index("jobs/quickstart.py")
    argv[script:script] = ["--conf", "spark.executor.memory=768m"]  # the local workers have 1 GiB, not 2
    argv += ["input.n_rows=4000", "input.num_partitions=2", "params.maxIter=3", "params.adaboostRounds=5"]
    proc = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["job"] == "quickstart" and metrics["rows"] == 4000
