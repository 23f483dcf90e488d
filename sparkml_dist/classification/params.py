"""Param mixins shared by the classification estimators and their models (pyspark.ml conventions: camelCase).

Values are type-converted when set and checked once, at ``fit`` (:func:`check_params`), before any Spark job runs.
"""

from __future__ import annotations

from typing import Any

from sparkml_dist.data.validation import DataValidationError
from sparkml_dist.ml.params import stable_seed
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import (HasFeaturesCol, HasLabelCol, HasMaxIter, HasPredictionCol, HasProbabilityCol,
                                     HasRawPredictionCol, HasSeed, HasTol, HasWeightCol)

ALGORITHMS = ("exact", "lazarevic", "pl")
ENGINES = ("mapreduce", "bsp")
KERNELS = ("rbf", "linear", "poly")
SVM_MODES = ("cascade", "mrsmo", "dpsvm")
TOPOLOGIES = ("ring", "complete")


def _gamma(value: Any) -> str:
    """``gamma`` is ``"scale"``, ``"auto"`` or a positive number; kept as a string so both fit one Param."""
    if isinstance(value, str):
        return value
    return repr(float(TypeConverters.toFloat(value)))


class _ClassifierParams(HasFeaturesCol, HasLabelCol, HasPredictionCol, HasRawPredictionCol, HasSeed):
    numPartitions = Param(Params._dummy(), "numPartitions",
                          "repartition the input to this many partitions before training (0: keep the input's)",
                          typeConverter=TypeConverters.toInt)

    def getNumPartitions(self) -> int:
        return self.getOrDefault(self.numPartitions)


class AdaBoostParams(_ClassifierParams, HasWeightCol, HasProbabilityCol, HasMaxIter):
    """Params of :class:`~sparkml_dist.classification.adaboost.AdaBoostClassifier` and its model."""

    learningRate = Param(Params._dummy(), "learningRate", "shrinks each stump's weight (scikit-learn learning_rate)",
                         typeConverter=TypeConverters.toFloat)
    maxBins = Param(Params._dummy(), "maxBins",
                    "histogram bins per feature; 0 means exact thresholds (every distinct value)",
                    typeConverter=TypeConverters.toInt)
    algorithm = Param(Params._dummy(), "algorithm", "exact | lazarevic | pl", typeConverter=TypeConverters.toString)
    engine = Param(Params._dummy(), "engine",
                   "how exact runs: mapreduce (one Spark job per round over resident blocks) or bsp (the whole loop "
                   "in one barrier stage, histograms allreduced)", typeConverter=TypeConverters.toString)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._setDefault(maxIter=50, learningRate=1.0, maxBins=256, algorithm="exact", engine="mapreduce",
                         numPartitions=0, rawPredictionCol="rawPrediction", probabilityCol="probability",
                         seed=stable_seed("AdaBoostClassifier"))

    def getLearningRate(self) -> float:
        return self.getOrDefault(self.learningRate)

    def getMaxBins(self) -> int:
        return self.getOrDefault(self.maxBins)

    def getAlgorithm(self) -> str:
        return self.getOrDefault(self.algorithm)

    def getEngine(self) -> str:
        return self.getOrDefault(self.engine)


class SVCParams(_ClassifierParams, HasMaxIter, HasTol):
    """Params of :class:`~sparkml_dist.classification.svm.CascadeSVC` and its model."""

    C = Param(Params._dummy(), "C", "regularisation parameter, > 0 (scikit-learn SVC C)",
              typeConverter=TypeConverters.toFloat)
    kernel = Param(Params._dummy(), "kernel", "rbf | linear | poly", typeConverter=TypeConverters.toString)
    gamma = Param(Params._dummy(), "gamma",
                  "kernel coefficient: 'scale' (1 / (n_features * X.var()) over the whole dataset), 'auto' "
                  "(1 / n_features) or a positive number", typeConverter=_gamma)
    degree = Param(Params._dummy(), "degree", "degree of the poly kernel", typeConverter=TypeConverters.toInt)
    coef0 = Param(Params._dummy(), "coef0", "independent term of the poly kernel",
                  typeConverter=TypeConverters.toFloat)
    mode = Param(Params._dummy(), "mode", "cascade | mrsmo | dpsvm", typeConverter=TypeConverters.toString)
    maxPasses = Param(Params._dummy(), "maxPasses",
                      "cascade: most feedback passes; dpsvm: most ring circulations (passes x partitions rounds)",
                      typeConverter=TypeConverters.toInt)
    topology = Param(Params._dummy(), "topology", "dpsvm network: ring | complete",
                     typeConverter=TypeConverters.toString)
    cacheSize = Param(Params._dummy(), "cacheSize", "libsvm kernel cache per local solver, MB",
                      typeConverter=TypeConverters.toFloat)
    leafSize = Param(Params._dummy(), "leafSize",
                     "cascade/mrsmo: most rows per layer-1 libsvm problem (partitions are cut into leaves); 0: whole "
                     "partitions", typeConverter=TypeConverters.toInt)
    kernelMemoryMB = Param(Params._dummy(), "kernelMemoryMB",
                           "largest in-memory kernel matrix (MB; RBF float32, linear/poly float64) a merge may build "
                           "to warm-start from its children's alphas; bigger merges run libsvm from zero; 0: libsvm "
                           "everywhere",
                           typeConverter=TypeConverters.toFloat)
    engine = Param(Params._dummy(), "engine",
                   "how cascade/mrsmo run: mapreduce (Spark jobs over resident blocks) or bsp (the whole cascade in "
                   "one barrier stage, SV sets exchanged by gloo collectives)", typeConverter=TypeConverters.toString)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._setDefault(C=1.0, kernel="rbf", gamma="scale", degree=3, coef0=0.0, mode="cascade", maxPasses=5,
                         tol=1e-3, topology="ring", cacheSize=500.0, numPartitions=0, maxIter=-1,
                         leafSize=5000, kernelMemoryMB=4096.0, engine="mapreduce",
                         rawPredictionCol="rawPrediction", seed=stable_seed("CascadeSVC"))

    def getC(self) -> float:
        return self.getOrDefault(self.C)

    def getKernel(self) -> str:
        return self.getOrDefault(self.kernel)

    def getGamma(self) -> str:
        return self.getOrDefault(self.gamma)

    def getMode(self) -> str:
        return self.getOrDefault(self.mode)


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; choose one of {', '.join(choices)}")


