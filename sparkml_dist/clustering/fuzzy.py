"""``FuzzyCMeans`` / ``FuzzyCMeansModel``: distributed fuzzy c-means (DFCM) with the distributed Xie-Beni index.

Example
-------
>>> from sparkml_dist.clustering import FuzzyCMeans
>>> from sparkml_dist.data.sources import load
>>> df = load(spark, "iris", num_partitions=2)
>>> model = FuzzyCMeans(kRange=[2, 4], seed=1).fit(df)
>>> sorted(model.xieBeniCurve()), model.getK() == model.summary.k
([2, 3, 4], True)
>>> u = model.setMembershipCol("u").transform(df).select("u").first()[0]
>>> len(u) == model.getK(), round(sum(u), 9)
(True, 1.0)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from sparkml_dist.clustering.dfcm import FuzzyConfig, FuzzyResult, fit_fcm
from sparkml_dist.clustering.models import CentersModelMixin, fit_on_engine
from sparkml_dist.clustering.params import _FuzzyParams, _FuzzySetters, data_check
from sparkml_dist.clustering.transform import with_assignments, with_memberships
from sparkml_dist.data.validation import check_columns
from sparkml_dist.engine import spec_for
from sparkml_dist.ml.summary import TrainingSummary

logger = logging.getLogger(__name__)


@dataclass(kw_only=True, repr=False)
class FuzzyCMeansSummary(TrainingSummary):
    """Training summary of a fuzzy model (the shared fields: :class:`~sparkml_dist.ml.summary.TrainingSummary`).

    Attributes
    ----------
    k : int
        Chosen number of clusters (smallest Xie-Beni over ``kRange``, or the requested ``k``).
    numIter : int
        Iterations of the chosen ``k``.
    objective : float
        FCM objective ``J_m`` at the final prototypes.
    xieBeni : float
        Xie-Beni index of the chosen ``k``.
    xieBeniCurve : dict of int to float
        Xie-Beni index of every fitted ``k``.
    costHistory : list of float
        ``J_m`` per iteration of the chosen ``k`` (against the prototypes before that iteration's update).
    iterationTimes : list of float
        Seconds per pass over the data (one pass serves every ``k`` of a sweep).
    initTime, loadTime, fitTime : float
        Seconds spent initialising (consensus: the sites' local clustering), loading and validating the data, and
        in the whole fit.
    clusterSizes : list of float
        Fuzzy cluster weights ``sum_j w_j u_ij^m`` at the final prototypes.
    bytesCommunicated : int
        Bytes moved between tasks and driver (see :class:`~sparkml_dist.clustering.KMeansSummary`).
    """

    k: int = 0
    objective: float = float("nan")
    xieBeni: float = float("nan")
    xieBeniCurve: dict[int, float] = field(default_factory=dict)
    costHistory: list[float] = field(default_factory=list)
    initTime: float | None = None
    clusterSizes: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        # JSON turns int keys into strings
        self.xieBeniCurve = {int(k): float(v) for k, v in (self.xieBeniCurve or {}).items()}

    @classmethod
    def from_result(cls, result: FuzzyResult, engine: str, fit_time: float) -> FuzzyCMeansSummary:
        fit = result.chosen
        return cls(k=fit.k, numIter=fit.num_iter, objective=fit.objective, xieBeni=fit.xie_beni,
                   xieBeniCurve=result.xb_curve, costHistory=fit.cost_history, iterationTimes=result.iteration_seconds,
                   initTime=result.init_seconds, loadTime=result.load_seconds, fitTime=fit_time,
                   clusterSizes=fit.fuzzy_sizes,
                   bytesCommunicated=result.bytes_communicated, engine=engine, converged=fit.converged,
                   passes=result.passes)

    def asDict(self) -> dict:
        out = super().asDict()
        out["xieBeniCurve"] = {str(k): v for k, v in self.xieBeniCurve.items()}
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(k={self.k}, xieBeni={self.xieBeni:.6g}, objective={self.objective:.6g})"


class _FuzzyModelBase(Model, _FuzzyParams, CentersModelMixin):
    """Prototypes, memberships and the training summary (shared by FCM and consensus models)."""

    _summary_cls = FuzzyCMeansSummary

    def __init__(self, centers: np.ndarray | None = None, summary: Any = None):
        super().__init__()
        self._init_state(centers, summary)

    def setFeaturesCol(self, value: str):
        return self._set(featuresCol=value)

    def setPredictionCol(self, value: str):
        return self._set(predictionCol=value)

    def setMembershipCol(self, value: str):
        return self._set(membershipCol=value)

    def xieBeniCurve(self) -> dict[int, float]:
        """Xie-Beni index per fitted ``k`` (one entry unless ``kRange`` was set)."""
        return dict(self.summary.xieBeniCurve)

    def predictMemberships(self, X: np.ndarray) -> np.ndarray:
        """FCM memberships (``n x k``, rows sum to 1) of in-memory rows."""
        from sparkml_dist.clustering import kernels

        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        D = kernels.sq_distances(X, np.einsum("ij,ij->i", X, X), self._centers)
        return kernels.memberships(D, self.getM())

    def _transform(self, dataset):
        # the hard label is the largest membership, i.e. the nearest prototype (for every m > 1)
        out = with_assignments(dataset, self.getFeaturesCol(), self.getPredictionCol(), self._centers)
        if self.getMembershipCol():
            out = with_memberships(out, self.getFeaturesCol(), self.getMembershipCol(), self._centers, self.getM())
        return out


class FuzzyCMeansModel(_FuzzyModelBase):
    """A fitted :class:`FuzzyCMeans`: prototypes, hard ``transform`` (plus memberships with ``membershipCol``)."""


class FuzzyCMeans(Estimator, _FuzzyParams, _FuzzySetters, DefaultParamsReadable, DefaultParamsWritable):
    """Distributed fuzzy c-means (DFCM, exact) with automatic ``k`` by the distributed Xie-Beni index.

    Parameters
    ----------
    k : int
        Number of clusters when ``kRange`` is not set (default 2, as MLlib KMeans).
    m : float
        Fuzzifier, > 1 (default 2.0, the usual choice and skfuzzy's examples').
    maxIter : int
        Maximum iterations per ``k`` (default 100: FCM converges more slowly than k-means).
    tol : float
        Stop a ``k`` once no prototype coordinate moves by ``tol`` or more (default 1e-4).
    kRange : list of two int, optional
        ``[kMin, kMax]``: fit every ``k`` in the range (all in the same data passes) and keep the smallest Xie-Beni
        index; the model keeps the whole curve (``xieBeniCurve()``).
    initMode, initSteps, initialCenters, seed
        Initial prototypes, as :class:`~sparkml_dist.clustering.KMeans` (one k-means|| candidate set serves every
        ``k`` of a sweep).
    featuresCol, predictionCol, weightCol : str
        As KMeans; the prediction is the prototype of largest membership.
    membershipCol : str
        If non-empty, ``transform`` also writes the membership vector (``array<double>``).
    engine : {"mapreduce", "bsp"}
        As KMeans.

    Notes
    -----
    Memberships ``u_ij = 1 / sum_k (d_ij / d_kj)^(2/(m-1))``; each pass sums ``u^m x``, ``u^m`` and
    ``J_m = sum u^m d^2`` over partitions, which is exactly centralised FCM. Xie-Beni
    ``XB = J_m / (N min_{i != k} ||v_i - v_k||^2)`` is computed from the same distributed sums.

    References
    ----------
    Vendramin, Campello, Coletta, Hruschka. Distributed Fuzzy Clustering with Automatic Detection of the Number of
    Clusters. DCAI 2011. Xie and Beni. A validity measure for fuzzy clustering. IEEE TPAMI 1991.
    """

    @keyword_only
    def __init__(self, *, k: int = 2, m: float = 2.0, maxIter: int = 100, tol: float = 1e-4,
                 kRange: list | None = None, initMode: str = "k-means||", initSteps: int = 2,
                 initialCenters: list | None = None, seed: int | None = None, featuresCol: str = "features",
                 predictionCol: str = "prediction", weightCol: str | None = None, membershipCol: str = "",
                 engine: str = "mapreduce") -> None:
        super().__init__()
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(self, *, k: int = 2, m: float = 2.0, maxIter: int = 100, tol: float = 1e-4,
                  kRange: list | None = None, initMode: str = "k-means||", initSteps: int = 2,
                  initialCenters: list | None = None, seed: int | None = None, featuresCol: str = "features",
                  predictionCol: str = "prediction", weightCol: str | None = None, membershipCol: str = "",
                  engine: str = "mapreduce") -> FuzzyCMeans:
        """Set Params by keyword (``None`` leaves a Param at its default)."""
        return self._set_params(self._input_kwargs)

    def config(self) -> FuzzyConfig:
        centers = self.getInitialCenters()
        return FuzzyConfig(ks=self.candidate_ks(), m=self.getM(), max_iter=self.getMaxIter(), tol=self.getTol(),
                           init_mode=self.getInitMode(), init_steps=self.getInitSteps(), seed=self.getSeed(),
                           initial_centers=None if centers is None else np.asarray(centers, dtype=np.float64))

    def _fit(self, dataset) -> FuzzyCMeansModel:
        start = time.perf_counter()
        self._validate_params()
        spec = spec_for(self.getFeaturesCol(), self.weight_column())
        check_columns(dataset, spec)
        cfg = self.config()
        width = None if cfg.initial_centers is None else cfg.initial_centers.shape[1]
        result = fit_on_engine(self.getEngine(), dataset, spec, fit_fcm, (cfg,),
                            data_check(max(cfg.ks), spec.featuresCol, width))
        summary = FuzzyCMeansSummary.from_result(result, self.getEngine(), time.perf_counter() - start)
        logger.info("fuzzy c-means (%s): k=%d, xieBeni=%.4g, %.2fs", self.getEngine(), summary.k, summary.xieBeni,
                    summary.fitTime)
        model = self._copyValues(FuzzyCMeansModel(result.chosen.centers, summary))
        return model._set(k=summary.k)
