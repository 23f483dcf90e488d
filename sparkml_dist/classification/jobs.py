"""Jobs ``adaboost`` and ``svm`` for the runner (``sparkml-dist run adaboost`` / ``spark-submit jobs/train_*.py``).

Config (``conf/jobs/adaboost.yaml``, ``conf/jobs/svm.yaml``)::

    input: {generator: hastie_10_2, n_rows: 20000, seed: 0, num_partitions: 2}   # or {name: breast_cancer}
    params: {maxIter: 20, maxBins: 64}       # the estimator's camelCase Params
    test_fraction: 0.25                      # held out for the reported accuracy (0: score on the training data)
    seed: 0                                  # of the train/test split
    output: out/adaboost
"""

from __future__ import annotations

import logging
import time

from sparkml_dist.runner import JobResult, load_input, register_job

logger = logging.getLogger(__name__)


def _train_and_score(spark, cfg: dict, estimator) -> JobResult:
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator

    df = load_input(spark, cfg.get("input"))
    fraction = float(cfg.get("test_fraction", 0.25))
    if fraction > 0:
        train, test = df.randomSplit([1.0 - fraction, fraction], seed=int(cfg.get("seed", 0)))
    else:
        train = test = df
    start = time.perf_counter()
    model = estimator.fit(train)
    fit_seconds = time.perf_counter() - start
    accuracy = MulticlassClassificationEvaluator(metricName="accuracy").evaluate(model.transform(test))
    metrics = {"fit_seconds": fit_seconds, "test_accuracy": accuracy, "params": dict(cfg.get("params", {}))}
    return JobResult(metrics=metrics, models={"model": model})


@register_job("adaboost")
def run_adaboost(spark, cfg: dict) -> JobResult:
    """Train :class:`~sparkml_dist.classification.AdaBoostClassifier`; metrics: accuracy, rounds, errors."""
    from sparkml_dist.classification import AdaBoostClassifier

    result = _train_and_score(spark, cfg, AdaBoostClassifier(**cfg.get("params", {})))
    model = result.models["model"]
    result.metrics.update(rounds=len(model.estimatorWeights), estimator_weights=model.estimatorWeights.tolist(),
                          estimator_errors=model.estimatorErrors.tolist(),
                          feature_importances=model.featureImportances.toArray().tolist())
    return result


@register_job("svm")
def run_svm(spark, cfg: dict) -> JobResult:
    """Train :class:`~sparkml_dist.classification.CascadeSVC`; metrics: accuracy, passes, SVs, dual objective."""
    from sparkml_dist.classification import CascadeSVC

    result = _train_and_score(spark, cfg, CascadeSVC(**cfg.get("params", {})))
    model = result.models["model"]
    result.metrics.update(passes=model.passes, converged=model.converged, n_support=int(len(model.supportIds)),
                          support_vector_counts=model.supportVectorCounts, dual_objective=model.dualObjective,
                          gamma=model.gammaValue)
    return result
