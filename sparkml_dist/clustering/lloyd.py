"""The k-means training loop (initialisation + Lloyd), written once for both engines.

:func:`fit_kmeans` runs on the driver with :class:`~sparkml_dist.engine.MapReduceData` or on every rank of a barrier
stage with :class:`~sparkml_dist.engine.BarrierData`. Per iteration it makes exactly one pass
over the data: every partition returns ``(k x d sums, k weights, cost)`` for the current centres
(:func:`~sparkml_dist.clustering.kernels.lloyd_partial`), the engine adds them up, and the driver (or every rank)
divides. Semantics follow MLlib:

* convergence when every centre moved by at most ``tol`` (euclidean distance; ``1 - cos`` for cosine);
* an empty cluster keeps its previous centre;
* ``trainingCost`` is the cost of the *last assignment step* (against the centres before the last update), while
  ``inertia`` is one extra pass against the final centres (scikit-learn's ``inertia_``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from sparkml_dist.clustering import kernels
from sparkml_dist.clustering.initialization import initial_centers
from sparkml_dist.data.validation import DataValidationError
from sparkml_dist.runtime.logs import ProgressReporter

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class KMeansConfig:
    """What one k-means fit needs, independent of the engine."""

    k: int
    """requested number of clusters"""
    max_iter: int = 20
    """maximum Lloyd iterations"""
    tol: float = 1e-4
    """convergence threshold on every centre's move"""
    init_mode: str = "k-means||"
    """``k-means||``, ``k-means++`` or ``random``"""
    init_steps: int = 2
    """k-means|| oversampling rounds"""
    seed: int = 0
    """random seed for the initialisation"""
    cosine: bool = False
    """cosine distance instead of squared euclidean"""
    initial_centers: np.ndarray | None = None
    """user-supplied ``k x d`` initial centres (skip initialisation)"""
    featuresCol: str = "features"
    """for error messages"""


@dataclass(kw_only=True)
class KMeansResult:
    """Fitted centres and the training summary's numbers."""

    centers: np.ndarray
    num_iter: int
    training_cost: float
    inertia: float
    cost_history: list[float] = field(default_factory=list)
    iteration_seconds: list[float] = field(default_factory=list)
    init_seconds: float = 0.0
    load_seconds: float = 0.0
    cluster_sizes: list[float] = field(default_factory=list)
    converged: bool = False
    bytes_communicated: int = 0
    passes: int = 0


def check_zero_rows(data, featuresCol: str) -> None:
    """Cosine distance is undefined for zero vectors (MLlib refuses them too)."""
    zeros = int(data.sum(kernels.zero_rows))
    if zeros:
        raise DataValidationError(f"featuresCol={featuresCol!r} has {zeros} zero vectors; cosine distance is "
                                  "undefined for them (drop them or use distanceMeasure='euclidean')")


def fit_kmeans(data, cfg: KMeansConfig) -> KMeansResult:
    """Initialise and run Lloyd's algorithm on ``data`` (any engine)."""
    if cfg.cosine:
        check_zero_rows(data, cfg.featuresCol)
    start = time.perf_counter()
    if cfg.initial_centers is not None:
        C = np.array(cfg.initial_centers, dtype=np.float64)
        C = kernels.unit_rows(C) if cfg.cosine else C
    else:
        C = initial_centers(data, cfg.k, cfg.init_mode, cfg.init_steps, cfg.seed, cfg.cosine)
    init_seconds = time.perf_counter() - start
    # on a BSP rank this logs into the executor's log (silent unless the executor configures logging)
    progress = ProgressReporter("kmeans", total=cfg.max_iter, rows=data.num_rows, logger=logger)
    history: list[float] = []
    seconds: list[float] = []
    converged = False
    it = 0
    cost = float("nan")
    for it in range(1, cfg.max_iter + 1):  # noqa: B007 - `it` (iterations run) is reported
        t0 = time.perf_counter()
        sums, counts, cost = data.sum(kernels.lloyd_partial, C, cfg.cosine)
        new = C.copy()
        nonempty = counts > 0
        new[nonempty] = sums[nonempty] / counts[nonempty, None]  # empty clusters keep their centre (MLlib)
        if cfg.cosine:
            new = kernels.unit_rows(new)
            moved = 1.0 - np.einsum("ij,ij->i", new, C)
            converged = bool(np.all(moved <= cfg.tol))
        else:
            moved = np.einsum("ij,ij->i", new - C, new - C)
            converged = bool(np.all(moved <= cfg.tol * cfg.tol))
        C = new
        history.append(float(cost))
        seconds.append(time.perf_counter() - t0)
        progress.step(cost=float(cost), empty=int((~nonempty).sum()))
        if converged:
            break
    sizes, inertia = data.sum(kernels.cost_partial, C, cfg.cosine)
    return KMeansResult(centers=C, num_iter=it, training_cost=float(cost), inertia=float(inertia),
                        cost_history=history, iteration_seconds=seconds, init_seconds=init_seconds,
                        cluster_sizes=[float(s) for s in sizes], converged=converged,
                        bytes_communicated=int(data.bytes_communicated), passes=int(data.passes))
