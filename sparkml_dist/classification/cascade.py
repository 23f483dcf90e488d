"""Cascade SVM and MRSMO behind :class:`~sparkml_dist.classification.cascade_svc.CascadeSVC` (DPSVM:
:mod:`~sparkml_dist.classification.dpsvm`), written once against the engine's data interface
(:mod:`sparkml_dist.engine`): the same loop runs on the driver over resident blocks (MapReduce) and on every rank of
one barrier stage (BSP), and both give the same model for every partitions/slots combination.

Each partition is a node holding float64 rows with global row ids (partition order, then row order); nodes train
locally and exchange only support vectors (with their dual variables). Multi-class problems are
solved one-vs-one, so a node passes on the union of the SVs of all its pairwise problems -- a superset of what each
pair needs, which keeps every pair's optimum intact.

``cascade`` (Graf, Cosatto, Bottou, Durdanovic, Vapnik, NIPS 2004):

* layer 1: every partition cuts its rows into leaves of at most ``leaf_size`` rows and trains libsvm on each (the
  cascade's whole point: libsvm's cost grows super-linearly with rows, so many small problems are cheap);
* merges: SV sets are merged pairwise up a binary tree -- first inside each partition, then across partitions
  (``data.merge_tree``: the merges of a layer in parallel, as Spark tasks or spread over the ranks). A merge
  **starts from its children's alphas** (Graf et al.'s observation that the union of the children's solutions is a
  good feasible start), solved by our warm-startable SMO
  on the in-memory kernel matrix (:mod:`~sparkml_dist.classification.smo`); libsvm (cold) when the matrix would
  exceed ``kernel_memory``;
* feedback: the top SVM is sent back to every partition, which checks its rows against the top's KKT conditions in
  one vectorised pass. A partition retrained on its rows plus the top SVs, starting from the top's solution, could
  only move its *violators*; so the violators of all partitions join the top SVs and the top is re-solved, warm from
  its previous alphas. The top objective never decreases (the previous optimum stays feasible) and strictly grows
  while violators exist; the loop stops when no row violates the KKT conditions (libsvm's tolerance: the top SVM is
  then the optimum of the whole problem), when the objective changes by less than ``tol`` (relative), or after
  ``max_passes`` passes.

``mrsmo`` (Alham et al. 2011): the same layer 1 and merges, one pass, no feedback.

Per-partition scan state (each row's decision values under the last scanned solution, so a rescan only adds the
change) is a cache of the current top solution: a scan that finds no state for the previous pass -- its executor was
lost -- computes the values in full from the solution the driver sends, so the scan is the same up to rounding.

Partitions with no rows are skipped. A node whose rows hold a single class cannot train; it passes all its rows on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from sparkml_dist.classification.kernel_svm import (
    KernelSpec,
    SVCSolution,
    SVSet,
    compute_gamma,
    libsvm_sign,
    pair_index,
    train_local,
    train_warm,
)
from sparkml_dist.ml.errors import FitError
from sparkml_dist.runtime.logs import ProgressReporter

logger = logging.getLogger(__name__)


@dataclass
class SolverConfig:
    """What every node needs to train.

    ``kernel_memory`` (bytes) caps the kernel matrix a warm-started merge may build (0: libsvm everywhere);
    ``leaf_size`` is the most rows a layer-1 libsvm problem gets (0: a whole partition).
    """

    kernel: KernelSpec
    C: float
    cache_size: float = 500.0
    max_iter: int = -1
    n_classes: int = 2
    kernel_memory: float = 4096 * 2**20
    leaf_size: int = 5000


@dataclass
class CascadeResult:
    """The final SVM and how the distributed training went."""

    solution: SVCSolution
    passes: int
    converged: bool
    history: list[dict] = field(default_factory=list)


def _block_rows(block, offsets: dict[int, int]) -> SVSet:
    start = offsets[block.partition]
    return SVSet(np.arange(start, start + block.n_rows, dtype=np.int64), np.asarray(block.X, dtype=np.float64),
                 np.asarray(block.y).astype(np.int64))


def margins(rows: SVSet, sol: SVCSolution, dec: np.ndarray) -> np.ndarray:
    """Smallest functional margin ``y f(x)`` of every row over its one-vs-one problems (KKT: >= 1 off the SVs), from
    the rows' decision values ``dec`` ``(n, n_pairs)``."""
    classes = sol.classes
    margin = np.full(len(rows), np.inf)
    for k, (i, j, _, _, _) in enumerate(sol.pair_coefficients()):
        # two classes: a positive decision means the second class; one-vs-one: the first of the pair
        pos, neg = (classes[j], classes[i]) if len(classes) == 2 else (classes[i], classes[j])
        for label, sign in ((pos, 1.0), (neg, -1.0)):
            mask = rows.y == label
            margin[mask] = np.minimum(margin[mask], sign * dec[mask, k])
    return margin


