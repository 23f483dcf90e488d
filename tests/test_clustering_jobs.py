"""The clustering jobs: in-process through the runner, and by spark-submit on a real standalone cluster."""

from __future__ import annotations

import json
import os

import pytest

from sparkml_dist.runner import load_config, run_job

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("job", ["kmeans", "fuzzy_cmeans", "consensus"])
def test_job_runs_in_process_and_writes_outputs(spark, tmp_path, job):
    from sparkml_dist.clustering import ConsensusClusteringModel, FuzzyCMeansModel, KMeansModel

    cfg = load_config(os.path.join(REPO, "conf", "jobs", f"{job}.yaml"),
                      ["input.n_rows=3000", "params.engine=bsp"], job)
    out = tmp_path / job
    metrics = run_job(job, cfg, spark, str(out))
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["k"] == metrics["k"] == (5 if job == "kmeans" else 4)
    assert saved["adjusted_rand_index"] > 0.9
    cls = {"kmeans": KMeansModel, "fuzzy_cmeans": FuzzyCMeansModel, "consensus": ConsensusClusteringModel}[job]
    assert len(cls.load(str(out / "model")).clusterCenters()) == metrics["k"]
    assert spark.read.parquet(str(out / "predictions")).count() == 3000
    assert [p for p in os.listdir(tmp_path) if "_tmp" in p] == []


@pytest.mark.cluster
@pytest.mark.parametrize("script,job,engine", [
    # ~70 s each: `pytest -m slow` (the default suite stays under 20 minutes). The default suite covers the
    # spark-submit route across two executor JVMs and a barrier stage spanning them in tests/test_cluster.py, the
    # jobs' logic in-process above; the fault tests (`-m faults`) run the MapReduce engine on a standalone cluster
    pytest.param("train_kmeans.py", "kmeans", "mapreduce", marks=pytest.mark.slow),
    pytest.param("train_fuzzy.py", "fuzzy_cmeans", "bsp", marks=pytest.mark.slow),
])
def test_job_by_spark_submit_on_standalone_cluster(standalone_cluster, tmp_path, script, job, engine):
    """Both engines across two executor JVMs: resident blocks stay on their executor, the barrier stage spans both."""
    from sparkml_dist.runtime.cluster import spark_submit

    out = tmp_path / job
    proc = spark_submit(os.path.join(REPO, "jobs", script),
                        ["--config", os.path.join(REPO, "conf", "jobs", f"{job}.yaml"), "--output", str(out),
                         "input.n_rows=4000", f"params.engine={engine}"],
                        master=standalone_cluster.master_url, conf={"spark.executor.memory": "768m"},
                        timeout=300, cwd=REPO)
    assert proc.returncode == 0, f"spark-submit {script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["job"] == job and metrics["adjusted_rand_index"] > 0.9
    assert metrics["summary"]["engine"] == engine
    assert os.path.isdir(out / "model" / "metadata") and os.path.isdir(out / "predictions")
    assert [p for p in os.listdir(tmp_path) if "_tmp" in p] == []
