"""``ConsensusClustering``: Vendramin et al.'s consensus variant of distributed fuzzy clustering.

Each partition is a *site*. In one pass, every site runs fuzzy c-means on its own rows for every ``k`` of
``localKRange`` and keeps the ``k`` with the smallest Xie-Beni index; it sends back only its prototypes and their
fuzzy cardinalities ``sum_j w_j u_ij``. The driver then clusters the weighted union of all sites' prototypes with
FCM for every ``k`` of ``kRange`` (``k`` below the number of prototypes) and again keeps the smallest Xie-Beni. The
resulting prototypes label every row (``transform``: nearest prototype).

When sites hold data from different populations (non-IID partitions: each site sees only some clusters) no single
site can find all clusters, while the consensus over prototypes can; the paper reports it beats DFCM there.
Communication is one round of ``sum_p k_p x d`` numbers, whatever the data size.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Estimator
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from sparkml_dist.clustering import kernels
from sparkml_dist.clustering.dfcm import FuzzyConfig, fit_fcm
from sparkml_dist.clustering.fuzzy import FuzzyCMeansSummary, _FuzzyModelBase
from sparkml_dist.clustering.models import fit_on_engine
from sparkml_dist.clustering.params import _ConsensusParams, _FuzzySetters, data_check
from sparkml_dist.data.validation import check_columns
from sparkml_dist.engine import LocalData, spec_for

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class SiteResult:
    """What one site sends to the driver."""

    partition: int
    centers: np.ndarray
    weights: np.ndarray
    xie_beni: float
    rows: int


@dataclass(kw_only=True)
class ConsensusResult:
    sites: list[SiteResult]
    global_fit: Any
    seconds_local: float = 0.0
    seconds_global: float = 0.0
    load_seconds: float = 0.0
    bytes_communicated: int = 0
    passes: int = 0
    xb_curve: dict[int, float] = field(default_factory=dict)


def _site_fit(block, ks: list[int], cfg: FuzzyConfig) -> SiteResult | None:
    """Local FCM over ``localKRange`` on one partition; the XB-best prototypes and their fuzzy weights."""
    if block.n_rows == 0:
        return None
    n_distinct = len(np.unique(np.asarray(block.X), axis=0))
    ks = [k for k in ks if k < n_distinct] or [min(2, n_distinct)]
    local = LocalData(block.X, block.w)
    site_cfg = FuzzyConfig(ks=ks, m=cfg.m, max_iter=cfg.max_iter, tol=cfg.tol, init_mode=cfg.init_mode,
                           init_steps=cfg.init_steps, seed=cfg.seed ^ (block.partition << 16))
    result = fit_fcm(local, site_cfg)
    V = result.chosen.centers
    U = kernels.memberships(kernels.sq_distances(local.block.X, kernels.block_sq_norms(local.block), V), cfg.m)
    weights = local.block.weights @ U
    return SiteResult(partition=block.partition, centers=V, weights=weights, xie_beni=result.chosen.xie_beni,
                      rows=block.n_rows)


def fit_consensus(data, local_ks: list[int], global_ks: list[int], cfg: FuzzyConfig) -> ConsensusResult:
    """Site-local FCM + XB, then FCM + XB over the weighted prototypes on the driver (any engine)."""
    t0 = time.perf_counter()
    sites = sorted((s for s in data.gather(_site_fit, local_ks, cfg) if s is not None), key=lambda s: s.partition)
    t1 = time.perf_counter()
    P = np.vstack([s.centers for s in sites])
    W = np.concatenate([s.weights for s in sites])
    # k must stay below the number of prototypes: with one prototype per centre J_m = 0 and XB degenerates to 0
    ks = [k for k in global_ks if k < len(P)] or [max(1, len(P) - 1)]
    logger.info("consensus: %d sites chose k=%s; clustering %d prototypes for k in %s", len(sites),
                [len(s.centers) for s in sites], len(P), ks)
    global_cfg = FuzzyConfig(ks=ks, m=cfg.m, max_iter=max(cfg.max_iter, 100), tol=min(cfg.tol, 1e-6),
                             init_mode="k-means++", seed=cfg.seed)
    fit = fit_fcm(LocalData(P, W), global_cfg)
    return ConsensusResult(sites=sites, global_fit=fit, seconds_local=t1 - t0,
                           seconds_global=time.perf_counter() - t1, bytes_communicated=int(data.bytes_communicated),
                           passes=int(data.passes), xb_curve=fit.xb_curve)


class ConsensusClusteringModel(_FuzzyModelBase):
    """Consensus prototypes (``clusterCenters()``), plus every site's own prototypes (``localCenters()``)."""

    def __init__(self, centers: np.ndarray | None = None, summary: Any = None,
                 local_centers: list[np.ndarray] | None = None, local_xb: list[float] | None = None):
        super().__init__(centers, summary)
        self._local = [np.asarray(c, dtype=np.float64) for c in (local_centers or [])]
        self._local_xb = list(local_xb or [])

    def localCenters(self) -> list[np.ndarray]:
        """Each site's XB-chosen prototypes (``k_p x d``), in partition order."""
        return [c.copy() for c in self._local]

    def localK(self) -> list[int]:
        return [len(c) for c in self._local]

    def _get_state(self) -> tuple[dict[str, np.ndarray], dict]:
        arrays, extra = super()._get_state()
        arrays["local_centers"] = np.vstack(self._local) if self._local else np.zeros((0, 0))
        extra["local_k"] = self.localK()
        extra["local_xb"] = self._local_xb
        return arrays, extra

    @classmethod
    def _from_state(cls, arrays: dict[str, np.ndarray], extra: dict) -> ConsensusClusteringModel:
        summary = cls._summary_from(extra)
        bounds = np.cumsum([0] + list(extra.get("local_k", [])))
        local = [arrays["local_centers"][a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        return cls(arrays["centers"], summary, local, extra.get("local_xb"))


class ConsensusClustering(Estimator, _ConsensusParams, _FuzzySetters, DefaultParamsReadable,
                          DefaultParamsWritable):
    """Consensus distributed fuzzy clustering with automatic ``k`` at the sites and globally (Vendramin et al.).

    Parameters
    ----------
    kRange : list of two int
        ``[kMin, kMax]`` for the global number of clusters, chosen by Xie-Beni over the site prototypes
        (default ``[2, 10]``; values not below the number of prototypes are skipped).
    localKRange : list of two int
        ``[kMin, kMax]`` each site searches for its own number of clusters (default ``[2, 10]``).
    m, maxIter, tol, initMode, initSteps, seed
        FCM settings used at the sites (as :class:`~sparkml_dist.clustering.FuzzyCMeans`); the driver's
        prototype clustering uses at least 100 iterations and ``tol <= 1e-6`` (it is tiny).
    featuresCol, predictionCol, weightCol, membershipCol, engine
        As :class:`~sparkml_dist.clustering.FuzzyCMeans`. One site per partition: partition the data by site
        (``repartition``) before fitting if it is not already.

    Notes
    -----
    One data pass in total (plus the validation pass): the sites' work is local, only prototypes travel.
    ``summary`` describes the global (prototype-level) fit; ``summary.xieBeniCurve`` is the global XB curve.

    References
    ----------
    Vendramin, Campello, Coletta, Hruschka. Distributed Fuzzy Clustering with Automatic Detection of the Number of
    Clusters. DCAI 2011.

    Examples
    --------
    >>> from sparkml_dist.data.sources import load
    >>> df = load(spark, "iris", num_partitions=2)             # two sites
    >>> model = ConsensusClustering(kRange=[2, 4], localKRange=[2, 3], seed=0).fit(df)
    >>> len(model.localK()), model.getK() == len(model.centers)
    (2, True)
    """

    @keyword_only
    def __init__(self, *, kRange: list | None = None, localKRange: list | None = None, m: float = 2.0,
                 maxIter: int = 100, tol: float = 1e-4, initMode: str = "k-means||", initSteps: int = 2,
                 seed: int | None = None, featuresCol: str = "features", predictionCol: str = "prediction",
                 weightCol: str | None = None, membershipCol: str = "", engine: str = "mapreduce") -> None:
        super().__init__()
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(self, *, kRange: list | None = None, localKRange: list | None = None, m: float = 2.0,
                  maxIter: int = 100, tol: float = 1e-4, initMode: str = "k-means||", initSteps: int = 2,
                  seed: int | None = None, featuresCol: str = "features", predictionCol: str = "prediction",
                  weightCol: str | None = None, membershipCol: str = "",
                  engine: str = "mapreduce") -> ConsensusClustering:
        """Set Params by keyword (``None`` leaves a Param at its default)."""
        return self._set_params(self._input_kwargs)

    def setLocalKRange(self, value) -> ConsensusClustering:
        return self._set(localKRange=list(value))

    def _fit(self, dataset) -> ConsensusClusteringModel:
        start = time.perf_counter()
        self._validate_params()
        spec = spec_for(self.getFeaturesCol(), self.weight_column())
        check_columns(dataset, spec)
        local = self.getLocalKRange()
        glob = self.getKRange()
        cfg = FuzzyConfig(ks=[2], m=self.getM(), max_iter=self.getMaxIter(), tol=self.getTol(),
                          init_mode=self.getInitMode(), init_steps=self.getInitSteps(), seed=self.getSeed())
        result = fit_on_engine(self.getEngine(), dataset, spec, fit_consensus,
                            (list(range(local[0], local[1] + 1)), list(range(glob[0], glob[1] + 1)), cfg),
                            data_check(local[0], spec.featuresCol))
        fit = result.global_fit
        fit.bytes_communicated = result.bytes_communicated
        fit.passes = result.passes
        fit.init_seconds = result.seconds_local
        fit.load_seconds = result.load_seconds
        summary = FuzzyCMeansSummary.from_result(fit, self.getEngine(), time.perf_counter() - start)
        logger.info("consensus (%s): sites chose k=%s, global k=%d (xieBeni=%.4g), %.2fs", self.getEngine(),
                    [len(s.centers) for s in result.sites], summary.k, summary.xieBeni, summary.fitTime)
        model = ConsensusClusteringModel(fit.chosen.centers, summary, [s.centers for s in result.sites],
                                         [s.xie_beni for s in result.sites])
        return self._copyValues(model)._set(k=summary.k)
