"""Per-block numpy kernels shared by every clustering algorithm and both engines.

Everything here works on one partition's :class:`~sparkml_dist.data.blocks.Block` (or on a small in-memory array on
the driver) and returns *fixed-size* partial statistics, so the engines only ever move ``k x d`` numbers, never rows.

Distances are computed by GEMM, ``||x||^2 + ||c||^2 - 2 x.c``, over row chunks: a chunk's ``m x k`` distance matrix
stays in cache and memory stays bounded for large ``k``. Row norms are computed once per block and kept as block
state, so an iteration reads the data exactly once (one GEMM for distances, one sparse one-hot product for the sums).

Cosine distance (MLlib's meaning, ``1 - cos(x, c)``) never normalises the data: with unit-norm centres,
``cos = x.c / ||x||``, and the cluster sums of normalised points are sums of ``x`` weighted by ``w / ||x||``.
"""

from __future__ import annotations

import sys

import numpy as np
import scipy.sparse as sp

#: distance-matrix entries per chunk (rows x centres); 2^20 doubles = 8 MB, fits the last-level cache
_CHUNK_ENTRIES = 1 << 20
#: memberships below this squared distance count as "on the centre" (FCM's 0/0 case)
_TINY = np.finfo(np.float64).tiny


def chunk_rows(k: int) -> int:
    """Rows per chunk for ``k`` centres (at least 256, at most 65536)."""
    return int(min(65536, max(256, _CHUNK_ENTRIES // max(1, k))))


def block_sq_norms(block) -> np.ndarray:
    """``||x||^2`` of every row of ``block``, computed on first use and kept beside the block."""
    cached = block.load_state("sq_norms")
    if cached is not None and len(cached) == block.n_rows:
        return cached
    X = block.X
    out = np.empty(X.shape[0], dtype=np.float64)
    step = 65536
    for lo in range(0, X.shape[0], step):
        Xc = X[lo:lo + step]
        out[lo:lo + step] = np.einsum("ij,ij->i", Xc, Xc)
    block.save_state("sq_norms", out)
    return out


def unit_rows(C: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    norms = np.linalg.norm(C, axis=1, keepdims=True)
    return C / np.where(norms > 0, norms, 1.0)


def _row_min(G: np.ndarray, largest: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Index and value of each row's minimum (maximum) -- the assignment step's hot spot.

    numpy's ``argmin(axis=1)`` walks a ``m x k`` matrix row by row with a per-row call, which costs more than the
    GEMM itself for small ``k``; torch's reduction over the last dimension is vectorised (measured on 65536 x 16:
    numpy 2.9 ms with the gather, torch 1.5 ms). Ties go to the lowest index in both. Torch is used only when the
    process has already imported it (the BSP engine's barrier ranks do): importing it here would cost every Python
    worker 2.5-4 s, which ~1,800 such chunks (117M rows) would take to win back.
    """
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "from_numpy"):
        t = torch.from_numpy(G)
        values, labels = (torch.max if largest else torch.min)(t, dim=1)
        return labels.numpy(), values.numpy()
    labels = np.argmax(G, axis=1) if largest else np.argmin(G, axis=1)
    return labels, np.take_along_axis(G, labels[:, None], axis=1)[:, 0]


def assign(Xc: np.ndarray, xx: np.ndarray, C: np.ndarray, cc: np.ndarray,
           cosine: bool) -> tuple[np.ndarray, np.ndarray]:
    """Closest centre and its distance for every row of a chunk.

    ``xx``: the rows' squared norms; ``cc``: the centres' squared norms (euclidean) -- for cosine ``C`` must be unit
    rows. Returns ``(labels, distance)`` where distance is the squared euclidean distance or ``1 - cos``. Ties go to
    the lowest index, as in MLlib and scikit-learn.
    """
    if cosine:
        labels, best = _row_min(Xc @ C.T, largest=True)
        xn = np.sqrt(xx)
        return labels, 1.0 - best / np.where(xn > 0, xn, 1.0)
    # ||c||^2 - 2 x.c: scaling C by -2 is exact, so this equals -2 (X C^T) + ||c||^2 bit for bit, with one pass less
    G = Xc @ (-2.0 * C).T
    G += cc
    labels, best = _row_min(G)
    best = best + xx
    np.maximum(best, 0.0, out=best)  # GEMM round-off can go slightly negative
    return labels, best


def sq_distances(Xc: np.ndarray, xx: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Full ``m x k`` squared euclidean distances of a chunk to the centres (clipped at 0)."""
    D = Xc @ C.T
    D *= -2.0
    D += (C * C).sum(axis=1)
    D += xx[:, None]
    np.maximum(D, 0.0, out=D)
    return D


def distances(Xc: np.ndarray, xx: np.ndarray, C: np.ndarray, cosine: bool) -> np.ndarray:
    """``m x k`` distances (squared euclidean, or ``1 - cos`` with unit ``C``)."""
    if cosine:
        xn = np.sqrt(xx)
        return 1.0 - (Xc @ C.T) / np.where(xn > 0, xn, 1.0)[:, None]
    return sq_distances(Xc, xx, C)


# -------------------------------------------------------------------------------------------------------------------
# Hard clustering (Lloyd)
# -------------------------------------------------------------------------------------------------------------------
def _assigned_chunks(block, C: np.ndarray, cosine: bool):
    """Yield ``(Xc, xx_c, w_c or None, labels, distance)`` for the row chunks of a non-empty block."""
    X, w = block.X, block.w
    xx = block_sq_norms(block)
    cc = (C * C).sum(axis=1)
    step = chunk_rows(C.shape[0])
    for lo in range(0, block.n_rows, step):
        Xc, xc = X[lo:lo + step], xx[lo:lo + step]
        wc = None if w is None else np.asarray(w[lo:lo + step], dtype=np.float64)
        yield (Xc, xc, wc) + assign(Xc, xc, C, cc, cosine)


def lloyd_partial(block, C: np.ndarray, cosine: bool) -> tuple[np.ndarray, np.ndarray, float]:
    """One Lloyd step's partial statistics of a block: ``(k x d weighted sums, k weights, cost)``.

    For cosine the sums are of the normalised rows (MLlib averages unit vectors, then re-normalises).
    """
    k, d = C.shape
    sums = np.zeros((k, d))
    counts = np.zeros(k)
    cost = 0.0
    if block.n_rows == 0:
        return sums, counts, cost
    for Xc, xc, wc, labels, dist in _assigned_chunks(block, C, cosine):
        m = Xc.shape[0]
        counts += np.bincount(labels, weights=wc, minlength=k)
        cost += float(dist.sum() if wc is None else wc @ dist)
        coef = np.ones(m) if wc is None else wc
        if cosine:
            xn = np.sqrt(xc)
            coef = coef / np.where(xn > 0, xn, 1.0)
        # one-hot (k x m) in CSC form costs O(m) to build and O(m d) to multiply, whatever k is
        onehot = sp.csc_matrix((coef, labels, np.arange(m + 1)), shape=(k, m))
        sums += onehot @ Xc
    return sums, counts, cost


def cost_partial(block, C: np.ndarray, cosine: bool) -> tuple[np.ndarray, float]:
    """Cluster weights and cost of a block against fixed centres (scikit-learn's inertia, MLlib's clusterSizes)."""
    k = C.shape[0]
    counts = np.zeros(k)
    cost = 0.0
    if block.n_rows == 0:
        return counts, cost
    for _, _, wc, labels, dist in _assigned_chunks(block, C, cosine):
        counts += np.bincount(labels, weights=wc, minlength=k)
        cost += float(dist.sum() if wc is None else wc @ dist)
    return counts, cost


def predict(X: np.ndarray, C: np.ndarray, cosine: bool) -> np.ndarray:
    """Closest-centre index of every row of ``X`` (``C`` unit rows for cosine)."""
    X = np.asarray(X, dtype=np.float64)
    out = np.empty(X.shape[0], dtype=np.int64)
    cc = (C * C).sum(axis=1)
    step = chunk_rows(C.shape[0])
    for lo in range(0, X.shape[0], step):
        Xc = X[lo:lo + step]
        out[lo:lo + step] = assign(Xc, np.einsum("ij,ij->i", Xc, Xc), C, cc, cosine)[0]
    return out


def zero_rows(block) -> int:
    """Rows whose norm is zero (cosine distance is undefined for them)."""
    return int(np.count_nonzero(block_sq_norms(block) == 0)) if block.n_rows else 0


# -------------------------------------------------------------------------------------------------------------------
# Small weighted problems on the driver (k-means|| candidates, consensus prototypes)
# -------------------------------------------------------------------------------------------------------------------
def point_distances(P: np.ndarray, C: np.ndarray, cosine: bool) -> np.ndarray:
    """``len(P) x len(C)`` distances between small in-memory point sets."""
    return distances(P, np.einsum("ij,ij->i", P, P), unit_rows(C) if cosine else C, cosine)


def kmeanspp_local(P: np.ndarray, w: np.ndarray, k: int, rng: np.random.Generator, cosine: bool,
                   n_trials: int = 1) -> np.ndarray:
    """Weighted k-means++ seeding on an in-memory point set.

    Draws the first centre with probability proportional to ``w`` and each next one proportional to ``w * d^2``
    (MLlib's ``LocalKMeans.kMeansPlusPlus`` with ``n_trials=1``). With ``n_trials > 1`` it is *greedy* k-means++
    (Arthur & Vassilvitskii; scikit-learn's default ``2 + log k``): each step draws ``n_trials`` candidates and keeps
    the one that lowers the weighted potential most. Stops early -- returning fewer than ``k`` centres -- when every
    remaining point coincides with a centre (fewer than ``k`` distinct points).
    """
    p = w / w.sum()
    centers = [P[rng.choice(len(P), p=p)]]
    d2 = np.maximum(point_distances(P, np.asarray(centers), cosine)[:, 0], 0.0)
    while len(centers) < k:
        mass = w * d2
        total = mass.sum()
        if total <= 0:
            break
        picks = rng.choice(len(P), size=n_trials, p=mass / total)
        if n_trials == 1:
            best = int(picks[0])
            d2 = np.minimum(d2, np.maximum(point_distances(P, P[best][None, :], cosine)[:, 0], 0.0))
        else:
            trial = np.minimum(d2[:, None], np.maximum(point_distances(P, P[picks], cosine), 0.0))
            j = int(np.argmin(w @ trial))
            best, d2 = int(picks[j]), trial[:, j].copy()
        centers.append(P[best])
    return np.asarray(centers)


def weighted_cost(P: np.ndarray, w: np.ndarray, C: np.ndarray, cosine: bool) -> float:
    """``sum_i w_i min_c d(p_i, c)`` of a small in-memory point set."""
    return float(w @ np.maximum(point_distances(P, C, cosine).min(axis=1), 0.0))


def lloyd_local(P: np.ndarray, w: np.ndarray, C: np.ndarray, iters: int, cosine: bool) -> np.ndarray:
    """Weighted Lloyd on an in-memory point set (empty clusters keep their centre)."""
    C = unit_rows(C) if cosine else C.copy()
    Pn = unit_rows(P) if cosine else P
    k = C.shape[0]
    for _ in range(iters):
        labels = np.argmin(point_distances(Pn, C, cosine), axis=1)
        wsum = np.bincount(labels, weights=w, minlength=k)
        sums = sp.csc_matrix((w, labels, np.arange(len(P) + 1)), shape=(k, len(P))) @ Pn
        nz = wsum > 0
        new = C.copy()
        new[nz] = sums[nz] / wsum[nz, None]
        if cosine:
            new = unit_rows(new)
        if np.array_equal(new, C):
            break
        C = new
    return C


# -------------------------------------------------------------------------------------------------------------------
# Fuzzy c-means
# -------------------------------------------------------------------------------------------------------------------
def memberships(D: np.ndarray, m: float) -> np.ndarray:
    """FCM memberships from squared distances: ``u_ij = 1 / sum_k (D_ij / D_kj)^(1/(m-1))``.

    Computed as ratios to the row minimum so that no power overflows for small ``m``; a row sitting on a centre
    (distance 0) gets membership 1 there (shared equally among coinciding centres).
    """
    Dc = np.maximum(D, _TINY)
    ratio = Dc.min(axis=1, keepdims=True) / Dc
    np.power(ratio, 1.0 / (m - 1.0), out=ratio)
    ratio /= ratio.sum(axis=1, keepdims=True)
    return ratio


def fcm_partial(block, centers_list: list[np.ndarray], m: float) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """DFCM partial sums of a block for several centre sets at once (a ``kRange`` sweep costs one data pass).

    For each ``V`` (c x d): ``(sum_j w u_ij^m x_j, sum_j w u_ij^m, J_m = sum w u_ij^m ||x_j - v_i||^2)``.
    """
    out = [(np.zeros_like(V), np.zeros(V.shape[0]), 0.0) for V in centers_list]
    n = block.n_rows
    if n == 0:
        return out
    X, w = block.X, block.w
    xx = block_sq_norms(block)
    step = chunk_rows(max(V.shape[0] for V in centers_list))
    for lo in range(0, n, step):
        Xc, xc = X[lo:lo + step], xx[lo:lo + step]
        wc = None if w is None else np.asarray(w[lo:lo + step], dtype=np.float64)
        for i, V in enumerate(centers_list):
            D = sq_distances(Xc, xc, V)
            um = memberships(D, m) ** m
            if wc is not None:
                um *= wc[:, None]
            num, den, J = out[i]
            out[i] = (num + um.T @ Xc, den + um.sum(axis=0), J + float(np.einsum("ij,ij->", um, D)))
    return out


def fcm_local(P: np.ndarray, w: np.ndarray, V: np.ndarray, m: float, max_iter: int,
              tol: float) -> tuple[np.ndarray, float, int]:
    """Weighted FCM on an in-memory point set; returns ``(V, J_m at V, iterations)``."""
    xx = np.einsum("ij,ij->i", P, P)
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - `it` (iterations run) is returned
        um = memberships(sq_distances(P, xx, V), m) ** m * w[:, None]
        new = (um.T @ P) / np.maximum(um.sum(axis=0), _TINY)[:, None]
        shift = float(np.abs(new - V).max())
        V = new
        if shift < tol:
            break
    D = sq_distances(P, xx, V)
    J = float(np.einsum("ij,ij->", memberships(D, m) ** m * w[:, None], D))
    return V, J, it


def min_separation(V: np.ndarray) -> float:
    """``min_{i != k} ||v_i - v_k||^2`` (the Xie-Beni denominator's separation term)."""
    if V.shape[0] < 2:
        return 0.0
    D = sq_distances(V, np.einsum("ij,ij->i", V, V), V)
    np.fill_diagonal(D, np.inf)
    return float(D.min())


def xie_beni(J: float, total_weight: float, V: np.ndarray) -> float:
    """Xie-Beni index ``J_m / (N * min_{i != k} ||v_i - v_k||^2)`` (inf when two centres coincide)."""
    sep = min_separation(V)
    return float(J / (total_weight * sep)) if sep > 0 else float("inf")
