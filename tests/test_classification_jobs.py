"""The ``adaboost`` and ``svm`` jobs: through the runner in-process, and by spark-submit on a real standalone
cluster."""

from __future__ import annotations

import json
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("job,overrides", [
    ("adaboost", {"params": {"maxIter": 5, "maxBins": 32, "engine": "bsp"}}),
    ("svm", {"params": {"mode": "mrsmo"}}),
])
def test_job_runs_in_process_and_writes_model(spark, tmp_path, job, overrides):
    from sparkml_dist.runner import load_config, run_job

    cfg = load_config(os.path.join(REPO, "conf", "jobs", f"{job}.yaml"), job=job)
    cfg.update(overrides)
    cfg["input"] = dict(cfg["input"], n_rows=3000)
    metrics = run_job(job, cfg, spark, output=str(tmp_path / job))
    assert metrics["test_accuracy"] > 0.55
    assert (tmp_path / job / "model" / "metadata").is_dir()
    assert json.loads((tmp_path / job / "metrics.json").read_text())["job"] == job


@pytest.mark.cluster
@pytest.mark.parametrize("script,job,extra", [
    # tests/test_cluster.py covers the spark-submit route across executor JVMs in the default suite; these jobs'
    # logic runs in-process above (default suite time budget)
    pytest.param("train_adaboost.py", "adaboost", ["params.maxIter=5"], marks=pytest.mark.slow),
    pytest.param("train_svm.py", "svm", ["params.maxPasses=2"], marks=pytest.mark.slow),
])
def test_job_by_spark_submit_on_standalone_cluster(standalone_cluster, tmp_path, script, job, extra):
    from sparkml_dist.runtime.cluster import spark_submit

    out = tmp_path / job
    proc = spark_submit(os.path.join(REPO, "jobs", script),
                        ["--config", os.path.join(REPO, "conf", "jobs", f"{job}.yaml"), "--output", str(out),
                         "input.n_rows=3000", *extra],
                        master=standalone_cluster.master_url, conf={"spark.executor.memory": "768m"},
                        timeout=300, cwd=REPO)
    assert proc.returncode == 0, f"spark-submit {script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["job"] == job and metrics["test_accuracy"] > 0.55
    assert (out / "model" / "data").is_dir()