def check_adaboost_params(p: AdaBoostParams) -> None:
    """Parameter constraints of AdaBoostClassifier (raised at fit, before any Spark job)."""
    check_choice("algorithm", p.getAlgorithm(), ALGORITHMS)
    check_choice("engine", p.getEngine(), ENGINES)
    if p.getEngine() == "bsp" and p.getAlgorithm() != "exact":
        raise ValueError(f"engine='bsp' runs algorithm='exact' only, not {p.getAlgorithm()!r}")
    if p.getMaxIter() < 1:
        raise ValueError(f"maxIter must be >= 1, got {p.getMaxIter()}")
    if not p.getLearningRate() > 0:
        raise ValueError(f"learningRate must be > 0, got {p.getLearningRate()}")
    if p.getMaxBins() < 0 or p.getMaxBins() == 1:
        raise ValueError(f"maxBins must be 0 (exact thresholds) or >= 2, got {p.getMaxBins()}")
    if p.getNumPartitions() < 0:
        raise ValueError(f"numPartitions must be >= 0, got {p.getNumPartitions()}")


def check_svc_params(p: SVCParams) -> None:
    """Parameter constraints of CascadeSVC (raised at fit, before any Spark job)."""
    if not p.getC() > 0:
        raise ValueError(f"C must be > 0, got {p.getC()}")
    if p.getKernel() == "sigmoid":
        raise ValueError("kernel='sigmoid' is not supported: the sigmoid kernel is not positive semi-definite, so the "
                         "dual is not concave and the cascade's merges and feedback have no single optimum to reach "
                         "(measured: 11 pp below SVC); use 'rbf', 'linear' or 'poly'")
    check_choice("kernel", p.getKernel(), KERNELS)
    check_choice("mode", p.getMode(), SVM_MODES)
    check_choice("topology", p.getOrDefault(p.topology), TOPOLOGIES)
    gamma = p.getGamma()
    if gamma not in ("scale", "auto"):
        try:
            value = float(gamma)
        except ValueError:
            raise ValueError(f"gamma must be 'scale', 'auto' or a positive number, got {gamma!r}") from None
        if not value > 0:
            raise ValueError(f"gamma must be > 0, got {value}")
    if p.getOrDefault(p.degree) < 0:
        raise ValueError(f"degree must be >= 0, got {p.getOrDefault(p.degree)}")
    if p.getOrDefault(p.maxPasses) < 1:
        raise ValueError(f"maxPasses must be >= 1, got {p.getOrDefault(p.maxPasses)}")
    if not p.getTol() > 0:
        raise ValueError(f"tol must be > 0, got {p.getTol()}")
    if p.getNumPartitions() < 0:
        raise ValueError(f"numPartitions must be >= 0, got {p.getNumPartitions()}")
    check_choice("engine", p.getOrDefault(p.engine), ENGINES)
    if p.getOrDefault(p.engine) == "bsp" and p.getMode() == "dpsvm":
        raise ValueError("engine='bsp' runs mode='cascade' or 'mrsmo', not 'dpsvm'")
    if p.getOrDefault(p.leafSize) < 0:
        raise ValueError(f"leafSize must be >= 0 (0: whole partitions), got {p.getOrDefault(p.leafSize)}")
    if p.getOrDefault(p.kernelMemoryMB) < 0:
        raise ValueError(f"kernelMemoryMB must be >= 0 (0: libsvm everywhere), got {p.getOrDefault(p.kernelMemoryMB)}")
    if not p.getOrDefault(p.cacheSize) > 0:
        raise ValueError(f"cacheSize must be > 0 (MB), got {p.getOrDefault(p.cacheSize)}")
    if p.getOrDefault(p.maxIter) == 0 or p.getOrDefault(p.maxIter) < -1:
        raise ValueError(f"maxIter must be -1 (no limit) or >= 1, got {p.getOrDefault(p.maxIter)}")


def check_classes(label_counts: dict, labelCol: str) -> int:
    """Number of classes from the validated label counts; one class is an error (nothing to classify)."""
    n_classes = int(max(label_counts) + 1) if label_counts else 0
    if n_classes < 2:
        raise DataValidationError(
            f"labelCol={labelCol!r} holds a single class ({sorted(label_counts)}); a classifier needs at least two")
    return n_classes
