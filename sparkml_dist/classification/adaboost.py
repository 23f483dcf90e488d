"""``AdaBoostClassifier``: distributed SAMME boosting of decision stumps as a pyspark.ml estimator.

Example (``spark`` is a SparkSession)::

    from sparkml_dist.classification import AdaBoostClassifier
    from sparkml_dist.data.generators import make_hastie_10_2

    df = make_hastie_10_2(spark, n_rows=200_000, seed=0)
    model = AdaBoostClassifier(maxIter=50, maxBins=256).fit(df)
    model.transform(df).select("prediction", "probability").show(3)
    model.estimatorWeights, model.featureImportances
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.linalg import DenseVector, Vectors
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from sparkml_dist.classification.boosting import fit_adaboost
from sparkml_dist.classification.ensemble import StumpEnsemble
from sparkml_dist.classification.params import AdaBoostParams, classes_check
from sparkml_dist.classification.prediction_columns import add_prediction_columns
from sparkml_dist.engine import launch, spec_for
from sparkml_dist.ml.persistence import ArrayPersistable
from sparkml_dist.ml.summary import HasTrainingSummary, TrainingSummary

logger = logging.getLogger(__name__)

_ENSEMBLE_ARRAYS = ("feature", "threshold", "left", "right", "group", "vote", "improvement", "alpha", "error")


class AdaBoostClassifier(Estimator, AdaBoostParams, DefaultParamsReadable, DefaultParamsWritable):
    """Distributed AdaBoost (SAMME, binary and multi-class) of decision stumps.

    Defaults follow scikit-learn's ``AdaBoostClassifier(n_estimators=50, learning_rate=1.0)`` with its default
    ``DecisionTreeClassifier(max_depth=1)`` base learner.

    Parameters
    ----------
    maxIter : int, default 50
        Boosting rounds (scikit-learn ``n_estimators``). Training stops early, as scikit-learn does, when a stump is
        perfect (error 0) or no better than chance (error >= 1 - 1/K; that stump is dropped).
    learningRate : float, default 1.0
        Multiplies every stump's weight ``log((1 - err) / err) + log(K - 1)``.
    maxBins : int, default 256
        Histogram bins per feature for ``exact`` (candidate thresholds at approximate quantiles; features with fewer
        distinct values keep all of them). ``0`` uses every distinct value, which is scikit-learn's stump exactly but
        costs one bin per distinct value: meant for small data.
    algorithm : {"exact", "lazarevic", "pl"}, default "exact"
        ``exact``: centralised AdaBoost with one MapReduce pass per round. ``lazarevic``: Lazarevic & Obradovic's
        site ensembles. ``pl``: AdaBoost.PL (one pass, approximate). See :mod:`sparkml_dist.classification.boosting`.
    engine : {"mapreduce", "bsp"}, default "mapreduce"
        ``mapreduce`` runs one Spark job per data pass over blocks resident on the executors; ``bsp`` runs the whole
        loop in one barrier stage with the partial results allreduced (much less scheduling per round; a rank hosts
        whole partitions when there are more partitions than free task slots). Same model either way, for every
        algorithm (:mod:`sparkml_dist.classification.boosting` is written once against :mod:`sparkml_dist.engine`).
    seed : int
        scikit-learn's ``random_state``: it fixes the order features are visited in, which decides between exactly
        tied stumps (e.g. two features splitting the data the same way). Same seed, same stumps as scikit-learn.
    featuresCol, labelCol, weightCol : str
        Features (``Vector`` or ``array<double>``), class labels 0..K-1 (index strings with ``StringIndexer``),
        optional non-negative sample weights.
    predictionCol, rawPredictionCol, probabilityCol : str
        Outputs of :meth:`AdaBoostClassificationModel.transform` (empty string: not written).
    numPartitions : int, default 0
        Repartition the input to this many partitions first (0 keeps the input's partitioning).

    Notes
    -----
    Features are compared in float32, as in scikit-learn's trees. Empty partitions are skipped (a repartitioned
    DataFrame can have some); an empty DataFrame, NaN/inf features, labels that are not 0..K-1 integers, a single
    class, negative weights and bad parameters raise ``ValueError`` / ``DataValidationError`` before any training job.

    References
    ----------
    Zhu, Zou, Rosset, Hastie. Multi-class AdaBoost. Statistics and Its Interface 2 (2009).
    Lazarevic, Obradovic. The distributed boosting algorithm. KDD 2001.
    Palit, Reddy. Scalable and parallel boosting with MapReduce. IEEE TKDE 24(10), 2012.

    Examples
    --------
    >>> from sparkml_dist.data.sources import load
    >>> df = load(spark, "breast_cancer", num_partitions=2)
    >>> model = AdaBoostClassifier(maxIter=10, maxBins=0, seed=0).fit(df)
    >>> round(float(model.estimatorWeights[0]), 6), model.summary.numIter
    (2.479209, 10)
    >>> model.transform(df).select("prediction").distinct().count()
    2
    """

    @keyword_only
    def __init__(self, *, featuresCol: str = "features", labelCol: str = "label", weightCol: str | None = None,
                 predictionCol: str = "prediction", rawPredictionCol: str = "rawPrediction",
                 probabilityCol: str = "probability", maxIter: int = 50, learningRate: float = 1.0,
                 maxBins: int = 256, algorithm: str = "exact", engine: str = "mapreduce", seed: int | None = None,
                 numPartitions: int = 0) -> None:
        super().__init__()
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(self, *, featuresCol: str = "features", labelCol: str = "label", weightCol: str | None = None,
                  predictionCol: str = "prediction", rawPredictionCol: str = "rawPrediction",
                  probabilityCol: str = "probability", maxIter: int = 50, learningRate: float = 1.0,
                  maxBins: int = 256, algorithm: str = "exact", engine: str = "mapreduce", seed: int | None = None,
                  numPartitions: int = 0) -> AdaBoostClassifier:
        """Set Params by keyword (``None`` leaves a Param at its default)."""
        return self._set_params(self._input_kwargs)

    def setFeaturesCol(self, value: str) -> AdaBoostClassifier:
        return self._set(featuresCol=value)

    def setLabelCol(self, value: str) -> AdaBoostClassifier:
        return self._set(labelCol=value)

    def setWeightCol(self, value: str) -> AdaBoostClassifier:
        return self._set(weightCol=value)

    def setPredictionCol(self, value: str) -> AdaBoostClassifier:
        return self._set(predictionCol=value)

    def setRawPredictionCol(self, value: str) -> AdaBoostClassifier:
        return self._set(rawPredictionCol=value)

    def setProbabilityCol(self, value: str) -> AdaBoostClassifier:
        return self._set(probabilityCol=value)

    def setMaxIter(self, value: int) -> AdaBoostClassifier:
        return self._set(maxIter=value)

    def setLearningRate(self, value: float) -> AdaBoostClassifier:
        return self._set(learningRate=value)

    def setMaxBins(self, value: int) -> AdaBoostClassifier:
        return self._set(maxBins=value)

    def setAlgorithm(self, value: str) -> AdaBoostClassifier:
        return self._set(algorithm=value)

    def setEngine(self, value: str) -> AdaBoostClassifier:
        return self._set(engine=value)

    def setSeed(self, value: int) -> AdaBoostClassifier:
        return self._set(seed=value)

    def setNumPartitions(self, value: int) -> AdaBoostClassifier:
        return self._set(numPartitions=value)

    def _fit(self, dataset) -> AdaBoostClassificationModel:
        self._validate_params()
        weight_col = self._optional(self.weightCol)
        start = time.perf_counter()
        # sklearn's random_state; a Param default seed is a hash of the class name, fine as an integer seed
        seed = int(self.getSeed()) % (2 ** 32) if self.getSeed() is not None else None
        spec = spec_for(self.getFeaturesCol(), weight_col, self.getLabelCol(), "classes")
        data = dataset.repartition(self.getNumPartitions()) if self.getNumPartitions() else dataset
        run = launch(self.getEngine(), data, spec, fit_adaboost,
                     (self.getAlgorithm(), self.getMaxIter(), self.getLearningRate(), self.getMaxBins(), seed),
                     classes_check(self.getLabelCol()), dtype=np.float32)
        ensemble, rows = run.result, run.stats.rows
        fit_time = time.perf_counter() - start
        logger.info("adaboost %s/%s: %d rounds on %d rows in %.2fs", self.getAlgorithm(), self.getEngine(),
                    len(ensemble.alpha), rows, fit_time)
        summary = AdaBoostTrainingSummary(numIter=len(ensemble.alpha), engine=self.getEngine(), fitTime=fit_time,
                                          iterationTimes=[float(h.get("seconds", 0.0)) for h in ensemble.history],
                                          loadTime=run.load_seconds, bytesCommunicated=run.bytes_communicated,
                                          algorithm=self.getAlgorithm(), numRows=int(rows))
        return self._copyValues(AdaBoostClassificationModel(ensemble, summary))


@dataclass(kw_only=True, repr=False)
class AdaBoostTrainingSummary(TrainingSummary):
    """Training summary of an :class:`AdaBoostClassificationModel` (``numIter``: hypotheses kept; per-round errors
    and weights are the model's ``estimatorErrors`` / ``estimatorWeights``, per-round records ``trainingHistory``)."""

    algorithm: str = ""
    numRows: int = 0


class AdaBoostClassificationModel(Model, AdaBoostParams, ArrayPersistable, HasTrainingSummary):
    """A fitted :class:`AdaBoostClassifier`: stumps grouped into weighted hypotheses.

    Attributes
    ----------
    numClasses, numFeatures : int
    estimatorWeights : numpy.ndarray
        Weight (alpha) of every hypothesis (scikit-learn ``estimator_weights_`` without the trailing zeros).
    estimatorErrors : numpy.ndarray
        Weighted training error of every hypothesis in its round (``estimator_errors_``).
    stumps : list of dict
        ``feature``, ``threshold``, ``left``/``right`` class and ``hypothesis`` index of each stump (one per
        hypothesis for ``exact``; one per site and round for ``lazarevic`` / ``pl``).
    featureImportances : pyspark.ml.linalg.DenseVector
        scikit-learn's ``feature_importances_``.
    trainingHistory : list of dict
        Per round: seconds, error, alpha.
    summary : AdaBoostTrainingSummary
    """

    def __init__(self, ensemble: StumpEnsemble | None = None, summary: AdaBoostTrainingSummary | None = None) -> None:
        super().__init__()
        self._ensemble = ensemble
        self._summary = summary

    def setFeaturesCol(self, value: str) -> AdaBoostClassificationModel:
        return self._set(featuresCol=value)

    def setPredictionCol(self, value: str) -> AdaBoostClassificationModel:
        return self._set(predictionCol=value)

    def setRawPredictionCol(self, value: str) -> AdaBoostClassificationModel:
        return self._set(rawPredictionCol=value)

    def setProbabilityCol(self, value: str) -> AdaBoostClassificationModel:
        return self._set(probabilityCol=value)

    # --- fitted state --------------------------------------------------------------------------------------------
    @property
    def ensemble(self) -> StumpEnsemble:
        if self._ensemble is None:
            raise RuntimeError("this AdaBoostClassificationModel holds no fitted ensemble")
        return self._ensemble

    @property
    def numClasses(self) -> int:
        return self.ensemble.n_classes

    @property
    def numFeatures(self) -> int:
        return self.ensemble.n_features

    @property
    def estimatorWeights(self) -> np.ndarray:
        return self.ensemble.alpha.copy()

    @property
    def estimatorErrors(self) -> np.ndarray:
        return self.ensemble.error.copy()

    @property
    def stumps(self) -> list[dict[str, Any]]:
        e = self.ensemble
        return [{"feature": int(e.feature[s]), "threshold": float(e.threshold[s]), "left": int(e.left[s]),
                 "right": int(e.right[s]), "hypothesis": int(e.group[s]), "vote": float(e.vote[s])}
                for s in range(len(e.feature))]

    @property
    def featureImportances(self) -> DenseVector:
        return Vectors.dense(self.ensemble.feature_importances())

    @property
    def trainingHistory(self) -> list[dict]:
        return list(self.ensemble.history)

    def predict_numpy(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rawPrediction, probability, prediction)`` for an in-memory matrix (what ``transform`` computes)."""
        return self.ensemble.predict_all(np.asarray(X, dtype=np.float32))

    # --- pyspark.ml ----------------------------------------------------------------------------------------------
    def _transform(self, dataset):
        ensemble = self.ensemble  # the UDF closure ships the numpy ensemble, not the model

        def predict(X):
            return ensemble.predict_all(np.asarray(X, dtype=np.float32))

        return add_prediction_columns(dataset, predict, self.getFeaturesCol(), self.getPredictionCol(),
                                      self.getRawPredictionCol(), self.getProbabilityCol(), dtype=np.float32)

    def _get_state(self) -> tuple[dict[str, np.ndarray], dict]:
        e = self.ensemble
        arrays = {name: getattr(e, name) for name in _ENSEMBLE_ARRAYS}
        return arrays, {"n_classes": e.n_classes, "n_features": e.n_features, "history": e.history,
                        "summary": self._summary.asDict() if self._summary else None}

    @classmethod
    def _from_state(cls, arrays: dict[str, np.ndarray], extra: dict) -> AdaBoostClassificationModel:
        ensemble = StumpEnsemble(int(extra["n_classes"]), int(extra["n_features"]),
                                 **{name: arrays[name] for name in _ENSEMBLE_ARRAYS}, history=extra.get("history", []))
        summary = AdaBoostTrainingSummary.fromDict(extra["summary"]) if extra.get("summary") else None
        return cls(ensemble, summary)
