"""Faults on a real standalone cluster (retries on): a lost host in the middle of a MapReduce k-means fit and of a
MapReduce AdaBoost fit, a lost executor in the middle of a BSP fit. Each ends with the undisturbed model; no block
files outlive the application. A lost host is replaced (its worker restarted) before the next test needs two."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import time

import numpy as np
import pytest

from sparkml_dist.runtime.cluster import HOST, cluster_env, spark_home

pytestmark = [pytest.mark.cluster, pytest.mark.faults]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOB = os.path.join(REPO, "tests", "fault_jobs", "fit_under_fault.py")


def _submit_background(cluster, args: list[str], log) -> subprocess.Popen:
    conf = {"spark.executor.memory": "768m", "spark.task.maxFailures": "4", "spark.stage.maxConsecutiveAttempts": "4",
            "spark.driver.host": HOST, "spark.driver.bindAddress": HOST, "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false", "spark.sql.shuffle.partitions": "2"}
    cmd = [os.path.join(spark_home(), "bin", "spark-submit"), "--master", cluster.master_url]
    for key, value in conf.items():
        cmd += ["--conf", f"{key}={value}"]
    return subprocess.Popen(cmd + [JOB, *args], env=cluster_env(), stdout=log, stderr=subprocess.STDOUT, cwd=REPO)


def _run_with_fault(cluster, tmp_path, algorithm: str, engine: str, strike) -> dict:
    for i in range(cluster.workers):  # a host lost by an earlier test is replaced
        if f"worker-{i}" not in cluster.alive_pids():
            cluster.restart_worker(i)
    out, go, killed = (str(tmp_path / n) for n in ("report.json", "go", "killed"))
    with open(tmp_path / "driver.log", "wb") as log:
        proc = _submit_background(cluster, [algorithm, engine, out, go, killed], log)
        try:
            deadline = time.monotonic() + 400
            while not os.path.exists(go) and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert os.path.exists(go), "the job never reached the middle of its fit:\n" + _tail(tmp_path)
            dirs = {w: [d for pid in cluster.faults.executors(w) for d in cluster.faults.executor_dirs(pid)]
                    for w in ("worker-0", "worker-1")}
            strike()
            open(killed, "w").close()
            assert proc.wait(timeout=600) == 0, "the job failed after the fault:\n" + _tail(tmp_path)
        finally:
            if proc.poll() is None:
                proc.kill()
    report = json.loads(open(out).read())
    report["dirs"] = dirs
    return report


def _tail(tmp_path) -> str:
    return (tmp_path / "driver.log").read_text(errors="replace")[-6000:]


def _assert_same_model(report: dict) -> None:
    assert report["go_sent"] and report["killed_during_fit"]  # the fault landed inside the second fit
    ref, got = report["reference"], report["disturbed"]
    assert got["iterations"] == ref["iterations"]
    if "centers" in ref:  # k-means
        np.testing.assert_allclose(got["centers"], ref["centers"], rtol=1e-9, atol=1e-9)
        assert got["cost"] == pytest.approx(ref["cost"], rel=1e-9)
    else:  # AdaBoost: the same stumps in the same order with the same weights
        assert got["stumps"] == ref["stumps"]
        np.testing.assert_allclose(got["alpha"], ref["alpha"], rtol=1e-9)
        np.testing.assert_allclose(got["error"], ref["error"], rtol=1e-9)


def _no_blocks_left(dirs: list[str], timeout: float = 30.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        left = [p for d in dirs for p in glob.glob(os.path.join(d, "**", "sparkml_dist_blocks", "*"), recursive=True)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def test_bsp_kmeans_stage_is_retried_after_a_lost_executor(fault_cluster, tmp_path):
    """An executor dies inside the barrier stage: the surviving rank's collective fails, Spark re-attempts the stage
    once worker-0 has launched a replacement executor, the new attempt rendezvouses under its own prefix and ends
    with the undisturbed model (no hang)."""
    report = _run_with_fault(fault_cluster, tmp_path, "kmeans", "bsp",
                             lambda: fault_cluster.faults.lose_executor("worker-0", remove_dirs=False))
    _assert_same_model(report)
    # no hang: the disturbed fit (replacement executor + re-attempted stage) ends long before the 3600 s timeout
    assert report["fit_seconds"] < 900
    assert fault_cluster.faults.injected >= 1


def test_mapreduce_kmeans_survives_a_lost_host(fault_cluster, tmp_path):
    """worker-1 and its executor are SIGKILLed and the executor's directories deleted (its disk is gone): Spark
    re-runs the lost tasks on worker-0, the engine rebuilds the blocks from lineage and the per-partition state from
    the driver's records, and the fit ends with the undisturbed model."""
    report = _run_with_fault(fault_cluster, tmp_path, "kmeans", "mapreduce",
                             lambda: fault_cluster.faults.lose_host("worker-1"))
    _assert_same_model(report)
    assert report["executors_at_end"] == 1
    assert _no_blocks_left(report["dirs"]["worker-0"] + report["dirs"]["worker-1"]) == []


def test_mapreduce_adaboost_survives_a_lost_host(fault_cluster, tmp_path):
    """worker-0 (the driver's first executor) is lost with its disk in the middle of a MapReduce AdaBoost fit: the
    lost partitions' blocks are rebuilt from lineage and their sample weights recomputed from the rows and the
    stumps chosen so far (the driver's record), so every later round picks the undisturbed stump with the same
    weight. Without the rebuild the weights would restart from uniform on the lost partition (a different model)."""
    report = _run_with_fault(fault_cluster, tmp_path, "adaboost", "mapreduce",
                             lambda: fault_cluster.faults.lose_host("worker-0"))
    _assert_same_model(report)
    assert report["reference"]["iterations"] == 30
    assert report["executors_at_end"] == 1
    assert _no_blocks_left(report["dirs"]["worker-0"] + report["dirs"]["worker-1"]) == []
