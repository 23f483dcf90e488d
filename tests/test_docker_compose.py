"""docker-compose.yml (no Docker engine here): it parses and has the local cluster's topology, classes and ports."""

import os

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
