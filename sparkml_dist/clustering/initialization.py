"""Centre initialisation over distributed data: ``random``, exact ``k-means++`` and MLlib's ``k-means||``.

All three are written against the engine interface of :mod:`sparkml_dist.clustering.engines` (``data.sum`` /
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
import os
import uuid

import numpy as np

from sparkml_dist.clustering import kernels

logger = logging.getLogger(__name__)

INIT_MODES = ("k-means||", "k-means++", "random")
#: local Lloyd iterations on the weighted k-means|| candidates (MLlib's LocalKMeans uses 30)
LOCAL_ITERATIONS = 30


# --- per-partition functions (module level so cloudpickle ships them by reference) ---------------------------------
def _n_rows(block) -> tuple[int, int]:
    return block.partition, block.n_rows


def _take_rows(block, plan: dict) -> tuple[int, np.ndarray, np.ndarray]:
    local = np.asarray(plan.get(block.partition, []), dtype=np.int64)
    rows = np.asarray(block.X[np.sort(local)], dtype=np.float64) if len(local) else np.zeros((0, 0))
    return block.partition, np.sort(local), rows


def _forget(block, name: str) -> None:
    """Drop a state version nobody reads any more (in memory and its file; see :func:`_update_cost`)."""
    block._state.pop(name, None)
    if block.path:
        try:
            os.remove(os.path.join(block.path, f"state_{name}.npy"))
        except FileNotFoundError:
            pass


def _update_cost(block, new: np.ndarray | None, cosine: bool, tag: str, step: int) -> np.ndarray:
    """Per-row ``min`` distance to the centres seen so far, kept as block state; ``new=None`` starts afresh.

    Every step writes a *new* state name (``tag`` is unique per initialisation call): a partition's tasks may run in
    different Python workers, and a worker's in-memory copy of a mutable state could be stale, while a write-once
    version is always right. Versions two steps old are deleted (the previous one stays for a retried task).
    """
    if new is None:
        cost = np.full(block.n_rows, np.inf)
    else:
        cost = block.load_state(f"{tag}_{step - 1}")
        cost = np.full(block.n_rows, np.inf) if cost is None else np.array(cost, dtype=np.float64)
        if block.n_rows:
            C = kernels.unit_rows(new) if cosine else new
            xx = kernels.block_sq_norms(block)
            chunk = kernels.chunk_rows(len(C))
            for lo in range(0, block.n_rows, chunk):
                d = kernels.distances(block.X[lo:lo + chunk], xx[lo:lo + chunk], C, cosine).min(axis=1)
                np.minimum(cost[lo:lo + chunk], np.maximum(d, 0.0), out=cost[lo:lo + chunk])
    block.save_state(f"{tag}_{step}", cost)
    _forget(block, f"{tag}_{step - 2}")
    return cost


def _propose(block, new: np.ndarray | None, cosine: bool, seed: int, tag: str,
             step: int) -> tuple[int, float, np.ndarray | None]:
    """Update the costs with ``new`` and propose one local row with probability proportional to ``w * cost``
    (``w`` alone when ``new`` is None). The driver then keeps partition p's proposal with probability
    ``mass_p / total``, which draws exactly from ``w * cost / total`` over all rows in one pass."""
    cost = _update_cost(block, new, cosine, tag, step)
    if block.n_rows == 0:
        return block.partition, 0.0, None
    mass = block.weights.astype(np.float64) if new is None else block.weights * cost
    total = float(mass.sum())
    if total <= 0:
        return block.partition, 0.0, None
    rng = np.random.default_rng([seed, step, block.partition])
    idx = int(np.searchsorted(np.cumsum(mass), rng.random() * total, side="right"))
    idx = min(idx, block.n_rows - 1)
    return block.partition, total, np.asarray(block.X[idx], dtype=np.float64)


def _cost_sum(block, new: np.ndarray, cosine: bool, tag: str, step: int) -> float:
    cost = _update_cost(block, new, cosine, tag, step)
    return float(block.weights @ cost) if block.n_rows else 0.0


def _oversample(block, factor: float, seed: int, tag: str, step: int) -> np.ndarray:
    """k-means|| sampling: keep each row with probability ``min(1, factor * w * cost)``."""
    if block.n_rows == 0:
        return np.zeros((0, 0))
    cost = block.load_state(f"{tag}_{step}")
    rng = np.random.default_rng([seed, 1000 + step, block.partition])
    keep = rng.random(block.n_rows) < factor * block.weights * cost
    return np.asarray(block.X[np.flatnonzero(keep)], dtype=np.float64)


def _candidate_weights(block, cands: np.ndarray, cosine: bool) -> np.ndarray:
    """Weight of the rows closest to each candidate (MLlib weights candidates before the local k-means++)."""
    if block.n_rows == 0:
        return np.zeros(len(cands))
    counts, _ = kernels.cost_partial(block, kernels.unit_rows(cands) if cosine else cands, cosine)
    return counts


def _new_tag() -> str:
    return f"init_cost_{uuid.uuid4().hex[:10]}"


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
    for g, p in zip(chosen.tolist(), part_of.tolist()):
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
    tag = _new_tag()
    first = _pick(data.gather(_propose, None, cosine, seed, tag, 0), rng)
    centers = [first]
    while len(centers) < k:
        nxt = _pick(data.gather(_propose, centers[-1][None, :], cosine, seed, tag, len(centers)), rng)
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
    tag = _new_tag()
    first = _pick(data.gather(_propose, None, cosine, seed, tag, 0), rng)
    found = [first[None, :]]
    new = found[0]
    for step in range(1, steps + 1):
        total = data.sum(_cost_sum, new, cosine, tag, step)
        if total <= 0:
            break
        sampled = [s for s in data.gather(_oversample, 2.0 * k / total, seed, tag, step) if len(s)]
        if not sampled:
            continue
        new = np.vstack(sampled)
        found.append(new)
    cands = np.unique(np.vstack(found), axis=0)
    weights = data.sum(_candidate_weights, cands, cosine)
    return cands, weights


def centers_from_candidates(cands: np.ndarray, weights: np.ndarray, k: int, seed: int,
                            cosine: bool) -> np.ndarray:
    """Weighted local k-means++ plus :data:`LOCAL_ITERATIONS` local Lloyd steps (MLlib's ``LocalKMeans``);
    the candidates themselves when there are at most ``k``."""
    if len(cands) <= k:
        return cands.copy()
    keep = weights > 0
    if keep.sum() >= k:  # candidates nobody is closest to add nothing to the weighted problem
        cands, weights = cands[keep], weights[keep]
    rng = np.random.default_rng([seed, k, 17])
    init = kernels.kmeanspp_local(cands, weights, k, rng, cosine)
    return kernels.lloyd_local(cands, weights, init, LOCAL_ITERATIONS, cosine)


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
