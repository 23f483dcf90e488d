"""Distributed kernel-SVM trainers behind :class:`~sparkml_dist.classification.svm.CascadeSVC`.

Each partition is a node holding resident float64 rows (:func:`sparkml_dist.data.blocks.to_blocks`) with global row
ids; nodes train libsvm locally (:func:`~sparkml_dist.classification.kernel_svm.train_local`) and exchange only
support vectors. Multi-class problems are solved one-vs-one inside libsvm, so a node passes on the union of the SVs of
all its pairwise problems -- a superset of what each pair needs, which keeps every pair's optimum intact.

``cascade`` (Graf, Cosatto, Bottou, Durdanovic, Vapnik, NIPS 2004): layer 1 trains every partition; SV sets are merged
pairwise up a binary tree (each merge retrains on the union, the pairs of a layer in parallel as Spark tasks) to one
SVM; its SVs are fed back into every partition (and every merge) for another pass, until no row violates the top
SVM's KKT conditions, its dual objective changes by less than ``tol`` (relative), its SV set stops changing, or
``maxPasses`` passes were made. In a feedback pass a partition retrains only on its rows near or inside the top SVM's
margin plus the fed-back SVs (rows far outside the margin are left out), which keeps feedback passes cheap.

``mrsmo`` (Alham et al. 2011): the same cascade, one pass, no feedback.

``dpsvm`` (Lu, Roychowdhury, Vandenberghe 2008): every round each node trains on its own rows plus the SVs its
in-neighbours (ring: node ``i-1``; complete: all others) found in the previous round, until no node's SV set changes
(or, since libsvm's tolerance makes borderline vectors flicker, until after one circulation no node's dual objective
moves by more than ``tol`` relative); the final SVM is trained on the union of the nodes' final SV sets.

Partitions with no rows are skipped. A node whose rows hold a single class cannot train; it passes all its rows on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from sparkml_dist.classification.kernel_svm import KernelSpec, SVCSolution, SVSet, train_local
from sparkml_dist.runtime.logs import ProgressReporter

logger = logging.getLogger(__name__)


@dataclass
class SolverConfig:
    """What every node needs to train: kernel, ``C``, libsvm cache and iteration cap."""

    kernel: KernelSpec
    C: float
    cache_size: float = 500.0
    max_iter: int = -1


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


#: a feedback pass retrains a leaf on its rows with margin below 1 + MARGIN_BUFFER (not only the strict violators):
#: rows just outside the margin are the ones the updated solution pulls in next
MARGIN_BUFFER = 0.5


def margins(rows: SVSet, sol: SVCSolution, kernel: KernelSpec) -> np.ndarray:
    """Smallest functional margin ``y f(x)`` of every row over its one-vs-one problems (KKT: >= 1 off the SVs)."""
    dec = sol.pair_decisions(rows.X, kernel)
    classes = sol.classes
    margin = np.full(len(rows), np.inf)
    for k, (i, j, _, _, _) in enumerate(sol.pair_coefficients()):
        # two classes: a positive decision means the second class; one-vs-one: the first of the pair
        pos, neg = (classes[j], classes[i]) if len(classes) == 2 else (classes[i], classes[j])
        for label, sign in ((pos, 1.0), (neg, -1.0)):
            mask = rows.y == label
            margin[mask] = np.minimum(margin[mask], sign * dec[mask, k])
    return margin


def _train_leaf(block, offsets: dict[int, int], extra: SVSet | None, cfg: SolverConfig,
                top: SVCSolution | None = None):
    """Layer-1 node: local rows (plus the fed-back SVs) -> its SVs.

    In a feedback pass (``top`` given) only the local rows near or inside the previous top SVM's margin join the
    fed-back SVs (rows far outside it do not change the optimum), which makes feedback passes cheap. A node with
    no KKT violator at all passes the fed-back SVs on untrained.
    """
    if block.n_rows == 0:
        return None
    rows = _block_rows(block, offsets)
    start = time.perf_counter()
    n_violators = -1
    if top is not None:
        m = margins(rows, top, cfg.kernel)
        fresh = ~np.isin(rows.ids, extra.ids if extra is not None else np.zeros(0, np.int64))
        n_violators = int((fresh & (m < 1.0 - 1e-3)).sum())  # libsvm's own KKT tolerance
        if n_violators == 0:
            return block.partition, extra, None, 0, time.perf_counter() - start, 0
        keep = fresh & (m < 1.0 + MARGIN_BUFFER)
        rows = SVSet(rows.ids[keep], rows.X[keep], rows.y[keep])
    if extra is not None and len(extra):
        rows = rows.union(extra)
    svs, sol = train_local(rows, cfg.kernel, cfg.C, cfg.cache_size, cfg.max_iter, objective=False)
    return block.partition, svs, sol, len(rows), time.perf_counter() - start, n_violators


def _train_merge(sets: list[SVSet], cfg: SolverConfig, objective: bool = False):
    rows = sets[0].union(*sets[1:])
    start = time.perf_counter()
    svs, sol = train_local(rows, cfg.kernel, cfg.C, cfg.cache_size, cfg.max_iter, objective=objective)
    return svs, sol, len(rows), time.perf_counter() - start


def _reduce_tree(sc, level: list[SVSet], cfg: SolverConfig,
                 feedback: SVSet | None = None) -> tuple[SVSet, SVCSolution | None, list[int]]:
    """Merge SV sets pairwise, layer by layer, each layer's merges as parallel Spark tasks; the top SVM.

    ``feedback`` (the previous pass's top SVs) joins every merge too: a node's SVs may leave out some of them, and
    a merge without them could then fall below the previous pass's objective. With them every node's problem
    contains the previous optimum, so the top objective never decreases and a pass that leaves the top SV set
    unchanged has met the optimum.
    """
    extra = [feedback] if feedback is not None and len(feedback) else []
    sizes = []
    sol = None
    if len(level) == 1:  # a single node: its local SVM is the top (retrain so that the solution exists)
        svs, sol, n, _ = _train_merge(level + extra, cfg, objective=True)
        return svs, sol, [n]
    while len(level) > 1:
        groups = [level[i:i + 2] + extra for i in range(0, len(level), 2)]
        top = len(groups) == 1  # only the top SVM's objective is read (the stopping rule)
        results = sc.parallelize(groups, len(groups)).map(lambda g: _train_merge(g, cfg, top)).collect()
        sizes.extend(r[2] for r in results)
        level = [r[0] for r in results]
        sol = results[-1][1] if top else None
    return level[0], sol, sizes


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
    final = None
    prev_obj = None
    converged = False
    sol = None
    for p in range(passes):
        leaves = [r for r in blocks.map(_train_leaf, offsets, final, cfg, sol) if r is not None]
        if p > 0 and sum(r[5] for r in leaves) == 0:
            # no row anywhere violates the KKT conditions of the top SVM: it is the optimum of the whole problem
            logger.info("cascade: pass %d finds no KKT violators; converged", p + 1)
            converged = True
            break
        leaf_sets = [r[1] for r in leaves]
        top, sol, merge_sizes = _reduce_tree(sc, leaf_sets, cfg, final)
        sol = _require_solution(sol)
        obj = sol.objective
        change = abs(obj - prev_obj) / max(abs(obj), 1e-300) if prev_obj is not None else float("inf")
        same_set = final is not None and _same_ids(final, top)
        progress.step(objective=obj, relative_change=change, n_sv=len(top),
                      violators=int(sum(max(r[5], 0) for r in leaves)) if p > 0 else -1,
                      leaf_sv=int(sum(len(s) for s in leaf_sets)), leaf_rows=int(sum(r[3] for r in leaves)),
                      leaf_seconds=float(max(r[4] for r in leaves)), merge_rows=int(sum(merge_sizes)))
        final = top
        if change < tol or same_set:
            converged = True
            break
        prev_obj = obj
    if not feedback:
        converged = True  # MRSMO is a single pass by definition
    return CascadeResult(sol, len(progress.history), converged, progress.history)


# ---------------------------------------------------------------------------------------------------------------
# DPSVM
# ---------------------------------------------------------------------------------------------------------------
def in_neighbours(sites: list[int], topology: str) -> dict[int, list[int]]:
    """Who sends SVs to whom: ring (``i-1 -> i``) or complete (everyone else)."""
    if topology == "complete":
        return {s: [t for t in sites if t != s] for s in sites}
    return {s: [sites[(k - 1) % len(sites)]] for k, s in enumerate(sites)}


def _dp_node(block, offsets: dict[int, int], incoming: dict[int, SVSet], cfg: SolverConfig):
    if block.n_rows == 0:
        return None
    rows = _block_rows(block, offsets)
    extra = incoming.get(block.partition)
    if extra is not None and len(extra):
        rows = rows.union(extra)
    svs, sol = train_local(rows, cfg.kernel, cfg.C, cfg.cache_size, cfg.max_iter)
    return block.partition, svs, (sol.objective if sol is not None else float("nan")), len(rows)


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
        incoming = {s: SVSet.empty(blocks.n_features).union(*[current[t] for t in neighbours[s] if t in current])
                    for s in sites} if current else {}
        results = {res[0]: res for res in blocks.map(_dp_node, offsets, incoming, cfg) if res is not None}
        new = {s: results[s][1] for s in sites}
        new_obj = {s: results[s][2] for s in sites}
        changed = [s for s in sites if s not in current or not _same_ids(current[s], new[s])]
        # libsvm's own tolerance lets borderline vectors flicker in and out of a set forever; once the SVs have had
        # time to travel the ring, a round in which no node's objective moves by tol counts as converged too
        stalled = r >= len(sites) and all(
            abs(new_obj[s] - objectives.get(s, np.inf)) <= tol * abs(new_obj[s]) for s in sites)
        progress.step(changed=len(changed), n_sv=int(sum(len(v) for v in new.values())),
                      objective=float(np.nansum(list(new_obj.values()))))
        current, objectives = new, new_obj
        if not changed or stalled:
            converged = True
            break
    if not converged:
        logger.warning("dpsvm: SV sets still changing after %d rounds (raise maxPasses)", max_rounds)
    union = SVSet.empty(blocks.n_features).union(*current.values())
    _, sol, n, _ = sc.parallelize([[union]], 1).map(lambda g: _train_merge(g, cfg, True)).collect()[0]
    return CascadeResult(_require_solution(sol), len(progress.history), converged, progress.history)
