"""Distributed kernel-SVM trainers behind :class:`~sparkml_dist.classification.cascade_svc.CascadeSVC`.

Each partition is a node holding resident float64 rows (:func:`sparkml_dist.data.blocks.to_blocks`) with global row
ids; nodes train locally and exchange only support vectors (with their dual variables). Multi-class problems are
solved one-vs-one, so a node passes on the union of the SVs of all its pairwise problems -- a superset of what each
pair needs, which keeps every pair's optimum intact.

``cascade`` (Graf, Cosatto, Bottou, Durdanovic, Vapnik, NIPS 2004):

* layer 1: every partition cuts its rows into leaves of at most ``leaf_size`` rows and trains libsvm on each (the
  cascade's whole point: libsvm's cost grows super-linearly with rows, so many small problems are cheap);
* merges: SV sets are merged pairwise up a binary tree -- first inside each partition, then across partitions, the
  merges of a layer in parallel as Spark tasks. A merge **starts from its children's alphas** (Graf et al.'s
  observation that the union of the children's solutions is a good feasible start), solved by our warm-startable SMO
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

``dpsvm`` (Lu, Roychowdhury, Vandenberghe 2008): every round each node trains on its own rows plus the SVs its
in-neighbours (ring: node ``i-1``; complete: all others) found in the previous round (and its own previous SVs,
warm-started from their alphas: :func:`_dp_node`), until no node's SV set changes
(or, since libsvm's tolerance makes borderline vectors flicker, until after one circulation no node's dual objective
moves by more than ``tol`` relative); the final SVM is trained on the union of the nodes' final SV sets.

Partitions with no rows are skipped. A node whose rows hold a single class cannot train; it passes all its rows on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from sparkml_dist.classification.kernel_svm import (KernelSpec, SVCSolution, SVSet, libsvm_sign, pair_index,
                                                    train_local, train_warm)
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


def _train_partition(block, offsets: dict[int, int], cfg: SolverConfig):
    """:func:`_layer1` on one partition: ``(partition, SVSet, rows, leaves, leaf SVs, seconds)``."""
    if block.n_rows == 0:
        return None
    start = time.perf_counter()
    rows = _block_rows(block, offsets)
    svs, n_leaves, leaf_sv = _layer1(rows, cfg)
    return block.partition, svs, len(rows), n_leaves, leaf_sv, time.perf_counter() - start


def _train_merge(sets: list[SVSet], cfg: SolverConfig, feedback: bool = False):
    """A merge node (or, ``feedback``, the top's re-solve: shrunk, keeping the near-margin non-SVs as its working
    set for the next pass)."""
    rows = sets[0].union(*sets[1:])
    start = time.perf_counter()
    svs, sol = _solve(rows, cfg, warm=True, shrink=feedback, keep_within=MARGIN_BUFFER if feedback else None,
                      objective=True)
    return svs, sol, len(rows), time.perf_counter() - start


def _reduce_tree(sc, level: list[SVSet], cfg: SolverConfig) -> tuple[SVSet, SVCSolution, list[int]]:
    """Merge the partitions' SV sets pairwise, layer by layer, each layer's merges as parallel Spark tasks; the top
    SVM (the last merge, or a solve of the only set)."""
    sizes: list[int] = []
    while True:
        groups = [level[i:i + 2] for i in range(0, len(level), 2)]
        results = sc.parallelize(groups, len(groups)).map(lambda g: _train_merge(g, cfg)).collect()
        sizes.extend(r[2] for r in results)
        level = [r[0] for r in results]
        if len(level) == 1:
            return level[0], _require_solution(results[0][1]), sizes


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


def _violators(block, offsets: dict[int, int], sol: SVCSolution, kernel: KernelSpec, buffer: float,
               working: np.ndarray, scan: int, delta: tuple | None, n_classes: int):
    """:func:`scan_rows` on one resident partition, its decision values kept beside the block
    (``state_svm_scan_<scan>``): ``(SVSet, violators, rows computed, seconds)``."""
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


def _same_ids(a: SVSet, b: SVSet) -> bool:
    return np.array_equal(np.sort(a.ids), np.sort(b.ids))


def _require_solution(sol: SVCSolution | None) -> SVCSolution:
    if sol is None:
        raise ValueError("the merged support-vector set holds a single class; no SVM can be trained")
    return sol


def fit_cascade(blocks, offsets: dict[int, int], cfg: SolverConfig, max_passes: int, tol: float,
                feedback: bool = True) -> CascadeResult:
    """Cascade SVM; ``feedback=False`` is MRSMO's single pass."""
    sc = blocks.spark.sparkContext
    passes = max_passes if feedback else 1
    progress = ProgressReporter("cascade-svm" if feedback else "mrsmo", total=passes, rows=blocks.num_rows,
                                logger=logger)
    t0 = time.perf_counter()
    parts = [r for r in blocks.map(_train_partition, offsets, cfg) if r is not None]
    t1 = time.perf_counter()
    top, sol, merge_sizes = _reduce_tree(sc, [r[1] for r in parts], cfg)
    progress.step(objective=sol.objective, relative_change=float("inf"), n_sv=len(sol.support_ids), violators=-1,
                  leaves=int(sum(r[3] for r in parts)), leaf_sv=int(sum(r[4] for r in parts)),
                  partition_sv=int(sum(len(r[1]) for r in parts)), layer1_seconds=t1 - t0,
                  merge_rows=int(sum(merge_sizes)), merge_seconds=time.perf_counter() - t1)
    converged = not feedback  # MRSMO is a single pass by definition
    scanned = None  # the solution the partitions' stored decision values belong to
    for p in range(1, passes):
        t0 = time.perf_counter()
        now = _coefficients(sol)
        delta = None
        if scanned is not None and scanned[2].shape[0] == now[2].shape[0]:
            delta = _scan_delta(scanned, now)
        found = [r for r in blocks.map(_violators, offsets, sol, cfg.kernel, MARGIN_BUFFER, top.ids, p, delta,
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
        rows = top.union(*[r[0] for r in found])
        # warm from the previous optimum: its deep bounded SVs are held at C (shrinking), SMO moves the rest
        new_top, new_sol, n, _ = sc.parallelize([[rows]], 1).map(lambda g: _train_merge(g, cfg, True)).collect()[0]
        new_sol = _require_solution(new_sol)
        change = abs(new_sol.objective - sol.objective) / max(abs(new_sol.objective), 1e-300)
        top, sol = new_top, new_sol
        progress.step(objective=sol.objective, relative_change=change, n_sv=len(sol.support_ids),
                      violators=n_violators, added=int(sum(len(r[0]) for r in found)), scan_seconds=t1 - t0,
                      merge_rows=n,
                      merge_seconds=time.perf_counter() - t1)
        if change < tol:
            converged = True
            break
    return CascadeResult(sol, len(progress.history), converged, progress.history)


# ---------------------------------------------------------------------------------------------------------------
# DPSVM
# ---------------------------------------------------------------------------------------------------------------
def in_neighbours(sites: list[int], topology: str) -> dict[int, list[int]]:
    """Who sends SVs to whom: ring (``i-1 -> i``) or complete (everyone else)."""
    if topology == "complete":
        return {s: [t for t in sites if t != s] for s in sites}
    return {s: [sites[(k - 1) % len(sites)]] for k, s in enumerate(sites)}


def _dp_node(block, offsets: dict[int, int], incoming: dict[int, SVSet], previous: dict[int, SVSet],
             cfg: SolverConfig):
    """One DPSVM node for one round: ``(partition, SVSet, objective, rows trained)``.

    Round 1 trains the node's own rows (leaves + merges, as the cascade's layer 1). Later rounds train its rows, its
    own SVs of the previous round and the SVs from its in-neighbours, **warm from its previous alphas** (an optimum
    of a sub-problem, so its deep bounded SVs are held at ``C`` while SMO moves the rest; checked over all rows
    afterwards): the new rows start at 0, which keeps the start feasible. Keeping its own SVs also makes each
    node's objective non-decreasing from round to round.
    """
    if block.n_rows == 0:
        return None
    rows = _block_rows(block, offsets)
    own = previous.get(block.partition)
    if own is None:
        svs, _, _ = _layer1(rows, cfg)
        return block.partition, svs, float("nan"), len(rows)
    extra = incoming.get(block.partition)
    train = own.union(rows, *([extra] if extra is not None and len(extra) else []))
    svs, sol = _solve(train, cfg, warm=True, shrink=True, objective=True)
    return block.partition, svs, (sol.objective if sol is not None else float("nan")), len(train)


def fit_dpsvm(blocks, offsets: dict[int, int], cfg: SolverConfig, max_passes: int, topology: str,
              tol: float) -> CascadeResult:
    sc = blocks.spark.sparkContext
    sites = [t[0] for t in blocks.tokens if t[3] > 0]
    neighbours = in_neighbours(sites, topology)
    max_rounds = max_passes * max(len(sites), 1) if topology == "ring" else max_passes
    progress = ProgressReporter("dpsvm", total=max_rounds, rows=blocks.num_rows, logger=logger)
    current: dict[int, SVSet] = {}
    objectives: dict[int, float] = {}
    converged = False
    for r in range(max_rounds):
        # the neighbours' SVs travel without their alphas: each node starts from its own solution only
        sent = {t: SVSet(v.ids, v.X, v.y) for t, v in current.items()}
        incoming = {s: SVSet.empty(blocks.n_features).union(*[sent[t] for t in neighbours[s] if t in sent])
                    for s in sites} if current else {}
        results = {res[0]: res for res in blocks.map(_dp_node, offsets, incoming, current, cfg) if res is not None}
        new = {s: results[s][1] for s in sites}
        new_obj = {s: results[s][2] for s in sites}
        changed = [s for s in sites if s not in current or not _same_ids(current[s], new[s])]
        # libsvm's own tolerance lets borderline vectors flicker in and out of a set forever; once the SVs have had
        # time to travel the ring, a round in which no node's objective moves by tol counts as converged too
        stalled = r >= len(sites) and all(
            abs(new_obj[s] - objectives.get(s, np.inf)) <= tol * abs(new_obj[s]) for s in sites)
        progress.step(changed=len(changed), n_sv=int(sum(len(v) for v in new.values())),
                      objective=float(np.nansum(list(new_obj.values()))),
                      rows_trained=int(sum(results[s][3] for s in sites)))
        current, objectives = new, new_obj
        if not changed or stalled:
            converged = True
            break
    if not converged:
        logger.warning("dpsvm: SV sets still changing after %d rounds (raise maxPasses)", max_rounds)
    union = SVSet.empty(blocks.n_features).union(*current.values())
    _, sol, n, _ = sc.parallelize([[union]], 1).map(lambda g: _train_merge(g, cfg)).collect()[0]
    return CascadeResult(_require_solution(sol), len(progress.history), converged, progress.history)