def _coefficients(sol: SVCSolution) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ids, X, coefT)`` of a solution, ids sorted (:meth:`SVCSolution.coef_matrix` in id order)."""
    order = np.argsort(sol.support_ids, kind="stable")
    return sol.support_ids[order], sol.support_vectors[order], sol.coef_matrix()[:, order]


def _scan_delta(old: tuple, new: tuple) -> tuple[np.ndarray, np.ndarray]:
    """The rows and coefficient changes that turn the decision values of solution ``old`` into those of ``new``
    (bias aside): on noisy data most SVs stay at ``C`` between passes, so a rescan costs a fraction of a full one."""
    ids = np.union1d(old[0], new[0])
    X = np.zeros((len(ids), old[1].shape[1]))
    coef = np.zeros((old[2].shape[0], len(ids)))
    for sign, (oid, oX, oc) in ((-1.0, old), (1.0, new)):
        pos = np.searchsorted(ids, oid)
        X[pos] = oX
        coef[:, pos] += sign * oc
    changed = np.flatnonzero(np.abs(coef).max(axis=0) > 1e-12)
    return X[changed], coef[:, changed]


def _solve(rows: SVSet, cfg: SolverConfig, warm: bool, shrink: bool = False, keep_within: float | None = None,
           objective: bool = False) -> tuple[SVSet, SVCSolution | None]:
    """One node's SVM: our warm-started SMO when asked (its kernel matrix within ``kernel_memory``, or shrunk to
    fit), else libsvm from zero (``objective``: compute its dual objective too; SMO always has it)."""
    if warm and cfg.kernel_memory > 0:
        solved = train_warm(rows, cfg.kernel, cfg.C, cfg.n_classes, cfg.max_iter, kernel_memory=cfg.kernel_memory,
                            shrink=shrink, keep_within=keep_within)
        if solved is not None:
            return solved
        logger.info("svm: a %d-row merge does not fit kernelMemoryMB=%.0f even shrunk; libsvm from zero",
                    len(rows), cfg.kernel_memory / 2**20)
    return train_local(rows, cfg.kernel, cfg.C, cfg.cache_size, cfg.max_iter, objective=objective,
                       n_classes=cfg.n_classes)


def _merge_level(sets: list[SVSet], cfg: SolverConfig) -> list[SVSet]:
    """Pairwise merges of one cascade layer, in order (an odd one out moves up unchanged)."""
    out = []
    for k in range(0, len(sets), 2):
        if k + 1 == len(sets):
            out.append(sets[k])
        else:
            out.append(_solve(sets[k].union(sets[k + 1]), cfg, warm=True)[0])
    return out


def _layer1(rows: SVSet, cfg: SolverConfig) -> tuple[SVSet, int, int]:
    """Layer 1 on one node's rows: libsvm on leaves of at most ``leaf_size`` rows, then the node's own merges up to
    one SV set. Returns ``(SVSet, leaves, leaf SVs)``."""
    n_leaves = max(1, -(-len(rows) // cfg.leaf_size)) if cfg.leaf_size > 0 else 1
    level = [_solve(rows.take(idx), cfg, warm=False)[0] for idx in np.array_split(np.arange(len(rows)), n_leaves)]
    leaf_sv = int(sum(len(s) for s in level))
    while len(level) > 1:
        level = _merge_level(level, cfg)
    return level[0], n_leaves, leaf_sv


def _train_merge(sets: list[SVSet], cfg: SolverConfig, feedback: bool = False):
    """A merge node (or, ``feedback``, the top's re-solve: shrunk, keeping the near-margin non-SVs as its working
    set for the next pass)."""
    rows = sets[0].union(*sets[1:])
    start = time.perf_counter()
    svs, sol = _solve(rows, cfg, warm=True, shrink=feedback, keep_within=MARGIN_BUFFER if feedback else None,
                      objective=True)
    return svs, sol, len(rows), time.perf_counter() - start


#: a row outside the top SVM's problem violates its KKT conditions when its margin is below ``1 - KKT_SLACK``: the
#: solver stops once its own KKT gap is below eps = 1e-3 (libsvm's rule), so rows within 2 eps of the margin are
#: as optimal as the solver's own rows; counting them would make borderline rows flicker in and out
KKT_SLACK = 2e-3

#: besides its KKT violators, a partition sends up as many rows again from those with margin below
#: ``1 + MARGIN_BUFFER`` under the top SVM (nearest first): the re-solved top moves its margin, and rows just outside
#: it are the next pass's violators (without them the objective creeps up by a few violators per pass)
MARGIN_BUFFER = 0.5


def scan_rows(rows: SVSet, sol: SVCSolution, kernel: KernelSpec, buffer: float, working: np.ndarray,
              stored: np.ndarray | None, delta: tuple | None, n_classes: int):
    """A partition's feedback scan: its rows outside the top SVM's working set that violate the top's KKT
    conditions (margin below ``1 - KKT_SLACK``), plus as many near-margin rows (margin below ``1 + buffer``).

    ``stored`` holds the rows' decision values (bias aside) from the previous scan, NaN where never computed; with
    ``delta`` = (rows, coefficient changes) from that scan's solution to ``sol`` they are updated instead of
    recomputed. Returns ``(SVSet of rows to add, with their scores; violators; rows computed in full; stored)``.
    """
    from sparkml_dist.classification.smo import kernel_products

    n_pairs = len(sol.intercept)
    if delta is None or stored is None or stored.shape != (len(rows), n_pairs):
        stored = np.full((len(rows), n_pairs), np.nan)
    else:
        known = ~np.isnan(stored[:, 0])
        if known.any() and len(delta[0]):
            stored[known] += kernel_products(rows.X[known], delta[0], delta[1], kernel)
    outside = ~np.isin(rows.ids, working)
    todo = outside & np.isnan(stored[:, 0])
    if todo.any():
        _, X, coefT = _coefficients(sol)
        stored[todo] = kernel_products(rows.X[todo], X, coefT, kernel)
    rows, raw = rows.take(outside), stored[outside]
    if len(rows) == 0:
        return rows, 0, int(todo.sum()), stored
    m = margins(rows, sol, raw + sol.intercept)
    n_violators = int((m < 1.0 - KKT_SLACK).sum())
    # the violators and as many near-margin rows again (the smallest margins first)
    near = np.flatnonzero(m < 1.0 + buffer)
    near = np.sort(near[np.argsort(m[near], kind="stable")[:2 * n_violators]])
    out = rows.take(near)
    # their decision values (bias aside) in the global pair layout and libsvm's sign (SVSet.score): the re-solve's
    # gradient for free
    out.score = np.full((len(near), n_classes * (n_classes - 1) // 2), np.nan)
    flip = libsvm_sign(len(sol.classes))
    for k, (i, j, _, _, _) in enumerate(sol.pair_coefficients()):
        out.score[:, pair_index(int(sol.classes[i]), int(sol.classes[j]), n_classes)] = flip * raw[near, k]
    return out, n_violators, int(todo.sum()), stored


def _same_ids(a: SVSet, b: SVSet) -> bool:
    return np.array_equal(np.sort(a.ids), np.sort(b.ids))


def _require_solution(sol: SVCSolution | None) -> SVCSolution:
    if sol is None:
        raise FitError("the merged support-vector set holds a single class; no SVM can be trained")
    return sol


# ---------------------------------------------------------------------------------------------------------------
# The engine body: gamma, global row ids, then the chosen mode
# ---------------------------------------------------------------------------------------------------------------
def feature_moments(X: np.ndarray) -> tuple[float, float, float]:
    """``(count, mean, M2)`` of all entries of a feature matrix (for ``gamma='scale'``; merge with
    :func:`merge_moments`)."""
    if X.size == 0:
        return 0.0, 0.0, 0.0
    X = np.asarray(X, dtype=np.float64)
    mean = float(X.mean())
    return float(X.size), mean, float(((X - mean) ** 2).sum())


def merge_moments(a, b):
    """Chan et al.'s parallel variance: no cancellation from sum-of-squares."""
    na, ma, sa = a
    nb, mb, sb = b
    n = na + nb
    if n == 0:
        return a
    delta = mb - ma
    return n, ma + delta * nb / n, sa + sb + delta * delta * na * nb / n


