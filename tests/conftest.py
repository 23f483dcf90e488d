"""Shared fixtures: a real local SparkSession, and a real standalone cluster (marker ``cluster``)."""

from __future__ import annotations

import os
import sys

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


def pytest_configure(config):
    config.addinivalue_line("markers", "cluster: runs against a real Spark standalone master + workers on loopback")
    config.addinivalue_line("markers", "slow: takes more than ~30 s")
    config.addinivalue_line("markers", "readme: runs the README's snippets (minutes; opt-in: pytest -m readme)")


#: Markers whose tests run only when `-m` names them (the default `pytest tests` skips them).
OPT_IN_MARKERS = ("readme",)


def pytest_collection_modifyitems(config, items):
    selected = config.getoption("-m") or ""
    for item in items:
        for name in OPT_IN_MARKERS:
            if name in item.keywords and name not in selected:
                item.add_marker(pytest.mark.skip(reason=f"opt-in: run with `pytest -m {name}`"))


@pytest.fixture(scope="session")
def spark():
    """``local[2]`` (barrier stages need as many slots as tasks), UI off, loopback, one task attempt."""
    from sparkml_dist.runtime import get_spark, setup_logging

    setup_logging("INFO")
    session = get_spark("local", master="local[2]", app_name="sparkml-dist-tests", conf={
        "spark.sql.shuffle.partitions": "4",
        "spark.task.maxFailures": "1",
        "spark.driver.memory": "4g",
        "spark.sql.pyspark.jvmStacktrace.enabled": "true",
    })
    yield session
    session.stop()


@pytest.fixture(scope="session")
def standalone_cluster(tmp_path_factory):
    """A real standalone master + 2 workers (1 core, 1 GiB each) on 127.0.0.1, started with pyspark's
    ``bin/spark-class`` and stopped by pid at the end of the session. Jobs reach it through ``spark_submit``
    (a separate driver JVM), since this test process already runs the local ``spark`` session."""
    from sparkml_dist.runtime.cluster import LocalStandaloneCluster

    cluster = LocalStandaloneCluster(workers=2, cores=1, memory="1g", master_port=None, webui_port=None,
                                     state_dir=tmp_path_factory.mktemp("standalone"))
    cluster.start(timeout=120)
    yield cluster
    cluster.stop()
