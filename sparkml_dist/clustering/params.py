"""Param mixins shared by the clustering estimators and their models (xgboost.spark layout), and the estimators'
setters.

Every Param is camelCase like ``pyspark.ml``'s. Defaults are MLlib ``KMeans``'s where MLlib has the parameter
(``k=2, maxIter=20, tol=1e-4, initMode="k-means||", initSteps=2, distanceMeasure="euclidean"``); ``seed`` defaults
to a fixed number derived from the class name, as MLlib's does -- but stable across processes
(:class:`~sparkml_dist.ml.params.HasStableSeed`).

Parameter values are checked against each mixin's ``_constraints`` / ``_rules`` by
:meth:`~sparkml_dist.ml.params.ValidatedParams._validate_params` at ``fit`` time, before any Spark job, with errors
that name the parameter.
"""

from __future__ import annotations

from typing import Any

from pyspark.ml.param import TypeConverters
from pyspark.ml.param.shared import HasFeaturesCol, HasMaxIter, HasPredictionCol, HasTol, HasWeightCol

from sparkml_dist.clustering.initialization import INIT_MODES
from sparkml_dist.data.validation import DataValidationError, ScanStats
from sparkml_dist.ml.params import HasEngine, HasStableSeed, Interval, OneOf, Satisfies, typed_param

DISTANCE_MEASURES = ("euclidean", "cosine")


def _is_k_range(value: Any) -> bool:
    return len(value) == 2 and 2 <= value[0] <= value[1]


_K_RANGE = Satisfies(_is_k_range, "[kMin, kMax] with 2 <= kMin <= kMax")


def _initial_centers_shape(p: _ClusteringParams) -> str | None:
    centers = p.getInitialCenters()
    if centers is None:
        return None
    widths = {len(c) for c in centers}
    if len(centers) != p.getK() or len(widths) != 1:
        return (f"initialCenters: expected k={p.getK()} rows of equal length, got {len(centers)} rows of lengths "
                f"{sorted(widths)}")
    return None


class _ClusteringParams(HasFeaturesCol, HasPredictionCol, HasWeightCol, HasMaxIter, HasTol, HasStableSeed,
                        HasEngine):
    """Params of every clustering estimator/model of this package."""

    k = typed_param("k", "number of clusters to create (>= 2)", TypeConverters.toInt)
    initMode = typed_param("initMode", f"initialisation algorithm: one of {', '.join(INIT_MODES)} (k-means|| as MLlib)",
                           TypeConverters.toString)
    initSteps = typed_param("initSteps", "number of k-means|| oversampling rounds (> 0)", TypeConverters.toInt)
    initialCenters = typed_param("initialCenters", "k x d list of initial centres; when set, initMode is not used",
                                 TypeConverters.toListListFloat)

    _constraints = {
        "k": Interval(2, subject="the number of clusters"),
        "maxIter": Interval(1),
        "tol": Interval(0),
        "initMode": OneOf(INIT_MODES),
        "initSteps": Interval(1),
    }
    _rules = (_initial_centers_shape,)

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(k=2, maxIter=20, tol=1e-4, initMode="k-means||", initSteps=2)

    def getK(self) -> int:
        return self.getOrDefault(self.k)

    def getInitMode(self) -> str:
        return self.getOrDefault(self.initMode)

    def getInitSteps(self) -> int:
        return self.getOrDefault(self.initSteps)

    def getInitialCenters(self) -> list[list[float]] | None:
        return self._optional(self.initialCenters)

    def weight_column(self) -> str | None:
        """The weight column, or None when ``weightCol`` is unset or empty (every row weighs 1)."""
        return self._optional(self.weightCol)


class _KMeansParams(_ClusteringParams):
    distanceMeasure = typed_param("distanceMeasure",
                                  "'euclidean' (squared distances) or 'cosine' (1 - cosine similarity), as MLlib",
                                  TypeConverters.toString)
    _constraints = {"distanceMeasure": OneOf(DISTANCE_MEASURES)}

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(distanceMeasure="euclidean")

    def getDistanceMeasure(self) -> str:
        return self.getOrDefault(self.distanceMeasure)


