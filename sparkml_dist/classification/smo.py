"""A warm-startable SMO solver for the C-SVC dual on an in-memory kernel matrix (libsvm's algorithm, numba-compiled).

Why not libsvm: scikit-learn's libsvm always starts from ``alpha = 0``. A cascade merge, though, knows a very good
start -- the union of its children's solutions (Graf et al. 2004), and a feedback pass knows the previous top
solution exactly. Starting there, the solver only has to fix the few variables that change; from zero, it has to move
every bounded support vector to ``C`` one SMO step at a time (on noisy data nearly all SVs are bounded: 19.6k of 20k
at 100k rows of ``make_classification(class_sep=1)``). The cascade's merge nodes are small enough for their kernel
matrix to fit in memory, so the solver works on a dense ``K`` (float32 for RBF from one fused pass, float64 for the
other kernels from one GEMM: :func:`kernel_matrix`), and every SMO step costs O(n) memory reads instead of kernel
evaluations.

The algorithm is libsvm's ``Solver`` for C-SVC (Fan, Chen, Lin, JMLR 6, 2005): second-order working-set selection
(WSS 3), the same two-variable update and clipping, the same stopping rule (``m(alpha) - M(alpha) < eps``, eps=1e-3),
the same ``rho`` (mean ``y G`` over free SVs, else the midpoint of the bounds). No shrinking: with ``K`` in memory a
full O(n) scan per step is cheap. One-vs-one multi-class runs it per class pair, in libsvm's layout, so the result is
an :class:`~sparkml_dist.classification.kernel_svm.SVCSolution` like scikit-learn's ``SVC`` gives.
"""

from __future__ import annotations

import logging

import numpy as np
from numba import njit, prange

logger = logging.getLogger(__name__)

TAU = 1e-12  # libsvm's guard for non-positive curvature
HOLD_BELOW = 0.5


@njit(cache=True, nogil=True)
def _smo(K, QD, y, C, alpha, G, eps, max_iter):  # pragma: no cover - compiled
    """libsvm's C-SVC SMO loop on ``Q_ij = y_i y_j K_ij`` from ``alpha`` (feasible); updates ``alpha``/``G`` in
    place and returns the iterations made. ``G`` must hold ``Q alpha - 1``."""
    n = y.shape[0]
    it = 0
    while it < max_iter:
        # --- working set selection 3 (second order) ---
        gmax = -np.inf
        # i: the most violating index of I_up (y=+1 below C, y=-1 above 0), by -y G
        i = -1
        for t in range(n):
            if (alpha[t] < C) if y[t] > 0.0 else (alpha[t] > 0.0):
                v = -y[t] * G[t]
                if v >= gmax:
                    gmax = v
                    i = t
        if i == -1:
            break
        Ki = K[i]
        Kii = QD[i]
        yi = y[i]
        # j: over I_low (y=+1 above 0, y=-1 below C), the largest second-order objective decrease
        gmax2 = -np.inf
        j = -1
        best = np.inf
        for t in range(n):
            if (alpha[t] > 0.0) if y[t] > 0.0 else (alpha[t] < C):
                yg = y[t] * G[t]
                gmax2 = max(gmax2, yg)
                diff = gmax + yg
                if diff > 0.0:
                    quad = Kii + QD[t] - 2.0 * Ki[t]  # libsvm: QD_i + QD_t -+ 2 y_i Q_it = K_ii + K_tt - 2 K_it
                    if quad <= 0.0:
                        quad = TAU
                    obj = -(diff * diff) / quad
                    if obj <= best:
                        best = obj
                        j = t
        if gmax + gmax2 < eps or j == -1:
            break
        it += 1
        # --- two-variable update, libsvm's clipping ---
        Kj = K[j]
        yj = y[j]
        Qij = yi * yj * Ki[j]
        ai, aj = alpha[i], alpha[j]
        if yi != yj:
            quad = Kii + QD[j] + 2.0 * Qij
            if quad <= 0.0:
                quad = TAU
            delta = (-G[i] - G[j]) / quad
            diff = ai - aj
            ai += delta
            aj += delta
            if diff > 0.0:
                if aj < 0.0:
                    aj = 0.0
                    ai = diff
            else:
                if ai < 0.0:
                    ai = 0.0
                    aj = -diff
            if diff > 0.0:  # C_i - C_j == 0
                if ai > C:
                    ai = C
                    aj = C - diff
            else:
                if aj > C:
                    aj = C
                    ai = C + diff
        else:
            quad = Kii + QD[j] - 2.0 * Qij
            if quad <= 0.0:
                quad = TAU
            delta = (G[i] - G[j]) / quad
            total = ai + aj
            ai -= delta
            aj += delta
            if total > C:
                if ai > C:
                    ai = C
                    aj = total - C
            else:
                if aj < 0.0:
                    aj = 0.0
                    ai = total
            if total > C:
                if aj > C:
                    aj = C
                    ai = total - C
            else:
                if ai < 0.0:
                    ai = 0.0
                    aj = total
        dai = (ai - alpha[i]) * yi
        daj = (aj - alpha[j]) * yj
        alpha[i] = ai
        alpha[j] = aj
        for t in range(n):
            G[t] += y[t] * (Ki[t] * dai + Kj[t] * daj)
    return it


