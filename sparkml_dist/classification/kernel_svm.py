"""Kernel SVM pieces that do not touch Spark: the local libsvm solver, kernels, dual objective, one-vs-one decision.

Every node of the distributed trainers (:mod:`sparkml_dist.classification.cascade`) calls :func:`train_local` -- a
scikit-learn ``SVC`` (libsvm SMO) on the rows it holds -- and passes on only the rows that came out as support vectors,
identified by a global row id so that merged sets are de-duplicated. :class:`SVCSolution` holds what a fitted libsvm
model is (support vectors, dual coefficients, intercepts, one-vs-one layout) and predicts with numpy alone, exactly as
scikit-learn's ``SVC.predict`` / ``decision_function`` do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class KernelSpec:
    """libsvm kernel settings with a concrete ``gamma``."""

    kernel: str = "rbf"
    gamma: float = 1.0
    degree: int = 3
    coef0: float = 0.0

    def __call__(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """Gram matrix ``K[i, j] = k(A[i], B[j])``."""
        dot = A @ B.T
        if self.kernel == "linear":
            return dot
        if self.kernel == "poly":
            return (self.gamma * dot + self.coef0) ** self.degree
        if self.kernel == "sigmoid":
            return np.tanh(self.gamma * dot + self.coef0)
        sq = (A * A).sum(axis=1)[:, None] + (B * B).sum(axis=1)[None, :] - 2.0 * dot
        return np.exp(-self.gamma * np.maximum(sq, 0.0))


@dataclass
class SVSet:
    """Rows passed between cascade nodes: global ``ids``, features ``X``, class labels ``y``, and optionally the
    dual variables ``alpha`` the rows had in the node that produced them, ``(n, n_pairs)`` over the global
    one-vs-one pairs (:func:`pair_index`) -- a merge starts its solver there (alpha seeding) -- and ``score``,
    the rows' decision values under those alphas, bias aside (NaN: unknown), which spares the next solver a kernel
    pass to rebuild its gradient. Scores use libsvm's one-vs-one sign for every pair (positive: the pair's lower
    class), whatever the number of classes of the node that wrote them: scikit-learn flips the sign of a
    two-class solution, and a node that saw two classes may pass its scores to one that sees three."""

    ids: np.ndarray
    X: np.ndarray
    y: np.ndarray
    alpha: np.ndarray | None = None
    score: np.ndarray | None = None

    @classmethod
    def empty(cls, n_features: int) -> SVSet:
        return cls(np.zeros(0, np.int64), np.zeros((0, n_features)), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, index) -> SVSet:
        return SVSet(self.ids[index], self.X[index], self.y[index],
                     None if self.alpha is None else self.alpha[index],
                     None if self.score is None else self.score[index])

    def union(self, *others: SVSet) -> SVSet:
        """Rows of all sets, each id once (first occurrence wins), sorted by id so results do not depend on order.
        Alphas survive when any set has them (rows of a set without start at 0); scores likewise (NaN), as long as
        only one set brings nonzero alphas."""
        sets = [self, *others]
        ids = np.concatenate([s.ids for s in sets])
        _, first = np.unique(ids, return_index=True)

        def stacked(name: str, fill: float):
            width = max((getattr(s, name).shape[1] for s in sets if getattr(s, name) is not None), default=0)
            if not width:
                return None
            parts = [getattr(s, name) if getattr(s, name) is not None else np.full((len(s), width), fill)
                     for s in sets]
            return np.concatenate(parts)[first]

        # a score is a decision value under the alphas of the set it came with: it stays valid only while the
        # union's nonzero alphas all come from a single set (a solution plus new rows at 0, not a merge of two)
        with_alphas = sum(1 for s in sets if s.alpha is not None and s.alpha.any())
        score = stacked("score", np.nan) if with_alphas <= 1 else None
        return SVSet(ids[first], np.concatenate([s.X for s in sets])[first],
                     np.concatenate([s.y for s in sets])[first], stacked("alpha", 0.0), score)


def libsvm_sign(n_seen: int) -> float:
    """Factor from the decision sign of a solution over ``n_seen`` classes, in scikit-learn's layout, to libsvm's
    one-vs-one sign (positive: the pair's lower class) that :attr:`SVSet.score` uses: scikit-learn flips two-class
    solutions."""
    return -1.0 if n_seen == 2 else 1.0


def pair_index(i: int, j: int, n_classes: int) -> int:
    """Position of class pair ``(i, j)``, ``i < j``, in libsvm's one-vs-one order over ``n_classes`` classes."""
    return i * n_classes - i * (i + 1) // 2 + (j - i - 1)


@dataclass
class SVCSolution:
    """A fitted libsvm C-SVC in scikit-learn's public layout (``support_vectors_``, ``dual_coef_``, ...)."""

    classes: np.ndarray          # class labels the solver saw, sorted
    support_ids: np.ndarray      # global row ids of the support vectors
    support_vectors: np.ndarray  # (n_SV, d), grouped by class as libsvm orders them
    support_y: np.ndarray        # class label of each support vector
    dual_coef: np.ndarray        # (n_classes_seen - 1, n_SV)
    intercept: np.ndarray        # (n_pairs,)
    n_support: np.ndarray        # SVs per class seen
    objective: float = 0.0       # libsvm dual objective, summed over the one-vs-one problems

    def pair_coefficients(self):
        """For every one-vs-one pair ``(i, j)``: (indices of its SVs, their ``alpha * y`` coefficients, intercept)."""
        starts = np.concatenate([[0], np.cumsum(self.n_support)])
        k = 0
        for i in range(len(self.classes)):
            for j in range(i + 1, len(self.classes)):
                si = np.arange(starts[i], starts[i + 1])
                sj = np.arange(starts[j], starts[j + 1])
                coef = np.concatenate([self.dual_coef[j - 1, si], self.dual_coef[i, sj]])
                yield i, j, np.concatenate([si, sj]), coef, self.intercept[k]
                k += 1

    def coef_matrix(self) -> np.ndarray:
        """``(n_pairs, n_SV)``: SV ``r``'s coefficient ``alpha y`` in pair ``k`` (0 where it is not in the pair), so
        that the pairs' decision values are ``K(X, SVs) @ coef_matrix().T + intercept``."""
        coefT = np.zeros((len(self.intercept), len(self.support_ids)))
        for k, (_, _, idx, coef, _) in enumerate(self.pair_coefficients()):
            coefT[k, idx] = coef
        return coefT

    def pair_decisions(self, X: np.ndarray, kernel: KernelSpec, chunk: int = 4096) -> np.ndarray:
        """scikit-learn's one-vs-one ``decision_function`` values ``(n, n_pairs)`` (for two classes: > 0 means the
        second class)."""
        pairs = list(self.pair_coefficients())
        out = np.empty((X.shape[0], len(pairs)))
        for lo in range(0, X.shape[0], chunk):
            K = kernel(X[lo:lo + chunk], self.support_vectors)
            for p, (_, _, idx, coef, b) in enumerate(pairs):
                out[lo:lo + chunk, p] = K[:, idx] @ coef + b
        return out

    def predict_all(self, X: np.ndarray, kernel: KernelSpec, n_classes: int):
        """``(rawPrediction, None, prediction)`` over ``n_classes`` global classes, as scikit-learn's SVC."""
        n = X.shape[0]
        classes = self.classes.astype(np.int64)
        if len(classes) == 1:  # degenerate: one class seen
            raw = np.zeros((n, n_classes))
            raw[:, classes[0]] = 1.0
            return raw, None, np.full(n, float(classes[0]))
        dec = self.pair_decisions(X, kernel)
        if len(classes) == 2:
            d = dec[:, 0]
            raw = np.zeros((n, n_classes))
            raw[:, classes[0]], raw[:, classes[1]] = -d, d
            return raw, None, np.where(d > 0, classes[1], classes[0]).astype(np.float64)
        # libsvm's votes (first maximum wins); rawPrediction is scikit-learn's 'ovr' decision function
        m = len(classes)
        votes = np.zeros((n, m))
        conf = np.zeros((n, m))
        k = 0
        for i in range(m):
            for j in range(i + 1, m):
                pos = dec[:, k] > 0
                votes[pos, i] += 1
                votes[~pos, j] += 1
                conf[:, i] += dec[:, k]
                conf[:, j] -= dec[:, k]
                k += 1
        ovr = votes + conf / (3 * (np.abs(conf) + 1))
        raw = np.full((n, n_classes), -np.inf)
        raw[:, classes] = ovr
        raw[~np.isfinite(raw)] = -1.0 * m
        return raw, None, classes[np.argmax(votes, axis=1)].astype(np.float64)


def dual_objective(sol: SVCSolution, kernel: KernelSpec) -> float:
    """``W = sum_pairs (sum |a_i y_i| - 1/2 sum_ij a_i y_i a_j y_j K_ij)`` -- the quantity the cascade's feedback
    loop must stop changing (Graf et al. 2004)."""
    total = 0.0
    for _, _, idx, coef, _ in sol.pair_coefficients():
        S = sol.support_vectors[idx]
        quad = 0.0
        for lo in range(0, len(idx), 2048):  # chunked: never the full n_SV x n_SV matrix at once
            quad += float(coef[lo:lo + 2048] @ (kernel(S[lo:lo + 2048], S) @ coef))
        total += float(np.abs(coef).sum()) - 0.5 * quad
    return total


def train_local(rows: SVSet, kernel: KernelSpec, C: float, cache_size: float = 500.0,
                max_iter: int = -1, objective: bool = True,
                n_classes: int | None = None) -> tuple[SVSet, SVCSolution | None]:
    """libsvm on ``rows``: the support vectors (as an :class:`SVSet`, with their alphas over the ``n_classes``
    global one-vs-one pairs) and the solution.

    With fewer than two classes there is nothing to separate: every row is passed on, and no solution is returned.
    ``objective=False`` skips the dual objective (an ``n_SV x n_SV`` kernel pass) for nodes whose value nobody reads.
    """
    from sklearn.svm import SVC

    if len(rows) == 0 or len(np.unique(rows.y)) < 2:
        return SVSet(rows.ids, rows.X, rows.y), None
    svc = SVC(C=C, kernel=kernel.kernel, gamma=kernel.gamma, degree=kernel.degree, coef0=kernel.coef0,
              cache_size=cache_size, max_iter=max_iter)
    svc.fit(rows.X, rows.y)
    support = svc.support_
    sol = SVCSolution(classes=svc.classes_.astype(np.int64), support_ids=rows.ids[support],
                      support_vectors=np.asarray(svc.support_vectors_, dtype=np.float64),
                      support_y=rows.y[support], dual_coef=np.asarray(svc.dual_coef_, dtype=np.float64),
                      intercept=np.asarray(svc.intercept_, dtype=np.float64),
                      n_support=np.asarray(svc.n_support_, dtype=np.int64))
    if objective:
        sol.objective = dual_objective(sol, kernel)
    alpha = None
    if n_classes:
        alpha = np.zeros((len(support), n_classes * (n_classes - 1) // 2))
        for i, j, idx, coef, _ in sol.pair_coefficients():
            alpha[idx, pair_index(int(sol.classes[i]), int(sol.classes[j]), n_classes)] = np.abs(coef)
    return SVSet(rows.ids[support], rows.X[support], rows.y[support], alpha), sol


def train_warm(rows: SVSet, kernel: KernelSpec, C: float, n_classes: int, max_iter: int = -1,
               eps: float = 1e-3, kernel_memory: float = np.inf, shrink: bool = False,
               keep_within: float | None = None) -> tuple[SVSet, SVCSolution | None] | None:
    """:func:`train_local`'s contract, solved by :func:`sparkml_dist.classification.smo.solve_binary` on the
    in-memory kernel matrix, one-vs-one, each pair starting from ``rows.alpha`` (zeros where absent).

    Same optimum as libsvm (same algorithm and stopping rule), usually in a fraction of its time when the start is
    close: a merge of two solutions, or a solution plus the rows that violate it. A pair whose kernel matrix
    exceeds ``kernel_memory`` bytes is solved with the deep bounded SVs held at ``C``
    (:func:`~sparkml_dist.classification.smo.solve_binary_shrunk`); None when even that does not fit (the caller
    falls back to libsvm). ``shrink``: hold the deep bounded SVs of the start at ``C`` anyway (the start is an
    optimum of a sub-problem, as in a cascade feedback pass). ``keep_within``: the returned rows are the SVs plus
    the non-SVs whose margin is below ``1 + keep_within`` (a working set to carry into the next re-solve).
    """
    from sparkml_dist.classification.smo import kernel_itemsize, kernel_matrix, solve_binary, solve_binary_shrunk

    classes, counts = np.unique(rows.y, return_counts=True)
    classes = classes.astype(np.int64)
    if len(rows) == 0 or len(classes) < 2:
        return SVSet(rows.ids, rows.X, rows.y), None
    max_rows = int(np.sqrt(kernel_memory / kernel_itemsize(kernel))) if np.isfinite(kernel_memory) else len(rows)
    # one matrix for all pairs when it and the largest pair's copy taken from it fit together (two classes: no copy)
    largest_pair = 0 if len(classes) == 2 else int(np.sort(counts)[-2:].sum())
    K = (kernel_matrix(rows.X, None, kernel)
         if not shrink and kernel_itemsize(kernel) * (len(rows) ** 2 + largest_pair ** 2) <= kernel_memory else None)
    n_pairs_global = n_classes * (n_classes - 1) // 2
    warm = rows.alpha if rows.alpha is not None else np.zeros((len(rows), n_pairs_global))
    alpha = np.zeros((len(rows), n_pairs_global))
    score = np.full((len(rows), n_pairs_global), np.nan)
    known = rows.score if rows.score is not None else score  # libsvm's pair sign: see SVSet
    margin = np.full(len(rows), np.inf)
    m = len(classes)
    flip = libsvm_sign(m)  # this node's solves' sign -> the stored scores'
    results = []
    for i in range(m):
        for j in range(i + 1, m):
            g = pair_index(int(classes[i]), int(classes[j]), n_classes)
            sel = np.flatnonzero((rows.y == classes[i]) | (rows.y == classes[j]))
            positive = classes[j] if m == 2 else classes[i]  # libsvm's sign, flipped by scikit-learn for 2 classes
            y = np.where(rows.y[sel] == positive, 1.0, -1.0)
            if K is not None:
                Kp = K if len(sel) == len(rows) else np.ascontiguousarray(K[np.ix_(sel, sel)])
                solved = solve_binary(Kp, y, C, warm[sel, g], eps=eps, max_iter=max_iter)
            elif len(sel) <= max_rows and not shrink:
                solved = solve_binary(kernel_matrix(rows.X[sel], None, kernel), y, C, warm[sel, g], eps=eps,
                                      max_iter=max_iter)
            else:
                solved = solve_binary_shrunk(rows.X[sel], y, C, warm[sel, g], kernel, max_rows, eps=eps,
                                             max_iter=max_iter, s0=flip * known[sel, g])
                if solved is None:
                    return None
            a, rho, W, _, G = solved
            alpha[sel, g] = a
            score[sel, g] = flip * y * (G + 1.0)
            margin[sel] = np.minimum(margin[sel], G + 1.0 - y * rho)
            results.append((i, j, sel, a * y, -rho, W))
    del K
    # scikit-learn's layout: SVs grouped by class (row order inside a class), dual_coef (m-1, n_SV)
    is_sv = np.zeros(len(rows), bool)
    for _, _, sel, coef, _, _ in results:
        is_sv[sel[coef != 0]] = True
    order = np.concatenate([np.flatnonzero(is_sv & (rows.y == c)) for c in classes])
    position = np.full(len(rows), -1)
    position[order] = np.arange(len(order))
    dual_coef = np.zeros((m - 1, len(order)))
    for i, j, sel, coef, _, _ in results:
        nz = coef != 0
        rows_nz, coef_nz = sel[nz], coef[nz]
        of_i = rows.y[rows_nz] == classes[i]
        dual_coef[j - 1, position[rows_nz[of_i]]] = coef_nz[of_i]
        dual_coef[i, position[rows_nz[~of_i]]] = coef_nz[~of_i]
    sol = SVCSolution(classes=classes, support_ids=rows.ids[order], support_vectors=rows.X[order],
                      support_y=rows.y[order], dual_coef=dual_coef,
                      intercept=np.array([r[4] for r in results]),
                      n_support=np.array([int((rows.y[order] == c).sum()) for c in classes], dtype=np.int64),
                      objective=float(sum(r[5] for r in results)))
    keep = order
    if keep_within is not None:
        keep = np.concatenate([order, np.flatnonzero(~is_sv & (margin < 1.0 + keep_within))])
    return SVSet(rows.ids[keep], rows.X[keep], rows.y[keep], alpha[keep], score[keep]), sol


def compute_gamma(gamma: str, n_features: int, variance: float) -> float:
    """scikit-learn's ``gamma``: ``'scale'`` = 1 / (n_features * X.var()), ``'auto'`` = 1 / n_features."""
    if gamma == "scale":
        return 1.0 / (n_features * variance) if variance > 0 else 1.0
    if gamma == "auto":
        return 1.0 / n_features
    return float(gamma)
