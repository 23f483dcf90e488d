"""``CascadeSVC``: kernel SVM trained by Cascade / MRSMO / DPSVM over the partitions, as a pyspark.ml estimator.

Example (``spark`` is a SparkSession)::

    from sparkml_dist.classification import CascadeSVC
    from sparkml_dist.data.generators import make_classification

    df = make_classification(spark, n_rows=50_000, n_features=10, num_partitions=4)
    model = CascadeSVC(C=1.0, kernel="rbf", mode="cascade", engine="bsp").fit(df)
    model.transform(df).select("prediction").show(3)
    model.passes, model.supportVectorCounts, model.dualObjective
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from sparkml_dist.classification.cascade import fit_svm
from sparkml_dist.classification.kernel_svm import KernelSpec, SVCSolution
from sparkml_dist.classification.params import SVCParams, classes_check
from sparkml_dist.classification.prediction_columns import add_prediction_columns
from sparkml_dist.engine import launch, spec_for
from sparkml_dist.ml.persistence import ArrayPersistable
from sparkml_dist.ml.summary import HasTrainingSummary, TrainingSummary

logger = logging.getLogger(__name__)

_SOLUTION_ARRAYS = ("classes", "support_ids", "support_vectors", "support_y", "dual_coef", "intercept", "n_support")


class CascadeSVC(Estimator, SVCParams, DefaultParamsReadable, DefaultParamsWritable):
    """Distributed kernel C-SVC: libsvm (scikit-learn ``SVC``) on the partitions' leaves, support vectors merged up
    a tree by a warm-started SMO (:mod:`~sparkml_dist.classification.smo`), KKT violators fed back to the top.

    Defaults follow scikit-learn's ``SVC()`` (``C=1.0, kernel="rbf", gamma="scale", degree=3, coef0=0``) and
    dislib's ``CascadeSVM`` for the cascade (``maxPasses=5, tol=1e-3``, arity 2) -- but with scikit-learn's
    ``gamma="scale"``, computed over the whole distributed dataset.

    Parameters
    ----------
    C : float, default 1.0
        Regularisation, > 0.
    kernel : {"rbf", "linear", "poly"}, default "rbf"
    gamma : "scale", "auto" or float, default "scale"
        ``scale`` = 1 / (n_features * X.var()) over all rows (one extra pass), ``auto`` = 1 / n_features.
    degree, coef0 : int, float
        Polynomial kernel settings, as scikit-learn. (``sigmoid`` is refused: not positive semi-definite, so
        the cascade has no single optimum to converge to.)
    mode : {"cascade", "mrsmo", "dpsvm"}, default "cascade"
        See :mod:`sparkml_dist.classification.cascade` and :mod:`sparkml_dist.classification.dpsvm`.
    maxPasses : int, default 5
        ``cascade``: feedback passes at most. ``dpsvm``: ring circulations at most (``maxPasses * partitions``
        exchange rounds; ``maxPasses`` rounds for the complete topology). Ignored by ``mrsmo`` (one pass).
    tol : float, default 1e-3
        ``cascade`` stops when no row violates the top SVM's KKT conditions, or when a feedback pass changes its dual
        objective by less than ``tol`` relative. The solvers' own stopping tolerance is libsvm's 1e-3.
    topology : {"ring", "complete"}, default "ring"
        ``dpsvm`` network.
    maxIter : int, default -1
        libsvm iteration cap per local solve (-1: none).
    cacheSize : float, default 500
        libsvm kernel cache per local solve, MB.
    numPartitions : int, default 0
        Repartition first (0: keep the input's partitions).
    leafSize : int, default 5000
        ``cascade``/``mrsmo``: every partition is cut into layer-1 leaves of at most this many rows (libsvm's cost
        grows super-linearly with rows, so many small leaves are cheaper than one big one); 0: one leaf per partition.
    kernelMemoryMB : float, default 4096
        Merges (and the top SVM's feedback re-solves) start from their children's alphas, solved by our SMO on the
        in-memory kernel matrix (RBF: float32, 4 n^2 bytes; linear/poly: float64, 8 n^2 bytes); a merge whose
        matrix exceeds this holds its deep bounded SVs at C to fit, else runs libsvm from zero. 0: libsvm everywhere.
    engine : {"mapreduce", "bsp"}, default "mapreduce"
        Spark jobs over resident blocks (every step a job; works on any cluster), or the whole fit in one barrier
        stage (SV sets exchanged by gloo collectives; a rank hosts whole partitions when there are more partitions
        than free task slots). Every mode on either engine, the same model: the trainers are written once against
        :mod:`sparkml_dist.engine`.

    Notes
    -----
    Multi-class is one-vs-one, inside libsvm, like ``SVC``. Empty partitions are skipped; a partition holding a
    single class passes all its rows up the cascade. An empty DataFrame, NaN/inf features, labels that are not
    0..K-1, one class only, ``C <= 0``, an unknown kernel or mode raise before any training job.

    References
    ----------
    Graf, Cosatto, Bottou, Durdanovic, Vapnik. Parallel support vector machines: the Cascade SVM. NIPS 2004.
    Alham, Li, Liu, Hammoud. A MapReduce-based distributed SVM algorithm. Comput. Math. Appl. 62 (2011).
    Lu, Roychowdhury, Vandenberghe. Distributed parallel support vector machines in strongly connected networks.
    IEEE TNN 19(7), 2008.

    Examples
    --------
    >>> from sparkml_dist.data.sources import load
    >>> df = load(spark, "breast_cancer", num_partitions=2)
    >>> model = CascadeSVC(mode="cascade").fit(df)
    >>> model.converged, model.passes, int(model.supportVectors.shape[0]) > 0
    (True, 2, True)
    """

    @keyword_only
    def __init__(self, *, featuresCol: str = "features", labelCol: str = "label",
                 predictionCol: str = "prediction", rawPredictionCol: str = "rawPrediction", C: float = 1.0,
                 kernel: str = "rbf", gamma: str | float = "scale", degree: int = 3, coef0: float = 0.0,
                 mode: str = "cascade", maxPasses: int = 5, tol: float = 1e-3, topology: str = "ring",
                 maxIter: int = -1, cacheSize: float = 500.0, numPartitions: int = 0, leafSize: int = 5000,
                 kernelMemoryMB: float = 4096.0, engine: str = "mapreduce") -> None:
        super().__init__()
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(self, *, featuresCol: str = "features", labelCol: str = "label",
                  predictionCol: str = "prediction", rawPredictionCol: str = "rawPrediction", C: float = 1.0,
                  kernel: str = "rbf", gamma: str | float = "scale", degree: int = 3, coef0: float = 0.0,
                  mode: str = "cascade", maxPasses: int = 5, tol: float = 1e-3, topology: str = "ring",
                  maxIter: int = -1, cacheSize: float = 500.0, numPartitions: int = 0, leafSize: int = 5000,
                  kernelMemoryMB: float = 4096.0, engine: str = "mapreduce") -> CascadeSVC:
        """Set Params by keyword (``None`` leaves a Param at its default)."""
        return self._set_params(self._input_kwargs)

    def setFeaturesCol(self, value: str) -> CascadeSVC:
        return self._set(featuresCol=value)

    def setLabelCol(self, value: str) -> CascadeSVC:
        return self._set(labelCol=value)

    def setPredictionCol(self, value: str) -> CascadeSVC:
        return self._set(predictionCol=value)

    def setRawPredictionCol(self, value: str) -> CascadeSVC:
        return self._set(rawPredictionCol=value)

    def setC(self, value: float) -> CascadeSVC:
        return self._set(C=value)

    def setKernel(self, value: str) -> CascadeSVC:
        return self._set(kernel=value)

    def setGamma(self, value: str | float) -> CascadeSVC:
        return self._set(gamma=value)

    def setDegree(self, value: int) -> CascadeSVC:
        return self._set(degree=value)

    def setCoef0(self, value: float) -> CascadeSVC:
        return self._set(coef0=value)

    def setMode(self, value: str) -> CascadeSVC:
        return self._set(mode=value)

    def setMaxPasses(self, value: int) -> CascadeSVC:
        return self._set(maxPasses=value)

    def setTol(self, value: float) -> CascadeSVC:
        return self._set(tol=value)

    def setTopology(self, value: str) -> CascadeSVC:
        return self._set(topology=value)

    def setMaxIter(self, value: int) -> CascadeSVC:
        return self._set(maxIter=value)

    def setCacheSize(self, value: float) -> CascadeSVC:
        return self._set(cacheSize=value)

    def setNumPartitions(self, value: int) -> CascadeSVC:
        return self._set(numPartitions=value)

    def setLeafSize(self, value: int) -> CascadeSVC:
        return self._set(leafSize=value)

    def setKernelMemoryMB(self, value: float) -> CascadeSVC:
        return self._set(kernelMemoryMB=value)

    def setEngine(self, value: str) -> CascadeSVC:
        return self._set(engine=value)

    def _fit(self, dataset) -> CascadeSVCModel:
        self._validate_params()
        start = time.perf_counter()
        spec = spec_for(self.getFeaturesCol(), None, self.getLabelCol(), "classes")
        data = dataset.repartition(self.getNumPartitions()) if self.getNumPartitions() else dataset
        run = launch(self.getEngine(), data, spec, fit_svm,
                     (self.getMode(), self._kernel_args(), self._solver_args(), self.getMaxPasses(), self.getTol(),
                      self.getTopology()), classes_check(self.getLabelCol()), dtype=np.float64)
        result, kernel, n_classes = run.result
        return self._model(run, result, kernel, n_classes, int(run.stats.n_features or 0), start)

    def _kernel_args(self) -> dict:
        """The kernel settings, ``gamma`` still unresolved ('scale' needs the data)."""
        return {"kernel": self.getKernel(), "gamma": self.getGamma(), "degree": self.getDegree(),
                "coef0": self.getCoef0()}

    def _solver_args(self) -> dict:
        """:class:`~sparkml_dist.classification.cascade.SolverConfig` fields other than the kernel and classes."""
        return {"C": self.getC(), "cache_size": self.getCacheSize(),
                "max_iter": self.getMaxIter(), "kernel_memory": self.getKernelMemoryMB() * 2**20,
                "leaf_size": self.getLeafSize()}

    def _model(self, run, result, kernel: KernelSpec, n_classes: int, n_features: int,
               start: float) -> CascadeSVCModel:
        logger.info("svm %s (%s): %d passes, %d SVs, objective %.6g, %.2fs", self.getMode(), self.getEngine(),
                    result.passes, len(result.solution.support_ids), result.solution.objective,
                    time.perf_counter() - start)
        history = result.history
        summary = CascadeSVCTrainingSummary(numIter=result.passes, converged=result.converged,
                                            engine=self.getEngine(), fitTime=time.perf_counter() - start,
                                            iterationTimes=[float(h.get("seconds", 0.0)) for h in history],
                                            loadTime=run.load_seconds, bytesCommunicated=run.bytes_communicated,
                                            mode=self.getMode(), dualObjective=float(result.solution.objective),
                                            history=history)
        model = CascadeSVCModel(result.solution, kernel, n_classes, n_features, summary)
        return self._copyValues(model)


@dataclass(kw_only=True, repr=False)
class CascadeSVCTrainingSummary(TrainingSummary):
    """Training summary of a :class:`CascadeSVCModel`: ``numIter`` cascade passes (DPSVM: rounds); ``history`` per
    pass: objective, relative change, SV counts, KKT violators, rows trained at layer 1 and in merges, seconds."""

    mode: str = ""
    dualObjective: float = 0.0
    history: list[dict] = field(default_factory=list)


class CascadeSVCModel(Model, SVCParams, ArrayPersistable, HasTrainingSummary):
    """A fitted :class:`CascadeSVC`: libsvm's one-vs-one solution of the final (top) SVM.

    Attributes
    ----------
    supportVectors : numpy.ndarray
        ``(n_SV, n_features)``, grouped by class (scikit-learn ``support_vectors_``).
    supportIds : numpy.ndarray
        Global row ids of the support vectors (partition order, then row order inside the partition).
    dualCoef, intercept, nSupport : numpy.ndarray
        scikit-learn's ``dual_coef_`` (``alpha * y``, one-vs-one layout), ``intercept_`` and ``n_support_``.
    dualObjective : float
        libsvm dual objective of the final SVM, summed over the one-vs-one problems.
    gammaValue : float
        The ``gamma`` used (``'scale'`` resolved over the whole dataset).
    passes : int
        Cascade passes (or DPSVM rounds) made; ``converged`` says whether the stopping rule was met.
    supportVectorCounts : list of int
        SVs of the top SVM after every pass (DPSVM: SVs summed over nodes per round).
    trainingHistory : list of dict
        Per pass: objective, relative change, SV counts, rows trained at layer 1 and in merges, seconds.
    summary : CascadeSVCTrainingSummary
    """

    def __init__(self, solution: SVCSolution | None = None, kernel: KernelSpec | None = None, n_classes: int = 0,
                 n_features: int = 0, summary: CascadeSVCTrainingSummary | None = None) -> None:
        super().__init__()
        self._solution = solution
        self._kernel = kernel
        self._n_classes = n_classes
        self._n_features = n_features
        self._summary = summary

    def setFeaturesCol(self, value: str) -> CascadeSVCModel:
        return self._set(featuresCol=value)

    def setPredictionCol(self, value: str) -> CascadeSVCModel:
        return self._set(predictionCol=value)

    def setRawPredictionCol(self, value: str) -> CascadeSVCModel:
        return self._set(rawPredictionCol=value)

    @property
    def solution(self) -> SVCSolution:
        if self._solution is None:
            raise RuntimeError("this CascadeSVCModel holds no fitted solution")
        return self._solution

    @property
    def numClasses(self) -> int:
        return self._n_classes

    @property
    def numFeatures(self) -> int:
        return self._n_features

    @property
    def supportVectors(self) -> np.ndarray:
        return self.solution.support_vectors

    @property
    def supportIds(self) -> np.ndarray:
        return self.solution.support_ids

    @property
    def dualCoef(self) -> np.ndarray:
        return self.solution.dual_coef

    @property
    def intercept(self) -> np.ndarray:
        return self.solution.intercept

    @property
    def nSupport(self) -> np.ndarray:
        return self.solution.n_support

    @property
    def dualObjective(self) -> float:
        return float(self.solution.objective)

    @property
    def gammaValue(self) -> float:
        assert self._kernel is not None
        return self._kernel.gamma

    @property
    def passes(self) -> int:
        return int(self.summary.numIter) if self.hasSummary else 0

    @property
    def converged(self) -> bool:
        return bool(self.summary.converged) if self.hasSummary else False

    @property
    def trainingHistory(self) -> list[dict]:
        return list(self.summary.history) if self.hasSummary else []

    @property
    def supportVectorCounts(self) -> list[int]:
        return [int(h.get("n_sv", 0)) for h in self.trainingHistory]

    def predict_numpy(self, X: np.ndarray) -> tuple[np.ndarray, None, np.ndarray]:
        """``(rawPrediction, None, prediction)`` for an in-memory matrix (what ``transform`` computes)."""
        assert self._kernel is not None
        return self.solution.predict_all(np.asarray(X, dtype=np.float64), self._kernel, self._n_classes)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """scikit-learn's one-vs-one decision values ``(n, n_pairs)``."""
        assert self._kernel is not None
        return self.solution.pair_decisions(np.asarray(X, dtype=np.float64), self._kernel)

    def _transform(self, dataset):
        solution, kernel, n_classes = self.solution, self._kernel, self._n_classes

        def predict(X):
            return solution.predict_all(np.asarray(X, dtype=np.float64), kernel, n_classes)

        return add_prediction_columns(dataset, predict, self.getFeaturesCol(), self.getPredictionCol(),
                                      self.getRawPredictionCol(), "")

    def _get_state(self) -> tuple[dict[str, np.ndarray], dict]:
        s = self.solution
        assert self._kernel is not None
        arrays = {name: getattr(s, name) for name in _SOLUTION_ARRAYS}
        k = self._kernel
        extra = {"objective": s.objective, "kernel": k.kernel, "gamma": k.gamma, "degree": k.degree,
                 "coef0": k.coef0, "n_classes": self._n_classes, "n_features": self._n_features,
                 "summary": self._summary.asDict() if self._summary else None}
        return arrays, extra

    @classmethod
    def _from_state(cls, arrays: dict[str, np.ndarray], extra: dict) -> CascadeSVCModel:
        sol = SVCSolution(**{name: arrays[name] for name in _SOLUTION_ARRAYS}, objective=float(extra["objective"]))
        kernel = KernelSpec(extra["kernel"], float(extra["gamma"]), int(extra["degree"]), float(extra["coef0"]))
        summary = CascadeSVCTrainingSummary.fromDict(extra["summary"]) if extra.get("summary") else None
        return cls(sol, kernel, int(extra["n_classes"]), int(extra["n_features"]), summary)
