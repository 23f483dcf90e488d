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