@njit(cache=True, parallel=True)
def _gradient(K, y, alpha):  # pragma: no cover - compiled
    """``G = Q alpha - 1`` (float64 accumulation over ``K``), skipping zero alphas."""
    n = y.shape[0]
    nz = np.nonzero(alpha)[0]
    coef = alpha[nz] * y[nz]
    G = np.empty(n)
    for t in prange(n):
        s = 0.0
        row = K[t]
        for k in range(nz.shape[0]):
            s += row[nz[k]] * coef[k]
        G[t] = y[t] * s - 1.0
    return G


def _rho(y: np.ndarray, G: np.ndarray, alpha: np.ndarray, C: float) -> float:
    """libsvm's ``calculate_rho``: mean ``y G`` over free SVs, else the midpoint of the feasible interval."""
    yG = y * G
    upper, lower = alpha >= C, alpha <= 0.0
    free = ~upper & ~lower
    if free.any():
        return float(yG[free].mean())
    ub_mask = (upper & (y < 0)) | (lower & (y > 0))
    lb_mask = (upper & (y > 0)) | (lower & (y < 0))
    ub = yG[ub_mask].min() if ub_mask.any() else np.inf
    lb = yG[lb_mask].max() if lb_mask.any() else -np.inf
    return float((ub + lb) / 2.0)


def make_feasible(alpha: np.ndarray, y: np.ndarray, C: float) -> np.ndarray:
    """Clip to ``[0, C]`` and restore ``y' alpha = 0`` by scaling down the side with the surplus (a warm start
    assembled from several solutions need not satisfy the equality exactly)."""
    a = np.clip(np.asarray(alpha, dtype=np.float64), 0.0, C)
    a[a >= C * (1 - 1e-12)] = C  # keep bounded SVs exactly bounded: C(1 - 1e-16) would count as free
    a[a <= C * 1e-12] = 0.0
    pos, neg = a[y > 0].sum(), a[y < 0].sum()
    if abs(pos - neg) <= 1e-10 * max(pos + neg, 1.0):
        return a  # feasible up to rounding (a merge of feasible solutions)
    if pos > neg and pos > 0:
        a[y > 0] *= neg / pos
    elif neg > pos and neg > 0:
        a[y < 0] *= pos / neg
    return a


def solve_binary(K: np.ndarray, y: np.ndarray, C: float, alpha0: np.ndarray | None = None, eps: float = 1e-3,
                 max_iter: int = -1) -> tuple[np.ndarray, float, float, int, np.ndarray]:
    """The C-SVC dual on kernel matrix ``K`` (:func:`kernel_matrix`, C-contiguous) with labels ``y`` in {-1, +1}.

    Returns ``(alpha, rho, W, iterations, G)``: decision ``f(x) = sum_i alpha_i y_i k(x_i, x) - rho``, ``W`` the
    dual objective ``sum alpha - 1/2 alpha' Q alpha`` (positive, as :func:`kernel_svm.dual_objective`), ``G`` the
    gradient ``Q alpha - 1`` (so the margin of row i is ``y_i f(x_i) = G_i + 1 - y_i rho``).
    """
    n = len(y)
    y = np.ascontiguousarray(y, dtype=np.float64)
    alpha = np.zeros(n) if alpha0 is None else make_feasible(alpha0, y, C)
    G = _gradient(K, y, alpha) if alpha.any() else np.full(n, -1.0)
    iterations = _run_smo(K, y, C, alpha, G, eps, _iteration_cap(n, max_iter))
    return _result(y, G, alpha, C, iterations)


def _iteration_cap(n: int, max_iter: int | None) -> int:
    """libsvm's default cap, ``max(10^7, 100 n)``, unless ``max_iter >= 0`` is given."""
    return max(10_000_000, 100 * n) if max_iter is None or max_iter < 0 else int(max_iter)