def _k_range_without_centers(p: _FuzzyParams) -> str | None:
    if p.getKRange() and p.getInitialCenters() is not None:
        return "initialCenters cannot be combined with kRange (one set of centres per k is needed)"
    return None


class _FuzzyParams(_ClusteringParams):
    m = typed_param("m", "fuzzifier (> 1); 2 is the usual choice", TypeConverters.toFloat)
    kRange = typed_param("kRange",
                         "[kMin, kMax]: fit every k in the range and keep the one with the smallest Xie-Beni index",
                         TypeConverters.toListInt)
    membershipCol = typed_param("membershipCol",
                                "output column of fuzzy memberships (array<double>); empty: not produced",
                                TypeConverters.toString)

    _constraints = {"m": Interval(1, None, closed="neither", subject="the fuzzifier"), "kRange": _K_RANGE}
    _rules = (_k_range_without_centers,)

    def __init__(self) -> None:
        super().__init__()
        # FCM converges more slowly than k-means: skfuzzy-like iteration budget (MLlib has no FCM to follow)
        self._setDefault(m=2.0, maxIter=100, membershipCol="")

    def getM(self) -> float:
        return self.getOrDefault(self.m)

    def getKRange(self) -> list[int] | None:
        return self._optional(self.kRange)

    def getMembershipCol(self) -> str:
        return self.getOrDefault(self.membershipCol)

    def candidate_ks(self) -> list[int]:
        """The k values to fit: the whole ``kRange`` when set, else ``[k]``."""
        kr = self.getKRange()
        return list(range(kr[0], kr[1] + 1)) if kr else [self.getK()]


class _ConsensusParams(_FuzzyParams):
    localKRange = typed_param("localKRange", "[kMin, kMax] each site (partition) searches for its own number of "
                                             "clusters", TypeConverters.toListInt)
    _constraints = {"localKRange": _K_RANGE}

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(kRange=[2, 10], localKRange=[2, 10])

    def getLocalKRange(self) -> list[int]:
        return self.getOrDefault(self.localKRange)


class _ClusteringSetters:
    """Setters of the Params every clustering estimator has (pyspark style: setters on estimators; every Param can
    also be set in the constructor or ``setParams``)."""

    def setK(self, value: int):
        return self._set(k=value)

    def setMaxIter(self, value: int):
        return self._set(maxIter=value)

    def setTol(self, value: float):
        return self._set(tol=value)

    def setSeed(self, value: int):
        return self._set(seed=value)

    def setFeaturesCol(self, value: str):
        return self._set(featuresCol=value)

    def setPredictionCol(self, value: str):
        return self._set(predictionCol=value)

    def setWeightCol(self, value: str):
        return self._set(weightCol=value)

    def setEngine(self, value: str):
        return self._set(engine=value)

    def setInitMode(self, value: str):
        return self._set(initMode=value)

    def setInitSteps(self, value: int):
        return self._set(initSteps=value)

    def setInitialCenters(self, value):
        return self._set(initialCenters=[[float(x) for x in row] for row in value])


class _FuzzySetters(_ClusteringSetters):
    """Setters of the fuzzy estimators' own Params."""

    def setM(self, value: float):
        return self._set(m=value)

    def setKRange(self, value):
        return self._set(kRange=list(value))

    def setMembershipCol(self, value: str):
        return self._set(membershipCol=value)


def data_check(k: int, featuresCol: str, initial_width: int | None = None):
    """A check on the validated data's statistics, run before any training pass on either engine."""

    def check(stats: ScanStats) -> None:
        if k > stats.rows:
            raise DataValidationError(f"k={k} is larger than the number of rows ({stats.rows}) in featuresCol="
                                      f"{featuresCol!r}")
        if initial_width is not None and initial_width != stats.n_features:
            raise DataValidationError(f"initialCenters have {initial_width} columns but featuresCol={featuresCol!r} "
                                      f"has {stats.n_features} features")

    return check
