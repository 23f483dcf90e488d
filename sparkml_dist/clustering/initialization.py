"""Centre initialisation over distributed data: ``random``, exact ``k-means++`` and MLlib's ``k-means||``.

All three are written against the data interface of :mod:`sparkml_dist.engine` (``data.sum`` /
``data.gather``), so they run unchanged on the driver (MapReduce engine) and on every rank of a barrier stage (BSP
engine). Random draws that decide something globally are made from generators seeded identically everywhere; draws
inside a partition use ``default_rng([seed, step, partition])``, so a given ``(seed, partitioning)`` always gives the
same centres on either engine.

Fewer than ``k`` distinct points
    ``k-means||`` returns the distinct candidates when there are at most ``k`` of them, and ``k-means++`` stops when
    every remaining point coincides with a chosen centre: the model then has *fewer than k* centres, exactly like
    MLlib (SPARK-3261), and a warning is logged. ``random`` draws ``k`` distinct *rows*; if some of them are equal,
    the duplicates' clusters stay empty and keep their centre (MLlib's behaviour).
"""

from __future__ import annotations

import logging
import uuid

import numpy as np

from sparkml_dist.clustering import kernels
from sparkml_dist.engine.state import RebuildableState

logger = logging.getLogger(__name__)

INIT_MODES = ("k-means||", "k-means++", "random")
#: local Lloyd iterations on the weighted k-means|| candidates (MLlib's LocalKMeans uses 30)
LOCAL_ITERATIONS = 30
#: restarts of the local reclustering of the k-means|| candidates (the best weighted cost is kept)
LOCAL_RESTARTS = 10


# --- per-partition functions (module level so cloudpickle ships them by reference) ---------------------------------
def _n_rows(block) -> tuple[int, int]:
    return block.partition, block.n_rows


def _take_rows(block, plan: dict) -> tuple[int, np.ndarray, np.ndarray]:
    local = np.asarray(plan.get(block.partition, []), dtype=np.int64)
    rows = np.asarray(block.X[np.sort(local)], dtype=np.float64) if len(local) else np.zeros((0, 0))
    return block.partition, np.sort(local), rows


def _no_cost(block) -> np.ndarray:
    """Version 0 of the cost state: no centre seen yet."""
    return np.full(block.n_rows, np.inf)


def _min_cost(block, cost: np.ndarray, record: tuple) -> np.ndarray:
    """The next cost version: ``min(cost, distance to the record's new centres)`` per row."""
    new, cosine = record
    if block.n_rows:
        C = kernels.unit_rows(new) if cosine else new
        xx = kernels.block_sq_norms(block)
        chunk = kernels.chunk_rows(len(C))
        for lo in range(0, block.n_rows, chunk):
            d = kernels.distances(block.X[lo:lo + chunk], xx[lo:lo + chunk], C, cosine).min(axis=1)
            np.minimum(cost[lo:lo + chunk], np.maximum(d, 0.0), out=cost[lo:lo + chunk])
    return cost


def cost_state() -> RebuildableState:
    """Per-row ``min`` distance to the centres chosen so far, as a state the driver can always rebuild: its records
    are the centre sets in the order they were chosen (an executor lost mid-seeding costs a replay, not a bias)."""
    return RebuildableState(f"init_cost_{uuid.uuid4().hex[:10]}", _no_cost, _min_cost)


def _propose(block, costs: RebuildableState, seed: int, step: int) -> tuple[int, float, np.ndarray | None]:
    """Propose one local row with probability proportional to ``w * cost`` (``w`` alone before any centre).
    The driver then keeps partition p's proposal with probability ``mass_p / total``, which draws exactly from
    ``w * cost / total`` over all rows in one pass."""
    if block.n_rows == 0:
        return block.partition, 0.0, None
    mass = block.weights.astype(np.float64) if costs.version == 0 else block.weights * costs.get(block)
    total = float(mass.sum())
    if total <= 0:
        return block.partition, 0.0, None
    rng = np.random.default_rng([seed, step, block.partition])
    idx = int(np.searchsorted(np.cumsum(mass), rng.random() * total, side="right"))
    idx = min(idx, block.n_rows - 1)
    return block.partition, total, np.asarray(block.X[idx], dtype=np.float64)


def _cost_sum(block, costs: RebuildableState) -> float:
    return float(block.weights @ costs.get(block)) if block.n_rows else 0.0


def _oversample(block, costs: RebuildableState, factor: float, seed: int, step: int) -> np.ndarray:
    """k-means|| sampling: keep each row with probability ``min(1, factor * w * cost)``."""
    if block.n_rows == 0:
        return np.zeros((0, 0))
    cost = costs.get(block)
    rng = np.random.default_rng([seed, 1000 + step, block.partition])
    keep = rng.random(block.n_rows) < factor * block.weights * cost
    return np.asarray(block.X[np.flatnonzero(keep)], dtype=np.float64)


def _candidate_weights(block, cands: np.ndarray, cosine: bool) -> np.ndarray:
    """Weight of the rows closest to each candidate (MLlib weights candidates before the local k-means++)."""
    if block.n_rows == 0:
        return np.zeros(len(cands))
    counts, _ = kernels.cost_partial(block, kernels.unit_rows(cands) if cosine else cands, cosine)
    return counts


# --- driver-side logic --------------------------------------------------------------------------------------------
def _pick(proposals: list, rng: np.random.Generator) -> np.ndarray | None:
    proposals = sorted(proposals, key=lambda p: p[0])
    mass = np.array([p[1] for p in proposals])
    if mass.sum() <= 0:
        return None
    return proposals[int(rng.choice(len(proposals), p=mass / mass.sum()))][2]