def _moments(block):
    return feature_moments(block.X) if block.n_rows else (0.0, 0.0, 0.0)


def _row_count(block) -> tuple[int, int]:
    return block.partition, int(block.n_rows)


def fit_svm(data, mode: str, kernel_args: dict, solver_args: dict, max_passes: int, tol: float,
            topology: str) -> tuple[CascadeResult, KernelSpec, int]:
    """The engine body of :class:`~sparkml_dist.classification.cascade_svc.CascadeSVC`: resolve ``gamma`` over all
    rows, number the rows globally, run ``mode``. Returns ``(result, kernel, n_classes)``."""
    from sparkml_dist.classification.dpsvm import fit_dpsvm

    n_classes = data.num_classes
    variance = 0.0
    if kernel_args["gamma"] == "scale":
        n, _, m2 = data.reduce(_moments, op=merge_moments)
        variance = m2 / n if n else 0.0
    kernel = KernelSpec(kernel_args["kernel"], compute_gamma(kernel_args["gamma"], data.n_features, variance),
                        kernel_args["degree"], kernel_args["coef0"])
    cfg = SolverConfig(kernel, n_classes=n_classes, **solver_args)
    # global row ids: partition p's rows start after all rows of the partitions before it
    counts = data.gather(_row_count)
    offsets = {p: int(sum(n for _, n in counts[:i])) for i, (p, _) in enumerate(counts)}
    if mode == "dpsvm":
        result = fit_dpsvm(data, offsets, [p for p, n in counts if n > 0], cfg, max_passes, topology, tol)
    else:
        result = fit_cascade(data, offsets, cfg, max_passes, tol, feedback=mode == "cascade")
    return result, kernel, n_classes


