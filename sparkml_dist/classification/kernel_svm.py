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
    """Rows passed between cascade nodes: global ``ids``, features ``X``, class labels ``y``."""

    ids: np.ndarray
    X: np.ndarray
    y: np.ndarray

    @classmethod
    def empty(cls, n_features: int) -> "SVSet":
        return cls(np.zeros(0, np.int64), np.zeros((0, n_features)), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.ids)

    def union(self, *others: "SVSet") -> "SVSet":
        """Rows of all sets, each id once (first occurrence wins), sorted by id so results do not depend on order."""
        ids = np.concatenate([self.ids] + [o.ids for o in others])
        X = np.concatenate([self.X] + [o.X for o in others])
        y = np.concatenate([self.y] + [o.y for o in others])
        _, first = np.unique(ids, return_index=True)
        return SVSet(ids[first], X[first], y[first])


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
                max_iter: int = -1, objective: bool = True) -> tuple[SVSet, SVCSolution | None]:
    """libsvm on ``rows``: the support vectors (as an :class:`SVSet`) and the solution.

    With fewer than two classes there is nothing to separate: every row is passed on, and no solution is returned.
    ``objective=False`` skips the dual objective (an ``n_SV x n_SV`` kernel pass) for nodes whose value nobody reads.
    """
    from sklearn.svm import SVC

    if len(rows) == 0 or len(np.unique(rows.y)) < 2:
        return rows, None
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
    return SVSet(rows.ids[support], rows.X[support], rows.y[support]), sol


def compute_gamma(gamma: str, n_features: int, variance: float) -> float:
    """scikit-learn's ``gamma``: ``'scale'`` = 1 / (n_features * X.var()), ``'auto'`` = 1 / n_features."""
    if gamma == "scale":
        return 1.0 / (n_features * variance) if variance > 0 else 1.0
    if gamma == "auto":
        return 1.0 / n_features
    return float(gamma)