def _run_smo(K, y, C: float, alpha, G, eps: float, cap: int) -> int:
    """:func:`_smo` on ``K`` (updates ``alpha``/``G`` in place); the iterations made."""
    QD = np.ascontiguousarray(np.diagonal(K), dtype=np.float64)
    iterations = int(_smo(K, QD, y, float(C), alpha, G, float(eps), cap))
    if iterations >= cap:
        logger.warning("smo: reached max_iter=%d before the KKT gap fell below %g", cap, eps)
    return iterations


def _result(y, G, alpha, C: float, iterations: int):
    """``(alpha, rho, W, iterations, G)``; libsvm: obj = 1/2 sum alpha_i (G_i + p_i) with p = -1, and W = -obj."""
    return alpha, _rho(y, G, alpha, C), -0.5 * float(alpha @ (G - 1.0)), iterations, G


# ---------------------------------------------------------------------------------------------------------------
# kernel matrices
# ---------------------------------------------------------------------------------------------------------------
# exp(x) for x in [-87, 0] in float32 arithmetic that LLVM vectorises (numba's np.exp is a scalar call per element):
# Cody-Waite reduction x = n ln2 + f, a degree-6 Taylor polynomial for e^f (|f| <= ln2/2, relative error ~2e-7),
# and 2^n built in the exponent bits (int32 (n + 127) << 23, read back as float32)
_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)


@njit(fastmath=True, cache=True, nogil=True)
def _exp_neg_gamma(t, gamma, e):  # pragma: no cover - compiled
    """``t[c] <- exp(-gamma * max(t[c], 0))`` in place (``e``: int32 scratch of the same length)."""
    m = t.shape[0]
    for c in range(m):
        x = -gamma * max(t[c], np.float32(0.0))
        x = max(x, np.float32(-87.0))
        n = np.floor(x * _LOG2E + np.float32(0.5))
        f = x - n * _LN2_HI - n * _LN2_LO
        p = np.float32(1.0 / 120) + f * np.float32(1.0 / 720)
        p = np.float32(1.0 / 6) + f * (np.float32(1.0 / 24) + f * p)
        t[c] = np.float32(1.0) + f * (np.float32(1.0) + f * (np.float32(0.5) + f * p))
        e[c] = (np.int32(n) + np.int32(127)) << 23
    scale = e.view(np.float32)
    for c in range(m):
        t[c] *= scale[c]


@njit(fastmath=True, cache=True, nogil=True)
def _sqdist_row(x, sqx, ST, sqs, t):  # pragma: no cover - compiled
    """``t[c] <- |x|^2 + |s_c|^2 - 2 x.s_c`` for all columns of ``ST`` (features x rows, float32)."""
    for c in range(t.shape[0]):
        t[c] = sqx + sqs[c]
    for k in range(ST.shape[0]):
        xk = np.float32(-2.0) * x[k]
        row = ST[k]
        for c in range(t.shape[0]):
            t[c] += xk * row[c]


@njit(fastmath=True, cache=True, parallel=True)
def _rbf_matrix(X, ST, sqx, sqs, gamma, out):  # pragma: no cover - compiled
    m = ST.shape[1]
    for r in prange(X.shape[0]):
        e = np.empty(m, np.int32)
        t = out[r]
        _sqdist_row(X[r], sqx[r], ST, sqs, t)
        _exp_neg_gamma(t, gamma, e)


@njit(fastmath=True, cache=True, parallel=True)
def _rbf_decision(X, ST, sqx, sqs, gamma, coefT):  # pragma: no cover - compiled
    """``out[r, p] = sum_c exp(-gamma |x_r - s_c|^2) coefT[p, c]`` without materialising the kernel rows."""
    m = ST.shape[1]
    out = np.empty((X.shape[0], coefT.shape[0]))
    for r in prange(X.shape[0]):
        e = np.empty(m, np.int32)
        t = np.empty(m, np.float32)
        _sqdist_row(X[r], sqx[r], ST, sqs, t)
        _exp_neg_gamma(t, gamma, e)
        for p in range(coefT.shape[0]):
            acc = 0.0
            cp = coefT[p]
            for c in range(m):
                acc += t[c] * cp[c]
            out[r, p] = acc
    return out