# ---------------------------------------------------------------------------------------------------------------
# Cascade / MRSMO
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Node:
    """A node of the merge tree: its SV set, its solution (None for a partition's own set) and what it took."""

    svs: SVSet
    sol: SVCSolution | None
    leaves: int
    leaf_sv: int
    partition_sv: int
    merge_rows: int = 0
    seconds: float = 0.0


def _leaf(block, offsets: dict[int, int], cfg: SolverConfig) -> Node | None:
    """:func:`_layer1` on one partition (None for an empty one)."""
    if block.n_rows == 0:
        return None
    start = time.perf_counter()
    svs, n_leaves, leaf_sv = _layer1(_block_rows(block, offsets), cfg)
    return Node(svs, None, n_leaves, leaf_sv, len(svs), seconds=time.perf_counter() - start)


def _merge(a: Node | None, b: Node | None, offsets: dict[int, int], cfg: SolverConfig) -> Node | None:
    """A merge of the tree: warm from both children's alphas (an empty partition's partner moves up unchanged;
    ``offsets`` is the leaves' argument, passed to every merge by ``data.merge_tree``)."""
    if a is None or b is None:
        return a if b is None else b
    svs, sol, n, seconds = _train_merge([a.svs, b.svs], cfg)
    return Node(svs, sol, a.leaves + b.leaves, a.leaf_sv + b.leaf_sv, a.partition_sv + b.partition_sv,
                a.merge_rows + b.merge_rows + n, max(a.seconds, b.seconds) + seconds)


