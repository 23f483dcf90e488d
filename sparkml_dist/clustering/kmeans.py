"""``KMeans`` / ``KMeansModel``: distributed k-means as a pyspark.ml estimator.

Example
-------
>>> from sparkml_dist.clustering import KMeans
>>> from sparkml_dist.data.sources import load
>>> df = load(spark, "iris", num_partitions=2)
>>> model = KMeans(k=3, seed=1).fit(df)
>>> len(model.clusterCenters()), model.summary.k, model.summary.engine
(3, 3, 'mapreduce')
>>> model.transform(df).select("prediction").distinct().count()
3
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from sparkml_dist.clustering.lloyd import KMeansConfig, KMeansResult, fit_kmeans
from sparkml_dist.clustering.models import CentersModelMixin, fit_on_engine
from sparkml_dist.clustering.params import _ClusteringSetters, _KMeansParams, data_check
from sparkml_dist.clustering.transform import with_assignments
from sparkml_dist.data.validation import check_columns
from sparkml_dist.engine import spec_for
from sparkml_dist.ml.summary import TrainingSummary

logger = logging.getLogger(__name__)


@dataclass(kw_only=True, repr=False)
class KMeansSummary(TrainingSummary):
    """Training summary of a :class:`KMeansModel` (shared fields: :class:`~sparkml_dist.ml.summary.TrainingSummary`).

    Attributes
    ----------
    k : int
        Number of centres actually found (``< requested k`` only with fewer distinct points, as MLlib).
    numIter : int
        Lloyd iterations run.
    trainingCost : float
        MLlib's meaning: the weighted cost of the *last assignment step*, against the centres before the last update.
    inertia : float
        scikit-learn's meaning: the weighted cost against the final centres.
    costHistory : list of float
        ``trainingCost`` of every iteration.
    iterationTimes : list of float
        Wall seconds per Lloyd iteration (on rank 0 for the BSP engine).
    initTime : float
        Seconds spent initialising the centres.
    loadTime : float
        Seconds spent reading, converting and validating the data (``to_blocks``, or the barrier tasks' load).
    clusterSizes : list of float
        Weight (row count when unweighted) of each cluster against the final centres.
    bytesCommunicated : int
        Bytes of partial statistics and centres moved between tasks and the driver (MapReduce engine: pickled task
        arguments and results; BSP engine: what every rank sent in its collectives).
    """

    k: int = 0
    trainingCost: float = float("nan")
    inertia: float = float("nan")
    costHistory: list[float] = field(default_factory=list)
    initTime: float | None = None
    clusterSizes: list[float] = field(default_factory=list)

    @classmethod
    def from_result(cls, result: KMeansResult, engine: str, fit_time: float) -> KMeansSummary:
        return cls(k=len(result.centers), numIter=result.num_iter, trainingCost=result.training_cost,
                   inertia=result.inertia, costHistory=result.cost_history, iterationTimes=result.iteration_seconds,
                   initTime=result.init_seconds, loadTime=result.load_seconds, clusterSizes=result.cluster_sizes,
                   bytesCommunicated=result.bytes_communicated, engine=engine, converged=result.converged,
                   fitTime=fit_time, passes=result.passes)

    def __repr__(self) -> str:
        return (f"KMeansSummary(k={self.k}, numIter={self.numIter}, trainingCost={self.trainingCost:.6g}, "
                f"inertia={self.inertia:.6g}, engine={self.engine!r})")


class KMeansModel(Model, _KMeansParams, CentersModelMixin):
    """A fitted :class:`KMeans`: the centres, a vectorised ``transform`` and the training summary."""

    _summary_cls = KMeansSummary

    def __init__(self, centers: np.ndarray | None = None, summary: KMeansSummary | None = None):
        super().__init__()
        self._init_state(centers, summary)

    def setFeaturesCol(self, value: str) -> KMeansModel:
        return self._set(featuresCol=value)

    def setPredictionCol(self, value: str) -> KMeansModel:
        return self._set(predictionCol=value)

    def _cosine(self) -> bool:
        return self.getDistanceMeasure() == "cosine"

    def predict(self, value) -> int:
        """Cluster index of one feature vector."""
        from sparkml_dist.clustering.kernels import predict, unit_rows

        x = np.asarray(value.toArray() if hasattr(value, "toArray") else value, dtype=np.float64)[None, :]
        C = unit_rows(self._centers) if self._cosine() else self._centers
        return int(predict(x, C, self._cosine())[0])

    def _transform(self, dataset):
        return with_assignments(dataset, self.getFeaturesCol(), self.getPredictionCol(), self._centers,
                                self._cosine())


class KMeans(Estimator, _KMeansParams, _ClusteringSetters, DefaultParamsReadable, DefaultParamsWritable):
    """Distributed k-means (k-means|| or k-means++ initialisation, then Lloyd) as a ``pyspark.ml`` estimator.

    Defaults are MLlib ``pyspark.ml.clustering.KMeans``'s: ``k=2, maxIter=20, tol=1e-4, initMode="k-means||",
    initSteps=2, distanceMeasure="euclidean"``, weights unset; ``seed`` is a fixed default (see
    :mod:`sparkml_dist.clustering.params`).

    Parameters
    ----------
    k : int
        Number of clusters, >= 2 and at most the number of rows.
    maxIter : int
        Maximum Lloyd iterations.
    tol : float
        Convergence when every centre moved by at most ``tol`` (euclidean distance; ``1 - cos`` for cosine) -- an
        absolute move like MLlib's, not scikit-learn's variance-relative ``tol``.
    initMode : {"k-means||", "k-means++", "random"}
        ``k-means||``: MLlib's scalable k-means++ (``initSteps`` oversampling passes keeping a row with probability
        ``2 k cost / sum cost``, deduplication, weighted local k-means++ and 30 local Lloyd steps);
        ``k-means++``: exact distributed k-means++, one pass per centre (small data); ``random``: ``k`` distinct
        rows. With fewer than ``k`` distinct points, ``k-means||``/``k-means++`` give fewer than ``k`` centres, as
        MLlib does (``summary.k`` says how many).
    initSteps : int
        Oversampling passes of k-means||.
    seed : int, optional
        Random seed of the initialisation.
    featuresCol, predictionCol : str
        Input ``Vector``/``array<double>`` column and output ``int`` column.
    weightCol : str, optional
        Non-negative row weights (all rows weigh 1 when unset).
    distanceMeasure : {"euclidean", "cosine"}
        Cosine works on directions: centres are unit vectors, cost is ``1 - cos``; zero vectors are rejected.
    initialCenters : list of list of float, optional
        ``k x d`` starting centres (then ``initMode`` is not used).
    engine : {"mapreduce", "bsp"}
        ``mapreduce``: the data is converted once into resident numpy blocks on the executors, and every iteration
        is one Spark job whose tasks return ``(k x d sums, k counts, cost)``, combined by ``treeReduce``.
        ``bsp``: one barrier stage loads each partition once and runs the whole loop, combining the same partial
        statistics with a gloo allreduce (needs one free task slot per partition). Same numbers either way.

    Notes
    -----
    Distances are computed by GEMM (``||x||^2 + ||c||^2 - 2 x.c``) over row chunks of each partition. An empty
    cluster keeps its previous centre (MLlib; scikit-learn instead moves it to a far point).
    ``summary.trainingCost`` follows MLlib (cost of the last assignment step), ``summary.inertia`` scikit-learn
    (cost against the returned centres).

    References
    ----------
    Bahmani, Moseley, Vattani, Kumar, Vassilvitskii. Scalable K-Means++. VLDB 2012.
    """

    @keyword_only
    def __init__(self, *, k: int = 2, maxIter: int = 20, tol: float = 1e-4, initMode: str = "k-means||",
                 initSteps: int = 2, seed: int | None = None, featuresCol: str = "features",
                 predictionCol: str = "prediction", weightCol: str | None = None,
                 distanceMeasure: str = "euclidean", initialCenters: list | None = None,
                 engine: str = "mapreduce") -> None:
        super().__init__()
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(self, *, k: int = 2, maxIter: int = 20, tol: float = 1e-4, initMode: str = "k-means||",
                  initSteps: int = 2, seed: int | None = None, featuresCol: str = "features",
                  predictionCol: str = "prediction", weightCol: str | None = None,
                  distanceMeasure: str = "euclidean", initialCenters: list | None = None,
                  engine: str = "mapreduce") -> KMeans:
        """Set Params by keyword (``None`` leaves a Param at its default)."""
        return self._set_params(self._input_kwargs)

    def setDistanceMeasure(self, value: str) -> KMeans:
        return self._set(distanceMeasure=value)

    def config(self) -> KMeansConfig:
        centers = self.getInitialCenters()
        return KMeansConfig(k=self.getK(), max_iter=self.getMaxIter(), tol=self.getTol(),
                            init_mode=self.getInitMode(), init_steps=self.getInitSteps(), seed=self.getSeed(),
                            cosine=self.getDistanceMeasure() == "cosine",
                            initial_centers=None if centers is None else np.asarray(centers, dtype=np.float64),
                            featuresCol=self.getFeaturesCol())

    def _fit(self, dataset) -> KMeansModel:
        start = time.perf_counter()
        self._validate_params()
        spec = spec_for(self.getFeaturesCol(), self.weight_column())
        check_columns(dataset, spec)  # schema only: no Spark job yet
        cfg = self.config()
        width = None if cfg.initial_centers is None else cfg.initial_centers.shape[1]
        result = fit_on_engine(self.getEngine(), dataset, spec, fit_kmeans, (cfg,),
                            data_check(cfg.k, spec.featuresCol, width))
        summary = KMeansSummary.from_result(result, self.getEngine(), time.perf_counter() - start)
        logger.info("kmeans (%s): k=%d, %d iterations, trainingCost=%.6g, %.2fs", self.getEngine(), summary.k,
                    summary.numIter, summary.trainingCost, summary.fitTime)
        return self._copyValues(KMeansModel(result.centers, summary))
