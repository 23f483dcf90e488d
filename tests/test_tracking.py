"""MLflow tracking against a local file-store tracking URI: params, per-iteration metrics (live from driver-side
loops, after the fit for BSP ranks), and ``mlflow.spark`` model logging that loads back and predicts the same."""

from __future__ import annotations

import os

import numpy as np
import pytest

if not os.environ.get("CI"):
    pytest.importorskip("mlflow")

from mlflow.tracking import MlflowClient  # noqa: E402

from sparkml_dist import tracking  # noqa: E402


@pytest.fixture(scope="module")
def blobs(spark):
    from sparkml_dist.data.generators import make_blobs

    df = make_blobs(spark, 3000, 4, centers=3, cluster_std=1.0, seed=0, num_partitions=2).cache()
    df.count()
    yield df
    df.unpersist()


def _arrays(df):
    from pyspark.ml.functions import vector_to_array

    pdf = df.select(vector_to_array("features").alias("x"), "label").toPandas()
    return np.stack(pdf["x"].to_numpy()), pdf["label"].to_numpy()


def _fit_logged(tmp_path, estimator, df):
    uri = f"file:{tmp_path / 'mlruns'}"
    with tracking.run("test", tracking_uri=uri, experiment="sparkml_dist_tests") as active:
        params = tracking.log_params(estimator)
        model = estimator.fit(df)
        model_uri = tracking.log_fit(model)
    return MlflowClient(uri), active.info.run_id, params, model, model_uri