def _violators(block, offsets: dict[int, int], sol: SVCSolution, kernel: KernelSpec, buffer: float,
               working: np.ndarray, scan: int, delta: tuple | None, n_classes: int):
    """:func:`scan_rows` on one partition, its decision values kept beside the block (``svm_scan_<scan>``; missing
    -- executor lost -- they are recomputed in full from ``sol``): ``(SVSet, violators, rows computed, seconds)``."""
    if block.n_rows == 0:
        return None
    start = time.perf_counter()
    rows = _block_rows(block, offsets)
    # the scan number is in the state's name, so a retried or speculative task never pairs values with a wrong delta
    stored = block.load_state(f"svm_scan_{scan - 1}")
    out, n_violators, computed, stored = scan_rows(rows, sol, kernel, buffer, working, stored, delta, n_classes)
    block.save_state(f"svm_scan_{scan}", stored)
    block.drop_state(f"svm_scan_{scan - 2}")  # scan - 1 stays for a retried task of this scan
    return out, n_violators, computed, time.perf_counter() - start


def fit_cascade(data, offsets: dict[int, int], cfg: SolverConfig, max_passes: int, tol: float,
                feedback: bool = True) -> CascadeResult:
    """Cascade SVM; ``feedback=False`` is MRSMO's single pass."""
    passes = max_passes if feedback else 1
    progress = ProgressReporter("cascade-svm" if feedback else "mrsmo", total=passes, rows=data.num_rows,
                                logger=logger)
    t0 = time.perf_counter()
    root = data.merge_tree(_leaf, _merge, offsets, cfg)
    merge_rows = root.merge_rows
    if root.sol is None:  # one non-empty partition: the top is its own set, solved once
        svs, sol, n, _ = data.on_root(_train_merge, [root.svs], cfg)
        root = Node(svs, sol, root.leaves, root.leaf_sv, root.partition_sv, merge_rows + n, root.seconds)
    top, sol = root.svs, _require_solution(root.sol)
    progress.step(objective=sol.objective, relative_change=float("inf"), n_sv=len(sol.support_ids), violators=-1,
                  leaves=root.leaves, leaf_sv=root.leaf_sv, partition_sv=root.partition_sv,
                  merge_rows=int(root.merge_rows), tree_seconds=time.perf_counter() - t0)
    converged = not feedback  # MRSMO is a single pass by definition
    scanned = None  # the solution the partitions' stored decision values belong to
    for p in range(1, passes):
        t0 = time.perf_counter()
        now = _coefficients(sol)
        delta = None
        if scanned is not None and scanned[2].shape[0] == now[2].shape[0]:
            delta = _scan_delta(scanned, now)
        found = [r for r in data.gather(_violators, offsets, sol, cfg.kernel, MARGIN_BUFFER, top.ids, p, delta,
                                        cfg.n_classes) if r is not None]
        scanned = now
        n_violators = int(sum(r[1] for r in found))
        t1 = time.perf_counter()
        logger.info("cascade: scan %d: %d KKT violators (%d rows computed in full, %s changed SVs) in %.2fs",
                    p, n_violators, sum(r[2] for r in found), "all" if delta is None else len(delta[0]), t1 - t0)
        if n_violators == 0:
            # no row anywhere violates the KKT conditions of the top SVM: it is the optimum of the whole problem
            logger.info("cascade: pass %d finds no KKT violators; converged", p + 1)
            converged = True
            break
        # warm from the previous optimum: its deep bounded SVs are held at C (shrinking), SMO moves the rest;
        # solved once (driver, or rank 0 and broadcast)
        new_top, new_sol, n, _ = data.on_root(_train_merge, [top] + [r[0] for r in found], cfg, True)
        new_sol = _require_solution(new_sol)
        change = abs(new_sol.objective - sol.objective) / max(abs(new_sol.objective), 1e-300)
        top, sol = new_top, new_sol
        progress.step(objective=sol.objective, relative_change=change, n_sv=len(sol.support_ids),
                      violators=n_violators, added=int(sum(len(r[0]) for r in found)), scan_seconds=t1 - t0,
                      merge_rows=n, merge_seconds=time.perf_counter() - t1)
        if change < tol:
            converged = True
            break
    return CascadeResult(sol, len(progress.history), converged, progress.history)