def init_random(data, k: int, seed: int) -> np.ndarray:
    """``k`` distinct rows drawn uniformly (MLlib's ``takeSample(false, k, seed)``)."""
    counts = sorted(data.gather(_n_rows))
    sizes = np.array([c[1] for c in counts])
    rng = np.random.default_rng([seed, 7])
    chosen = rng.choice(int(sizes.sum()), size=k, replace=False)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    part_of = np.searchsorted(offsets, chosen, side="right") - 1
    plan: dict[int, list[int]] = {}
    for g, p in zip(chosen.tolist(), part_of.tolist(), strict=False):
        plan.setdefault(counts[p][0], []).append(g - int(offsets[p]))
    rows: dict[int, np.ndarray] = {}
    for part, local, X in data.gather(_take_rows, plan):
        pos = [j for j, c in enumerate(counts) if c[0] == part][0]
        for i, li in enumerate(local.tolist()):
            rows[int(offsets[pos]) + li] = X[i]
    return np.asarray([rows[g] for g in chosen.tolist()])


def init_kmeanspp(data, k: int, seed: int, cosine: bool) -> np.ndarray:
    """Exact distributed k-means++ (one pass per centre; for small data or small ``k``)."""
    rng = np.random.default_rng([seed, 11])
    costs = cost_state()
    first = _pick(data.gather(_propose, costs, seed, 0), rng)
    centers = [first]
    while len(centers) < k:
        costs = costs.then((centers[-1][None, :], cosine))
        nxt = _pick(data.gather(_propose, costs, seed, len(centers)), rng)
        if nxt is None:  # every row sits on a centre: fewer than k distinct points
            break
        centers.append(nxt)
    return np.asarray(centers)


def parallel_candidates(data, k: int, steps: int, seed: int, cosine: bool) -> tuple[np.ndarray, np.ndarray]:
    """The k-means|| oversampling passes (Bahmani et al. 2012, as MLlib): distinct candidates and their weights.

    Each of ``steps`` rounds updates every row's cost against the newest candidates and keeps a row with probability
    ``2 k w cost / sum(w cost)``; the candidates are then deduplicated and weighted by the rows closest to them.
    """
    rng = np.random.default_rng([seed, 13])
    costs = cost_state()
    first = _pick(data.gather(_propose, costs, seed, 0), rng)
    found = [first[None, :]]
    new = found[0]
    for step in range(1, steps + 1):
        costs = costs.then((new, cosine))
        total = data.sum(_cost_sum, costs)
        if total <= 0:
            break
        sampled = [s for s in data.gather(_oversample, costs, 2.0 * k / total, seed, step) if len(s)]
        if not sampled:
            continue
        new = np.vstack(sampled)
        found.append(new)
    cands = np.unique(np.vstack(found), axis=0)
    weights = data.sum(_candidate_weights, cands, cosine)
    return cands, weights


def centers_from_candidates(cands: np.ndarray, weights: np.ndarray, k: int, seed: int, cosine: bool,
                            restarts: int | None = None, greedy: bool = True) -> np.ndarray:
    """Recluster the weighted k-means|| candidates into ``k`` centres; the candidates themselves when there are at
    most ``k``.

    MLlib (``LocalKMeans.kMeansPlusPlus``) runs one plain weighted k-means++ and 30 local Lloyd steps. Here each of
    :data:`LOCAL_RESTARTS` restarts runs *greedy* weighted k-means++ (``2 + log k`` trials per centre) and
    :data:`LOCAL_ITERATIONS` Lloyd steps, and the restart with the lowest weighted cost on the candidates wins: the
    candidates are few (about ``2 k initSteps``), so this costs milliseconds, and it is what closes the gap to
    MLlib's final cost (measured in the README). ``restarts=1, greedy=False`` is MLlib's procedure.
    """
    if len(cands) <= k:
        return cands.copy()
    keep = weights > 0
    if keep.sum() >= k:  # candidates nobody is closest to add nothing to the weighted problem
        cands, weights = cands[keep], weights[keep]
    rng = np.random.default_rng([seed, k, 17])
    trials = 2 + int(np.log(k)) if greedy else 1
    best, best_cost = None, np.inf
    for _ in range(LOCAL_RESTARTS if restarts is None else restarts):
        init = kernels.kmeanspp_local(cands, weights, k, rng, cosine, n_trials=trials)
        C = kernels.lloyd_local(cands, weights, init, LOCAL_ITERATIONS, cosine)
        cost = kernels.weighted_cost(cands, weights, C, cosine)
        if cost < best_cost:
            best, best_cost = C, cost
    return best


def initial_centers(data, k: int, mode: str, steps: int, seed: int, cosine: bool) -> np.ndarray:
    """Initial centres by ``mode`` (one of :data:`INIT_MODES`); may return fewer than ``k`` (see module docs)."""
    if mode == "random":
        C = init_random(data, k, seed)
    elif mode == "k-means++":
        C = init_kmeanspp(data, k, seed, cosine)
    elif mode == "k-means||":
        cands, weights = parallel_candidates(data, k, steps, seed, cosine)
        C = centers_from_candidates(cands, weights, k, seed, cosine)
    else:
        raise ValueError(f"initMode={mode!r}: expected one of {INIT_MODES}")
    if len(C) < k:
        logger.warning("only %d distinct points for k=%d: the model will have %d centres (as MLlib)",
                       len(C), k, len(C))
    return kernels.unit_rows(C) if cosine else C
