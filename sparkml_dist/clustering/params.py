"""Param mixins shared by the clustering estimators and their models (xgboost.spark layout).

Every Param is camelCase like ``pyspark.ml``'s. Defaults are MLlib ``KMeans``'s where MLlib has the parameter
(``k=2, maxIter=20, tol=1e-4, initMode="k-means||", initSteps=2, distanceMeasure="euclidean"``); ``seed`` defaults
to a fixed number derived from the class name, as MLlib's does -- but stable across processes (pyspark's
``hash(name)`` changes with ``PYTHONHASHSEED``).

Parameter values are checked by :meth:`_ClusteringParams._check_params` at ``fit`` time, before any Spark job, with
errors that name the parameter.
"""

from __future__ import annotations

from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasFeaturesCol, HasMaxIter, HasPredictionCol, HasSeed, HasTol, HasWeightCol

from sparkml_dist.clustering.initialization import INIT_MODES
from sparkml_dist.data.validation import DataValidationError, ScanStats
from sparkml_dist.engine import ENGINES
from sparkml_dist.ml.params import stable_seed

DISTANCE_MEASURES = ("euclidean", "cosine")


class _ClusteringParams(HasFeaturesCol, HasPredictionCol, HasWeightCol, HasMaxIter, HasTol, HasSeed):
    """Params of every clustering estimator/model of this package."""

    k = Param(Params._dummy(), "k", "number of clusters to create (>= 2)", typeConverter=TypeConverters.toInt)
    initMode = Param(Params._dummy(), "initMode",
                     f"initialisation algorithm: one of {', '.join(INIT_MODES)} (k-means|| as MLlib)",
                     typeConverter=TypeConverters.toString)
    initSteps = Param(Params._dummy(), "initSteps", "number of k-means|| oversampling rounds (> 0)",
                      typeConverter=TypeConverters.toInt)
    initialCenters = Param(Params._dummy(), "initialCenters",
                           "k x d list of initial centres; when set, initMode is not used",
                           typeConverter=TypeConverters.toListListFloat)
    engine = Param(Params._dummy(), "engine",
                   "'mapreduce' (resident blocks + treeReduce per iteration) or 'bsp' (one barrier stage, allreduce)",
                   typeConverter=TypeConverters.toString)

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self._setDefault(k=2, maxIter=20, tol=1e-4, initMode="k-means||", initSteps=2, engine="mapreduce",
                         seed=stable_seed(type(self).__name__.replace("Model", "")))

    def getK(self) -> int:
        return self.getOrDefault(self.k)

    def getInitMode(self) -> str:
        return self.getOrDefault(self.initMode)

    def getInitSteps(self) -> int:
        return self.getOrDefault(self.initSteps)

    def getInitialCenters(self) -> list[list[float]] | None:
        return self.getOrDefault(self.initialCenters) if self.isDefined(self.initialCenters) else None

    def getEngine(self) -> str:
        return self.getOrDefault(self.engine)

    def weight_column(self) -> str | None:
        """The weight column, or None when ``weightCol`` is unset or empty (every row weighs 1)."""
        if self.isDefined(self.weightCol) and self.getWeightCol():
            return self.getWeightCol()
        return None

    def _check_params(self) -> None:
        """Value checks that need no data (raised before any Spark job)."""
        k = self.getK()
        if k < 2:
            raise ValueError(f"k={k}: the number of clusters must be >= 2")
        if self.getMaxIter() < 1:
            raise ValueError(f"maxIter={self.getMaxIter()}: must be >= 1")
        if self.getTol() < 0:
            raise ValueError(f"tol={self.getTol()}: must be >= 0")
        if self.getInitMode() not in INIT_MODES:
            raise ValueError(f"initMode={self.getInitMode()!r}: expected one of {', '.join(INIT_MODES)}")
        if self.getInitSteps() < 1:
            raise ValueError(f"initSteps={self.getInitSteps()}: must be >= 1")
        if self.getEngine() not in ENGINES:
            raise ValueError(f"engine={self.getEngine()!r}: expected one of {', '.join(ENGINES)}")
        centers = self.getInitialCenters()
        if centers is not None:
            widths = {len(c) for c in centers}
            if len(centers) != k or len(widths) != 1:
                raise ValueError(f"initialCenters: expected k={k} rows of equal length, got {len(centers)} rows of "
                                 f"lengths {sorted(widths)}")

    # setters shared by every estimator (pyspark style; all Params can also be set in the constructor)
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

    def setInitialCenters(self, value):
        return self._set(initialCenters=[[float(x) for x in row] for row in value])


