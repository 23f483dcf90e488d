"""Param mixins shared by the classification estimators and their models (pyspark.ml conventions: camelCase).

Values are type-converted when set and checked once, at ``fit``, against each mixin's ``_constraints`` table
(:meth:`~sparkml_dist.ml.params.ValidatedParams._validate_params`), before any Spark job runs.
"""

from __future__ import annotations

from collections.abc import Callable

from pyspark.ml.param import TypeConverters
from pyspark.ml.param.shared import (
    HasFeaturesCol,
    HasLabelCol,
    HasMaxIter,
    HasPredictionCol,
    HasProbabilityCol,
    HasRawPredictionCol,
    HasTol,
    HasWeightCol,
)

from sparkml_dist.data.validation import DataValidationError, ScanStats
from sparkml_dist.ml.params import Either, HasEngine, HasStableSeed, Interval, OneOf, Satisfies, typed_param

ALGORITHMS = ("exact", "lazarevic", "pl")
KERNELS = ("rbf", "linear", "poly")
SVM_MODES = ("cascade", "mrsmo", "dpsvm")
TOPOLOGIES = ("ring", "complete")

_POSITIVE = Interval(0, None, closed="neither")


def _gamma(value: object) -> str:
    """``gamma`` is ``"scale"``, ``"auto"`` or a positive number; kept as a string so both fit one Param."""
    if isinstance(value, str):
        return value
    return repr(float(TypeConverters.toFloat(value)))


class _ClassifierParams(HasFeaturesCol, HasLabelCol, HasPredictionCol, HasRawPredictionCol, HasEngine):
    numPartitions = typed_param("numPartitions",
                                "repartition the input to this many partitions before training (0: keep the input's)",
                                TypeConverters.toInt)
    _constraints = {"numPartitions": Interval(0, note="(0: keep the input's partitions)")}

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(numPartitions=0, rawPredictionCol="rawPrediction")

    def getNumPartitions(self) -> int:
        return self.getOrDefault(self.numPartitions)


class AdaBoostParams(_ClassifierParams, HasWeightCol, HasProbabilityCol, HasMaxIter, HasStableSeed):
    """Params of :class:`~sparkml_dist.classification.adaboost.AdaBoostClassifier` and its model."""

    learningRate = typed_param("learningRate", "shrinks each stump's weight (scikit-learn learning_rate)",
                               TypeConverters.toFloat)
    maxBins = typed_param("maxBins", "histogram bins per feature; 0 means exact thresholds (every distinct value)",
                          TypeConverters.toInt)
    algorithm = typed_param("algorithm", "exact | lazarevic | pl", TypeConverters.toString)

    _constraints = {
        "algorithm": OneOf(ALGORITHMS),
        "maxIter": Interval(1),
        "learningRate": _POSITIVE,
        "maxBins": Either((OneOf((0,)), Interval(2)), "0 (exact thresholds) or >= 2"),
    }

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(maxIter=50, learningRate=1.0, maxBins=256, algorithm="exact", probabilityCol="probability")

    def getLearningRate(self) -> float:
        return self.getOrDefault(self.learningRate)

    def getMaxBins(self) -> int:
        return self.getOrDefault(self.maxBins)

    def getAlgorithm(self) -> str:
        return self.getOrDefault(self.algorithm)


