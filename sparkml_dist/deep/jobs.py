"""Job ``deep_torch`` for the runner (``sparkml-dist run deep_torch`` / ``spark-submit jobs/train_torch.py``).

Config (``conf/jobs/deep_torch.yaml``)::

    input: {name: digits}                         # features vector + label, like every source
    model: {name: lenet5, in_size: 8}             # a net of sparkml_dist.deep.models.MODELS and its arguments
    params: {epochs: 30, batchSize: 64, lr: 0.003, numWorkers: 2}   # TorchEstimator's camelCase Params
    scale: 0.0625                                 # features are multiplied by this (digits' pixels are 0..16)
    test_fraction: 0.25
    output: out/deep_torch
"""

from __future__ import annotations

import time

from sparkml_dist.runner import JobResult, load_input, register_job


def check_model(cfg: dict):
    """The ``model`` section builds a net of :data:`~sparkml_dist.deep.models.MODELS` (run before Spark starts)."""
    from sparkml_dist.deep.models import build_model

    model_cfg = dict(cfg.get("model") or {"name": "lenet5", "in_size": 8})
    name = model_cfg.pop("name", None)
    if name is None:
        raise ValueError("model: needs a `name` (a net of sparkml_dist.deep.models.MODELS)")
    return build_model(name, **model_cfg)


@register_job("deep_torch")
def run_deep_torch(spark, cfg: dict) -> JobResult:
    """Train :class:`~sparkml_dist.deep.TorchEstimator`; metrics: accuracy, per-epoch history, fit seconds."""
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from pyspark.ml.feature import ElementwiseProduct
    from pyspark.ml.linalg import Vectors

    from sparkml_dist.deep import TorchEstimator
    from sparkml_dist.deep.models import build_model

    model_cfg = dict(cfg.get("model") or {"name": "lenet5", "in_size": 8})
    name = model_cfg.pop("name")
    build_model(name, **model_cfg)  # a bad model section fails here, before any Spark job
    df = load_input(spark, cfg.get("input"))
    scale = float(cfg.get("scale", 1.0))
    if scale != 1.0:
        width = len(df.first()["features"])
        df = ElementwiseProduct(scalingVec=Vectors.dense([scale] * width), inputCol="features",
                                outputCol="scaled").transform(df).drop("features").withColumnRenamed("scaled",
                                                                                                     "features")
    fraction = float(cfg.get("test_fraction", 0.25))
    train, test = df.randomSplit([1 - fraction, fraction], seed=int(cfg.get("seed", 0))) if fraction > 0 else (df, df)
    est = TorchEstimator(model=lambda: build_model(name, **model_cfg), **cfg.get("params", {}))
    start = time.perf_counter()
    model = est.fit(train)
    seconds = time.perf_counter() - start
    accuracy = MulticlassClassificationEvaluator(metricName="accuracy").evaluate(model.transform(test))
    return JobResult(metrics={"fit_seconds": seconds, "test_accuracy": accuracy, "history": model.history,
                              "params": dict(cfg.get("params", {}))}, models={"model": model})