def _rbf_operands(A: np.ndarray, B: np.ndarray | None):
    """float32 operands for the fused RBF passes, both shifted by one common centre (the mean of ``B``, else of
    ``A``) first, in float64: the RBF kernel does not change under a shift, and ``|x|^2 + |s|^2 - 2 x.s`` in float32
    cancels catastrophically when the features sit far from the origin (features around 1000: kernel errors of 0.2)."""
    ref = A if B is None else B
    centre = np.mean(ref, axis=0) if len(ref) else 0.0
    a = np.ascontiguousarray(np.asarray(A, dtype=np.float64) - centre, dtype=np.float32)
    b = a if B is None else np.ascontiguousarray(np.asarray(B, dtype=np.float64) - centre, dtype=np.float32)
    sq_a = np.einsum("ij,ij->i", a, a)
    sq_b = sq_a if B is None else np.einsum("ij,ij->i", b, b)
    return a, np.ascontiguousarray(b.T), sq_a, sq_b


def kernel_itemsize(kernel) -> int:
    """Bytes per entry of :func:`kernel_matrix`'s result for ``kernel``."""
    return 4 if kernel.kernel == "rbf" else 8


def kernel_matrix(A: np.ndarray, B: np.ndarray | None, kernel) -> np.ndarray:
    """``K[i, j] = k(A[i], B[j])`` (``B=None``: ``A`` against itself).

    RBF: float32, one fused, vectorised pass per row on centred operands (distance and exp never leave the cache;
    ~8x numpy): its values lie in (0, 1], so float32 keeps 7 digits of every entry and of ``K_ii + K_jj - 2 K_ij``.
    The other kernels: float64, a GEMM by torch then elementwise numpy. They are not shift-invariant and their values
    grow with the features' offset (linear ~ |x|^2, poly ~ |x|^(2 degree)), so in float32 the solver's curvature
    ``K_ii + K_jj - 2 K_ij`` loses its digits to cancellation (features around 1000, poly: an objective half of
    libsvm's)."""
    if kernel.kernel == "rbf":
        a, bT, sq_a, sq_b = _rbf_operands(A, B)
        out = np.empty((a.shape[0], bT.shape[1]), dtype=np.float32)
        _rbf_matrix(a, bT, sq_a, sq_b, np.float32(kernel.gamma), out)
        return out
    import torch

    a = torch.from_numpy(np.ascontiguousarray(A, dtype=np.float64))
    b = a if B is None else torch.from_numpy(np.ascontiguousarray(B, dtype=np.float64))
    D = (a @ b.T).numpy()
    if kernel.kernel == "linear":
        return D
    D *= kernel.gamma
    D += kernel.coef0
    if kernel.kernel == "poly":
        return np.power(D, kernel.degree, out=D)
    return np.tanh(D, out=D)  # sigmoid


def kernel_products(X: np.ndarray, S: np.ndarray, coefT: np.ndarray, kernel, chunk: int = 2048) -> np.ndarray:
    """``out[i, p] = sum_j k(X[i], S[j]) coefT[p, j]`` (float64 result; :func:`kernel_matrix`'s arithmetic); RBF
    fused, never materialising the kernel rows."""
    coefT = np.ascontiguousarray(coefT, dtype=np.float32 if kernel.kernel == "rbf" else np.float64)
    if len(S) == 0:
        return np.zeros((X.shape[0], coefT.shape[0]))
    if kernel.kernel == "rbf":
        a, sT, sq_a, sq_s = _rbf_operands(X, S)
        return _rbf_decision(a, sT, sq_a, sq_s, np.float32(kernel.gamma), coefT)
    out = np.empty((X.shape[0], coefT.shape[0]))
    for lo in range(0, X.shape[0], chunk):
        out[lo:lo + chunk] = kernel_matrix(X[lo:lo + chunk], S, kernel) @ coefT.T
    return out


def decision_values(X: np.ndarray, sol, kernel) -> np.ndarray:
    """scikit-learn's one-vs-one decision values ``(n, n_pairs)`` of ``sol`` on ``X`` in float32 kernel arithmetic
    (about 1e-5 relative from the float64 :meth:`SVCSolution.pair_decisions`, ~8x faster for RBF): for the
    cascade's KKT scans, not for model outputs."""
    return kernel_products(X, sol.support_vectors, sol.coef_matrix(), kernel) + sol.intercept


def _index_sets(y: np.ndarray, alpha: np.ndarray, C: float) -> tuple[np.ndarray, np.ndarray]:
    """libsvm's ``I_up`` (may increase ``y alpha``) and ``I_low`` (may decrease it), as masks."""
    up = ((y > 0) & (alpha < C)) | ((y < 0) & (alpha > 0))
    low = ((y > 0) & (alpha > 0)) | ((y < 0) & (alpha < C))
    return up, low


