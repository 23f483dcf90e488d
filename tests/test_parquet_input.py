"""Generate -> Parquet -> train -> transform: every model's ``transform`` on ``spark.read.parquet(path)``.

Spark 4.3 feeds Arrow UDFs straight from a columnar Parquet scan when
``spark.sql.execution.arrow.pythonUDF.columnarInput.enabled`` is on (its default), and that path cannot carry a Vector
column. The tests switch it on, as a user's own session has it, and compare each model's predictions on the Parquet
copy with an independent numpy computation (nearest centre) or with the same model on the in-memory DataFrame.
"""

import json

import numpy as np
import pytest

from sparkml_dist.data.generators import make_blobs
from sparkml_dist.runtime.session import COLUMNAR_UDF_INPUT


@pytest.fixture()
def columnar_on(spark):
    """The session as Spark 4.3 builds it by default (our profiles switch the columnar path off)."""
    before = spark.conf.get(COLUMNAR_UDF_INPUT, "false")
    spark.conf.set(COLUMNAR_UDF_INPUT, "true")
    yield spark
    spark.conf.set(COLUMNAR_UDF_INPUT, before)


@pytest.fixture(scope="module")
def blobs_parquet(spark, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("parquet") / "blobs")
    make_blobs(spark, 600, 3, centers=3, cluster_std=0.6, seed=4, num_partitions=2).write.parquet(path)
    return path


def _arrays(df, *cols):
    rows = df.select(*cols).collect()
    return [np.array([r[i].toArray() if hasattr(r[i], "toArray") else r[i] for r in rows]) for i in range(len(cols))]


@pytest.mark.parametrize("name", ["KMeans", "FuzzyCMeans", "ConsensusClustering"])
def test_clustering_models_transform_parquet_input(columnar_on, blobs_parquet, name):
    from sparkml_dist import clustering

    spark = columnar_on
    df = spark.read.parquet(blobs_parquet)
    params = {"KMeans": {"k": 3}, "FuzzyCMeans": {"kRange": [3, 3]},
              "ConsensusClustering": {"kRange": [3, 3], "localKRange": [3, 3]}}[name]
    model = getattr(clustering, name)(seed=1, **params).fit(df)
    X, pred = _arrays(model.transform(df), "features", "prediction")
    # independent reference: the nearest centre by numpy (squared Euclidean; ties never happen on blobs)
    C = np.asarray(model.clusterCenters())
    expected = np.argmin(((X[:, None, :] - C[None, :, :]) ** 2).sum(axis=2), axis=1)
    np.testing.assert_array_equal(pred.astype(int), expected)


@pytest.mark.parametrize("name", ["AdaBoostClassifier", "CascadeSVC"])
def test_classifiers_transform_parquet_input(columnar_on, spark, tmp_path, name):
    from sparkml_dist import classification
    from sparkml_dist.data.generators import make_classification

    data = make_classification(spark, 500, 4, seed=2, num_partitions=2).cache()
    path = str(tmp_path / "clf")
    data.write.parquet(path)
    df = spark.read.parquet(path)
    params = {"AdaBoostClassifier": {"maxIter": 5}, "CascadeSVC": {"maxPasses": 2, "leafSize": 200}}[name]
    model = getattr(classification, name)(**params).fit(df)
    raw_parquet, pred_parquet = _arrays(model.transform(df), "rawPrediction", "prediction")
    # the same model on the in-memory rows, in the same order as the Parquet copy (read back in file order)
    memory = spark.createDataFrame(df.collect(), df.schema)
    raw_memory, pred_memory = _arrays(model.transform(memory), "rawPrediction", "prediction")
    np.testing.assert_allclose(raw_parquet, raw_memory, rtol=1e-12)
    np.testing.assert_array_equal(pred_parquet, pred_memory)
    labels = np.array([r[0] for r in df.select("label").collect()])
    assert np.mean(pred_parquet == labels) > 0.8  # a trained model, not a constant
    data.unpersist()


def test_cli_generate_then_train_on_the_parquet_output(columnar_on, tmp_path):
    from sparkml_dist import cli

    data, out = tmp_path / "blobs", tmp_path / "km"
    assert cli.main(["datasets", "generate", "blobs", "--rows", "400", "--features", "3", "--partitions", "2",
                     "--param", "centers=3", "--output", str(data)]) == 0
    assert cli.main(["run", "kmeans", f"input.path={data}", "--output", str(out), "params.k=3"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["adjusted_rand_index"] > 0.95
    assert columnar_on.read.parquet(str(out / "predictions")).count() == 400