class _KMeansParams(_ClusteringParams):
    distanceMeasure = Param(Params._dummy(), "distanceMeasure",
                            "'euclidean' (squared distances) or 'cosine' (1 - cosine similarity), as MLlib",
                            typeConverter=TypeConverters.toString)

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self._setDefault(distanceMeasure="euclidean")

    def getDistanceMeasure(self) -> str:
        return self.getOrDefault(self.distanceMeasure)

    def setDistanceMeasure(self, value: str):
        return self._set(distanceMeasure=value)

    def _check_params(self) -> None:
        super()._check_params()
        if self.getDistanceMeasure() not in DISTANCE_MEASURES:
            raise ValueError(f"distanceMeasure={self.getDistanceMeasure()!r}: expected one of "
                             f"{', '.join(DISTANCE_MEASURES)}")


def _check_k_range(name: str, value: list[int] | None) -> None:
    if value is None:
        return
    if len(value) != 2 or value[0] < 2 or value[1] < value[0]:
        raise ValueError(f"{name}={list(value)}: expected [kMin, kMax] with 2 <= kMin <= kMax")


class _FuzzyParams(_ClusteringParams):
    m = Param(Params._dummy(), "m", "fuzzifier (> 1); 2 is the usual choice", typeConverter=TypeConverters.toFloat)
    kRange = Param(Params._dummy(), "kRange",
                   "[kMin, kMax]: fit every k in the range and keep the one with the smallest Xie-Beni index",
                   typeConverter=TypeConverters.toListInt)
    membershipCol = Param(Params._dummy(), "membershipCol",
                          "output column of fuzzy memberships (array<double>); empty: not produced",
                          typeConverter=TypeConverters.toString)

    def __init__(self, *args) -> None:
        super().__init__(*args)
        # FCM converges more slowly than k-means: skfuzzy-like iteration budget (MLlib has no FCM to follow)
        self._setDefault(m=2.0, maxIter=100, membershipCol="")

    def getM(self) -> float:
        return self.getOrDefault(self.m)

    def getKRange(self) -> list[int] | None:
        return self.getOrDefault(self.kRange) if self.isDefined(self.kRange) else None

    def getMembershipCol(self) -> str:
        return self.getOrDefault(self.membershipCol)

    def setMembershipCol(self, value: str):
        return self._set(membershipCol=value)

    def setM(self, value: float):
        return self._set(m=value)

    def setKRange(self, value):
        return self._set(kRange=list(value))

    def candidate_ks(self) -> list[int]:
        """The k values to fit: the whole ``kRange`` when set, else ``[k]``."""
        kr = self.getKRange()
        return list(range(kr[0], kr[1] + 1)) if kr else [self.getK()]

    def _check_params(self) -> None:
        super()._check_params()
        if self.getM() <= 1.0:
            raise ValueError(f"m={self.getM()}: the fuzzifier must be > 1")
        _check_k_range("kRange", self.getKRange())
        if self.getKRange() and self.getInitialCenters() is not None:
            raise ValueError("initialCenters cannot be combined with kRange (one set of centres per k is needed)")


class _ConsensusParams(_FuzzyParams):
    localKRange = Param(Params._dummy(), "localKRange",
                        "[kMin, kMax] each site (partition) searches for its own number of clusters",
                        typeConverter=TypeConverters.toListInt)

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self._setDefault(kRange=[2, 10], localKRange=[2, 10])

    def getLocalKRange(self) -> list[int]:
        return self.getOrDefault(self.localKRange)

    def setLocalKRange(self, value):
        return self._set(localKRange=list(value))

    def _check_params(self) -> None:
        super()._check_params()
        _check_k_range("localKRange", self.getLocalKRange())


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