def _history(client, run_id, key):
    return [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


@pytest.mark.parametrize("engine", ["mapreduce", "bsp"])
def test_kmeans_logs_params_each_iteration_and_the_model(blobs, tmp_path, engine):
    import mlflow.spark
    from sklearn.cluster import KMeans as SkKMeans

    from sparkml_dist.clustering import KMeans

    X, _ = _arrays(blobs)
    C0 = X[[0, 1000, 2000]]
    est = KMeans(k=3, maxIter=6, tol=0.0, initialCenters=C0.tolist(), engine=engine)
    client, run_id, params, model, model_uri = _fit_logged(tmp_path, est, blobs)
    run = client.get_run(run_id)
    assert run.data.params["k"] == "3" and run.data.params["engine"] == engine and params["maxIter"] == 6
    cost = _history(client, run_id, "kmeans.cost")
    assert [s for s, _ in cost] == list(range(1, model.summary.numIter + 1))
    assert [v for _, v in cost] == pytest.approx(model.summary.costHistory, rel=1e-12)
    # the last logged cost is scikit-learn's Lloyd from the same centres
    sk = SkKMeans(n_clusters=3, init=C0, n_init=1, algorithm="lloyd", max_iter=6, tol=0).fit(X)
    assert run.data.metrics["final.inertia"] == pytest.approx(sk.inertia_, rel=1e-9)
    loaded = mlflow.spark.load_model(model_uri)
    ours = [r.prediction for r in model.transform(blobs).select("prediction").collect()]
    back = [r.prediction for r in loaded.transform(blobs).select("prediction").collect()]
    assert back == ours


def test_adaboost_rounds_are_logged(spark, tmp_path):
    from sparkml_dist.classification import AdaBoostClassifier
    from sparkml_dist.data.generators import make_hastie_10_2

    df = make_hastie_10_2(spark, n_rows=2000, seed=0, num_partitions=2)
    client, run_id, _, model, _ = _fit_logged(tmp_path, AdaBoostClassifier(maxIter=4, engine="bsp"), df)
    errors = _history(client, run_id, "adaboost.error")
    assert [s for s, _ in errors] == [1, 2, 3, 4]
    assert [v for _, v in errors] == pytest.approx(list(model.estimatorErrors), rel=1e-9)


def test_no_active_run_logs_nothing_and_log_fit_says_why(blobs, tmp_path):
    from sparkml_dist.clustering import KMeans
    from sparkml_dist.runtime.logs import ProgressReporter

    ProgressReporter("noop").step(cost=1.0)  # no run: nothing to log, no error
    model = KMeans(k=2, maxIter=2).fit(blobs)
    with pytest.raises(RuntimeError, match="needs an active MLflow run"):
        tracking.log_fit(model)


def test_torch_estimator_logs_params_each_epoch_and_rank0_model(spark, tmp_path):
    """Deep learning: the estimator's params, rank 0's per-epoch history (returned to the driver) at step=epoch,
    the final epoch's numbers, and the model through ``mlflow.spark`` predicting as the trained one."""
    import mlflow.spark

    from sparkml_dist.data.sources import load
    from sparkml_dist.deep import TorchEstimator
    from sparkml_dist.deep.models import MLP

    df = load(spark, "iris").selectExpr("features", "cast(label as int) label").repartition(2).cache()
    est = TorchEstimator(model=lambda: MLP(4, (16,), 3), lr=0.02, batchSize=32, epochs=5, numWorkers=2, seed=0)
    client, run_id, params, model, model_uri = _fit_logged(tmp_path, est, df)
    run = client.get_run(run_id)
    assert run.data.params["epochs"] == "5" and run.data.params["lr"] == "0.02" and params["numWorkers"] == 2
    for key in ("loss", "accuracy", "samples_per_s"):
        logged = _history(client, run_id, f"torch.{key}")
        assert [s for s, _ in logged] == [1, 2, 3, 4, 5], key
        assert [v for _, v in logged] == pytest.approx([h[key] for h in model.history], rel=1e-12), key
    assert run.data.metrics["final.loss"] == pytest.approx(model.history[-1]["loss"])
    assert run.data.metrics["final.epochs"] == 5
    # the logged training loss is the model's: recompute the last-epoch loss scale independently with torch
    X, y = _arrays(df)
    import torch

    with torch.no_grad():
        full_loss = torch.nn.functional.cross_entropy(torch.from_numpy(model.predict_numpy(X)),
                                                      torch.from_numpy(y.astype(np.int64))).item()
    assert full_loss < _history(client, run_id, "torch.loss")[0][1]  # training reduced the loss it logged
    loaded = mlflow.spark.load_model(model_uri)
    ours = [r.prediction for r in model.transform(df).select("prediction").collect()]
    back = [r.prediction for r in loaded.transform(df).select("prediction").collect()]
    assert back == ours
    df.unpersist()


@pytest.mark.parametrize("name, runner", [("impala", "local"), ("dppo", "spark")])
def test_rl_logs_config_each_progress_step_and_the_policy(spark, tmp_path, name, runner):
    """RL: the algorithm's config as params, every history row as rl.<metric> at step=env_steps, logged live from
    the driver's progress on both runners (DPPO's Spark replicas report every update to the driver too; log_fit adds
    no duplicate steps), the final stats, and the policy as artifacts that RLResult.load reads back to the same
    greedy return."""
    import mlflow

    from sparkml_dist.rl import ALGORITHMS, RLResult

    algo = ALGORITHMS[name](env="CartPole-v1", numActors=2, envsPerActor=4, totalSteps=2048, seed=0, runner=runner)
    uri = f"file:{tmp_path / 'mlruns'}"
    with tracking.run(name, tracking_uri=uri, experiment="sparkml_dist_tests") as active:
        tracking.log_params(algo)
        result = algo.train(spark=spark if runner == "spark" else None)
        assert (active.info.run_id, "rl") in tracking._LIVE  # logged live on the driver
        policy_uri = tracking.log_fit(result)
    client, run_id = MlflowClient(uri), active.info.run_id
    run = client.get_run(run_id)
    assert run.data.params["algorithm"] == name and run.data.params["totalSteps"] == "2048"
    assert run.data.params["runner"] == runner
    for key in ("return", "env_steps_per_s", "loss"):
        rows = [h for h in result.history if key in h and np.isfinite(h[key])]
        logged = _history(client, run_id, f"rl.{key}")
        assert [s for s, _ in logged] == [int(h["env_steps"]) for h in rows], key
        assert [v for _, v in logged] == pytest.approx([h[key] for h in rows], rel=1e-9), key
    assert rows and rows[-1]["env_steps"] >= 2048
    assert run.data.metrics["final.env_steps"] == result.stats["env_steps"]
    local = mlflow.artifacts.download_artifacts(policy_uri, dst_path=str(tmp_path / "dl"))
    back = RLResult.load(local)
    assert back.algorithm == name and back.evaluate(5) == pytest.approx(result.evaluate(5))


def test_log_params_refuses_what_it_cannot_read(tmp_path):
    with tracking.run("bad", tracking_uri=f"file:{tmp_path / 'mlruns'}", experiment="sparkml_dist_tests"):
        with pytest.raises(TypeError, match="expected a pyspark.ml estimator or an RL algorithm, got dict"):
            tracking.log_params({"k": 3})
