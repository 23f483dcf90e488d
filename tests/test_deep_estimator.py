"""TorchEstimator / TorchModel: a LeNet-5 on scikit-learn's digits inside a Pipeline, save/load, inference."""

import numpy as np
import pytest

from sparkml_dist.deep import TorchEstimator, TorchModel
from sparkml_dist.deep.models import LeNet5


@pytest.fixture(scope="module")
def digits(spark):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    cols = [f"p{i}" for i in range(64)]

    def frame(X, y):  # one numeric column per pixel, as a table would hold them; contiguous 2 partitions
        rows = [[*map(float, row), int(label)] for row, label in zip(X, y, strict=True)]
        return spark.createDataFrame(rows, [*cols, "label"])

    return frame(Xtr, ytr), frame(Xte, yte), Xte, yte, cols


@pytest.fixture(scope="module")
def fitted(digits):
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import VectorAssembler

    train, _, _, _, cols = digits
    est = TorchEstimator(model=lambda: LeNet5(8), loss="cross_entropy", optimizer="adam", lr=3e-3, batchSize=64,
                         epochs=30, numWorkers=2, strategy="ddp", inputShape=[1, 8, 8], seed=0)
    return Pipeline(stages=[VectorAssembler(inputCols=cols, outputCol="features"), est]).fit(train)


def test_lenet_ddp_on_digits_reaches_097_in_a_pipeline(digits, fitted):
    _, test, _, yte, _ = digits
    pred = fitted.transform(test).select("label", "prediction").toPandas()
    accuracy = float((pred["label"] == pred["prediction"]).mean())
    assert accuracy >= 0.97, accuracy
    model = fitted.stages[-1]
    assert isinstance(model, TorchModel)
    assert len(model.history) == 30 and {"loss", "accuracy", "samples_per_s", "seconds"} <= set(model.history[0])
    assert model.history[-1]["loss"] < model.history[0]["loss"]


def test_transform_matches_the_module_on_the_driver(digits, fitted):
    _, test, Xte, _, _ = digits
    model = fitted.stages[-1]
    spark_pred = fitted.transform(test).select("prediction").toPandas()["prediction"].to_numpy()
    local_pred = model.predict_numpy(Xte.astype(np.float32)).argmax(1)
    np.testing.assert_array_equal(spark_pred, local_pred)


def test_save_load_gives_the_same_predictions(digits, fitted, tmp_path):
    from pyspark.ml import PipelineModel

    _, test, _, _, _ = digits
    fitted.write().overwrite().save(str(tmp_path / "pipe"))
    loaded = PipelineModel.load(str(tmp_path / "pipe"))
    a = fitted.transform(test).select("prediction").toPandas()
    b = loaded.transform(test).select("prediction").toPandas()
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())
    assert loaded.stages[-1].history == fitted.stages[-1].history
    assert loaded.stages[-1].getInputShape() == [1, 8, 8]