def _max_violation(y: np.ndarray, G: np.ndarray, alpha: np.ndarray, C: float) -> float:
    """libsvm's stopping quantity ``m(alpha) - M(alpha)`` (the solution is optimal when it is below eps)."""
    yG = -y * G
    up, low = _index_sets(y, alpha, C)
    if not up.any() or not low.any():
        return 0.0
    return float(yG[up].max() - yG[low].min())


def solve_binary_shrunk(X: np.ndarray, y: np.ndarray, C: float, alpha0: np.ndarray, kernel, max_rows: int,
                        eps: float = 1e-3, max_iter: int = -1, rounds: int = 5, hold_below: float = HOLD_BELOW,
                        s0: np.ndarray | None = None):
    """:func:`solve_binary` from a warm start, with libsvm's shrinking done up front: for big problems (the kernel
    matrix does not fit) and for re-solves near an optimum.

    The bounded SVs of the warm start that lie deep inside the margin (``alpha = C``, margin below ``hold_below``;
    more of them, deepest first, while the rest exceeds ``max_rows``) are held at ``C``; their part of the gradient
    is computed once (fused, never materialised), and SMO runs on the other rows with their kernel matrix in
    memory -- on noisy data most SVs are bounded, so the matrix shrinks several-fold. Then the held rows are checked
    against the new solution (libsvm's ``m(alpha) - M(alpha) < eps`` over *all* rows); any that would move are
    released and the solve repeats, warm. ``s0``: the start's decision values without bias,
    ``sum_j alpha_j y_j k(x_i, x_j)``, when the caller knows them (used only if complete and the start needed no
    repair). Returns what :func:`solve_binary` does, or None when it cannot fit or settle in ``rounds``.
    """
    n = len(y)
    y = np.ascontiguousarray(y, dtype=np.float64)
    alpha = make_feasible(alpha0, y, C)
    if s0 is not None and np.isfinite(s0).all() and np.array_equal(alpha, alpha0):
        s = np.asarray(s0, dtype=np.float64)  # the caller knows the decision values of this start
    else:
        nz = np.flatnonzero(alpha)
        s = kernel_products(X, X[nz], (alpha[nz] * y[nz])[None, :], kernel)[:, 0]
    G = y * s - 1.0
    margin = y * (s - _rho(y, G, alpha, C))
    bounded = np.flatnonzero(alpha >= C)
    held = np.zeros(n, bool)
    held[bounded[margin[bounded] < hold_below]] = True
    if n - held.sum() > max_rows:  # hold more, deepest first, while they stay clearly inside the margin
        extra = bounded[~held[bounded]]
        extra = extra[np.argsort(margin[extra], kind="stable")[:n - held.sum() - max_rows]]
        if len(extra) < n - held.sum() - max_rows or margin[extra].max() > 1.0 - 0.1:
            return None
        held[extra] = True
    iterations = 0
    cap = _iteration_cap(n, max_iter)
    for _ in range(rounds):
        free = np.flatnonzero(~held)
        K = kernel_matrix(X[free], None, kernel)
        a, g = alpha[free].copy(), G[free].copy()
        iterations += _run_smo(K, y[free], C, a, g, eps, cap)
        del K
        logger.debug("smo (shrunk): %d rows, %d held at C, %d iterations so far", n, int(held.sum()), iterations)
        delta = a - alpha[free]
        alpha[free], G[free] = a, g
        moved = np.flatnonzero(delta)
        hold = np.flatnonzero(held)
        if len(hold) and len(moved):
            G[hold] += y[hold] * kernel_products(X[hold], X[free[moved]], (delta[moved] * y[free[moved]])[None, :],
                                                 kernel)[:, 0]
        if _max_violation(y, G, alpha, C) < eps * 1.01:  # float32 kernel arithmetic in the held rows' update
            return _result(y, G, alpha, C, iterations)
        # release the held rows that now violate: a held row at C may leave it when -y G of it exceeds M
        yG = -y * G
        up, low = _index_sets(y, alpha, C)
        m_up, m_low = yG[up & ~held].max(), yG[low & ~held].min()
        release = held & ((up & (yG > m_low + eps / 2)) | (low & (yG < m_up - eps / 2)))
        if not release.any():
            release = held & (up | low)
        held &= ~release
        if (~held).sum() > max_rows:  # the released rows no longer fit: the caller falls back to libsvm
            return None
    return None