class SVCParams(_ClassifierParams, HasMaxIter, HasTol):
    """Params of :class:`~sparkml_dist.classification.cascade_svc.CascadeSVC` and its model."""

    C = typed_param("C", "regularisation parameter, > 0 (scikit-learn SVC C)", TypeConverters.toFloat)
    kernel = typed_param("kernel", "rbf | linear | poly", TypeConverters.toString)
    gamma = typed_param("gamma", "kernel coefficient: 'scale' (1 / (n_features * X.var()) over the whole dataset), "
                                 "'auto' (1 / n_features) or a positive number", _gamma)
    degree = typed_param("degree", "degree of the poly kernel", TypeConverters.toInt)
    coef0 = typed_param("coef0", "independent term of the poly kernel", TypeConverters.toFloat)
    mode = typed_param("mode", "cascade | mrsmo | dpsvm", TypeConverters.toString)
    maxPasses = typed_param("maxPasses",
                            "cascade: most feedback passes; dpsvm: most ring circulations (passes x partitions rounds)",
                            TypeConverters.toInt)
    topology = typed_param("topology", "dpsvm network: ring | complete", TypeConverters.toString)
    cacheSize = typed_param("cacheSize", "libsvm kernel cache per local solver, MB", TypeConverters.toFloat)
    leafSize = typed_param("leafSize", "cascade/mrsmo: most rows per layer-1 libsvm problem (partitions are cut into "
                                       "leaves); 0: whole partitions", TypeConverters.toInt)
    kernelMemoryMB = typed_param("kernelMemoryMB",
                                 "largest in-memory kernel matrix (MB; RBF float32, linear/poly float64) a merge may "
                                 "build to warm-start from its children's alphas; bigger merges run libsvm from zero; "
                                 "0: libsvm everywhere", TypeConverters.toFloat)

    _constraints = {
        "C": _POSITIVE,
        "kernel": OneOf(KERNELS, refused=(("sigmoid", "the sigmoid kernel is not positive semi-definite, so the dual "
                                                      "is not concave and the cascade's merges and feedback have no "
                                                      "single optimum to reach (measured: 11 pp below SVC); use "
                                                      "'rbf', 'linear' or 'poly'"),)),
        "gamma": Either((OneOf(("scale", "auto")), Satisfies(lambda v: float(v) > 0, "> 0")),
                        "'scale', 'auto' or a positive number"),
        "degree": Interval(0),
        "mode": OneOf(SVM_MODES),
        "maxPasses": Interval(1),
        "topology": OneOf(TOPOLOGIES),
        "tol": _POSITIVE,
        "leafSize": Interval(0, note="(0: whole partitions)"),
        "kernelMemoryMB": Interval(0, note="(0: libsvm everywhere)"),
        "cacheSize": Interval(0, None, closed="neither", note="(MB)"),
        "maxIter": Either((OneOf((-1,)), Interval(1)), "-1 (no limit) or >= 1"),
    }

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(C=1.0, kernel="rbf", gamma="scale", degree=3, coef0=0.0, mode="cascade", maxPasses=5,
                         tol=1e-3, topology="ring", cacheSize=500.0, maxIter=-1, leafSize=5000,
                         kernelMemoryMB=4096.0)

    def getC(self) -> float:
        return self.getOrDefault(self.C)

    def getKernel(self) -> str:
        return self.getOrDefault(self.kernel)

    def getGamma(self) -> str:
        return self.getOrDefault(self.gamma)

    def getDegree(self) -> int:
        return self.getOrDefault(self.degree)

    def getCoef0(self) -> float:
        return self.getOrDefault(self.coef0)

    def getMode(self) -> str:
        return self.getOrDefault(self.mode)

    def getMaxPasses(self) -> int:
        return self.getOrDefault(self.maxPasses)

    def getTopology(self) -> str:
        return self.getOrDefault(self.topology)

    def getCacheSize(self) -> float:
        return self.getOrDefault(self.cacheSize)

    def getLeafSize(self) -> int:
        return self.getOrDefault(self.leafSize)

    def getKernelMemoryMB(self) -> float:
        return self.getOrDefault(self.kernelMemoryMB)


def classes_check(labelCol: str) -> Callable[[ScanStats], None]:
    """The engine's data check of a classifier: at least two classes (run on the validated statistics, before any
    training pass, on either engine)."""

    def check(stats: ScanStats) -> None:
        check_classes(stats.label_counts, labelCol)

    return check


def check_classes(label_counts: dict, labelCol: str) -> int:
    """Number of classes from the validated label counts; one class is an error (nothing to classify)."""
    n_classes = int(max(label_counts) + 1) if label_counts else 0
    if n_classes < 2:
        raise DataValidationError(
            f"labelCol={labelCol!r} holds a single class ({sorted(label_counts)}); a classifier needs at least two")
    return n_classes
