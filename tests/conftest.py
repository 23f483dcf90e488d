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
    config.addinivalue_line("markers", "gpu: needs a CUDA device (skips without one)")
    for marker, (env, what) in OPT_IN.items():
        config.addinivalue_line("markers", f"{marker}: {what}; run with `pytest -m {marker}` or {env}=1")


#: markers whose tests run only when asked for (``-m MARKER`` or the environment variable): the default suite
#: (the README's test command, CI) stays within its time budget; benchmarks and `make test-all` select them
OPT_IN = {
    "slow": ("SPARKML_DIST_SLOW", "takes minutes (packaged submits, dag.test, --workers scaling)"),
    "rl_full": ("SPARKML_DIST_RL_FULL", "RL benchmark targets (minutes)"),
    "readme": ("SPARKML_DIST_README", "runs the README's snippets (minutes)"),
    "faults": ("SPARKML_DIST_FAULTS", "kills workers/executors of an own standalone cluster (minutes)"),
}


def pytest_collection_modifyitems(config, items):
    markexpr = config.option.markexpr or ""
    for marker, (env, _) in OPT_IN.items():
        if marker in markexpr or os.environ.get(env) == "1":
            continue
        skip = pytest.mark.skip(reason=f"opt-in test: select with `pytest -m {marker}` or {env}=1")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def spark():
    """``local[2,2]`` (2 slots; barrier stages need as many slots as tasks), UI off, loopback, and retries *on*:
    a failed task is retried once and a failed barrier stage re-attempted once, as on a real cluster (in local mode
    only the ``[N,F]`` master form sets the task attempts; ``spark.task.maxFailures`` is for cluster managers)."""
    from sparkml_dist.runtime import get_spark, setup_logging

    setup_logging("INFO")
    session = get_spark("local", master="local[2,2]", app_name="sparkml-dist-tests", conf={
        "spark.sql.shuffle.partitions": "4",
        "spark.task.maxFailures": "2",
        "spark.stage.maxConsecutiveAttempts": "2",
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


class FaultInjector:
    """Kills parts of a :class:`~sparkml_dist.runtime.cluster.LocalStandaloneCluster` the way a lost host dies:
    SIGKILL (no shutdown hooks), and the dead executor's directories removed, since a lost host takes its disk with
    it (on one machine the files would otherwise stay readable by the next executor). ``injected`` counts faults.

    Reusable for any MapReduce/BSP fault test (AdaBoost too): start a job through ``spark-submit`` in the
    background, wait for it to reach the middle, call :meth:`lose_host` or :meth:`lose_executor`.
    """

    def __init__(self, cluster):
        self.cluster = cluster
        self.injected = 0
        self.removed_dirs: list[str] = []

    @staticmethod
    def _children(ppid: int) -> list[int]:
        out = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as fh:
                        fields = fh.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == ppid:
                    out.append(int(entry))
        return out

    def executors(self, worker: str) -> list[int]:
        """Executor JVM pids the worker launched (children running CoarseGrainedExecutorBackend)."""
        pids = []
        for pid in self._children(self.cluster.state.pids[worker]):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    if b"CoarseGrainedExecutorBackend" in fh.read():
                        pids.append(pid)
            except OSError:
                pass
        return pids

    @staticmethod
    def executor_dirs(pid: int) -> list[str]:
        """The executor's local directories (``SPARK_EXECUTOR_DIRS``, where its block manager and our blocks live)."""
        with open(f"/proc/{pid}/environ", "rb") as fh:
            env = dict(item.split(b"=", 1) for item in fh.read().split(b"\0") if b"=" in item)
        return [d for d in env.get(b"SPARK_EXECUTOR_DIRS", b"").decode().split(os.pathsep) if d]

    def _kill(self, pids: list[int], remove_dirs: bool) -> list[str]:
        import shutil
        import signal

        dirs = [d for pid in pids for d in self.executor_dirs(pid)]
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        if remove_dirs:
            for d in dirs:
                shutil.rmtree(d, ignore_errors=True)
            self.removed_dirs += dirs
        return dirs

    def lose_host(self, worker: str = "worker-1") -> list[str]:
        """Kill the worker JVM and its executors and remove the executors' directories; returns those dirs."""
        executors = self.executors(worker)
        assert executors, f"{worker} runs no executor"
        dirs = self._kill(executors + [self.cluster.state.pids[worker]], remove_dirs=True)
        self.injected += 1
        return dirs

    def lose_executor(self, worker: str = "worker-1", remove_dirs: bool = True) -> list[str]:
        """Kill only the executor JVM(s) of ``worker`` (the worker launches a replacement); returns their dirs."""
        executors = self.executors(worker)
        assert executors, f"{worker} runs no executor"
        dirs = self._kill(executors, remove_dirs)
        self.injected += 1
        return dirs


@pytest.fixture(scope="module")
def fault_cluster(tmp_path_factory):
    """A standalone master + 2 one-core workers of the calling module's own (faults kill its workers), with a
    :class:`FaultInjector` as ``cluster.faults``."""
    from sparkml_dist.runtime.cluster import LocalStandaloneCluster

    cluster = LocalStandaloneCluster(workers=2, cores=1, memory="1g", master_port=None, webui_port=None,
                                     state_dir=tmp_path_factory.mktemp("faults"))
    cluster.start(timeout=120)
    cluster.faults = FaultInjector(cluster)
    yield cluster
    cluster.stop()
