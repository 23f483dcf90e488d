"""DFCM: distributed fuzzy c-means with a distributed Xie-Beni index, written once for every engine.

Each iteration is one pass: every partition returns, for the current prototypes ``V`` (``c x d``),
``N_i = sum_j w_j u_ij^m x_j``, ``D_i = sum_j w_j u_ij^m`` and ``J_m = sum_ij w_j u_ij^m ||x_j - v_i||^2``; the engine
adds them and ``v_i = N_i / D_i``. Because memberships of a row depend only on that row and ``V``, this is an exact
decomposition of centralised FCM (Vendramin et al. 2011, algorithm DFCM).

A ``kRange`` sweep fits every ``k`` *together*: one pass computes the partial sums of all centre sets still
iterating, so sweeping 2..10 costs as many passes as the slowest ``k``, not nine times as many. After convergence one
more pass gives ``J_m`` at the final prototypes, and the Xie-Beni index
``XB = J_m / (N * min_{i != k} ||v_i - v_k||^2)`` needs nothing else (``N``: total row weight).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from sparkml_dist.clustering import kernels
from sparkml_dist.clustering.initialization import centers_from_candidates, initial_centers, parallel_candidates
from sparkml_dist.runtime.logs import ProgressReporter

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class FuzzyConfig:
    """What one (possibly multi-k) FCM fit needs, independent of the engine."""

    ks: list[int]
    """numbers of clusters to fit (one, or a ``kRange`` sweep)"""
    m: float = 2.0
    """fuzzifier (> 1)"""
    max_iter: int = 100
    """maximum iterations per k"""
    tol: float = 1e-4
    """stop a k when no prototype coordinate moved by ``tol`` or more"""
    init_mode: str = "k-means||"
    """initial prototypes: ``k-means||``, ``k-means++`` or ``random``"""
    init_steps: int = 2
    """k-means|| oversampling rounds"""
    seed: int = 0
    """random seed"""
    initial_centers: np.ndarray | None = None
    """user-supplied prototypes (single k only)"""


@dataclass(kw_only=True)
class FuzzyFit:
    """One fitted k."""

    k: int
    centers: np.ndarray
    objective: float
    """``J_m`` at the final prototypes"""
    xie_beni: float
    num_iter: int
    converged: bool
    cost_history: list[float] = field(default_factory=list)
    fuzzy_sizes: list[float] = field(default_factory=list)
    """``sum_j w_j u_ij^m`` per cluster at the final prototypes"""


@dataclass(kw_only=True)
class FuzzyResult:
    """Every fitted k, the chosen one (smallest Xie-Beni) and the run's costs."""

    fits: list[FuzzyFit]
    best: int
    iteration_seconds: list[float] = field(default_factory=list)
    init_seconds: float = 0.0
    load_seconds: float = 0.0
    bytes_communicated: int = 0
    passes: int = 0

    @property
    def chosen(self) -> FuzzyFit:
        return self.fits[self.best]

    @property
    def xb_curve(self) -> dict[int, float]:
        return {f.k: f.xie_beni for f in self.fits}


def _initial(data, cfg: FuzzyConfig) -> list[np.ndarray]:
    if cfg.initial_centers is not None:
        return [np.array(cfg.initial_centers, dtype=np.float64)]
    if cfg.init_mode == "k-means||":
        # one candidate set, sampled for the largest k, serves every k of the sweep
        cands, weights = parallel_candidates(data, max(cfg.ks), cfg.init_steps, cfg.seed, False)
        return [centers_from_candidates(cands, weights, k, cfg.seed, False) for k in cfg.ks]
    return [initial_centers(data, k, cfg.init_mode, cfg.init_steps, cfg.seed, False) for k in cfg.ks]


def fit_fcm(data, cfg: FuzzyConfig) -> FuzzyResult:
    """Fit FCM for every k of ``cfg.ks`` on ``data`` (any engine) and pick the smallest Xie-Beni."""
    start = time.perf_counter()
    V = _initial(data, cfg)
    init_seconds = time.perf_counter() - start
    n_sets = len(V)
    active = list(range(n_sets))
    history: list[list[float]] = [[] for _ in range(n_sets)]
    iters = [0] * n_sets
    converged = [False] * n_sets
    seconds: list[float] = []
    # in-memory fits (consensus sites and prototypes) are small and many: log their progress only at DEBUG
    progress = ProgressReporter("fuzzy_cmeans", total=cfg.max_iter, rows=data.num_rows, logger=logger,
                                every=1 if data.engine != "local" else cfg.max_iter + 1)
    for it in range(1, cfg.max_iter + 1):
        t0 = time.perf_counter()
        stats = data.sum(kernels.fcm_partial, [V[i] for i in active], cfg.m)
        for i, (num, den, J) in zip(list(active), stats, strict=False):
            new = num / np.maximum(den, np.finfo(np.float64).tiny)[:, None]
            shift = float(np.abs(new - V[i]).max())
            V[i] = new
            history[i].append(float(J))
            iters[i] = it
            if shift < cfg.tol:
                converged[i] = True
                active.remove(i)
        seconds.append(time.perf_counter() - t0)
        progress.step(active=len(active), objective=float(sum(s[2] for s in stats)))
        if not active:
            break
    final = data.sum(kernels.fcm_partial, V, cfg.m)
    total_weight = data.total_weight
    fits = [FuzzyFit(k=len(V[i]), centers=V[i], objective=float(final[i][2]),
                     xie_beni=kernels.xie_beni(final[i][2], total_weight, V[i]), num_iter=iters[i],
                     converged=converged[i], cost_history=history[i], fuzzy_sizes=[float(s) for s in final[i][1]])
            for i in range(n_sets)]
    best = int(np.argmin([f.xie_beni for f in fits]))
    if len(fits) > 1:
        logger.info("Xie-Beni by k: %s -> k=%d",
                    ", ".join(f"{f.k}:{f.xie_beni:.4g}" for f in fits), fits[best].k)
    return FuzzyResult(fits=fits, best=best, iteration_seconds=seconds, init_seconds=init_seconds,
                       bytes_communicated=int(data.bytes_communicated), passes=int(data.passes))
