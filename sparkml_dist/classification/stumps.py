"""Decision stumps from weighted class histograms, with scikit-learn's split rule (numpy only, no Spark).

The distributed AdaBoost of :mod:`sparkml_dist.classification.adaboost` never sorts the data: every feature is cut once
into bins (:func:`merge_summaries` -> :class:`Binning`), each partition keeps its rows' bin indices resident, and a
boosting round only needs ``H[bin, class] = sum of sample weights`` (:func:`class_histogram`), summed over partitions.
:func:`best_stump` then scans the prefix sums of ``H`` exactly as scikit-learn's ``BestSplitter`` scans sorted values:

* candidate splits lie between consecutive distinct values ``a < b`` of a feature, skipping pairs with
  ``b <= a + 1e-7`` computed in float32 (sklearn's ``FEATURE_THRESHOLD``; features are float32 in sklearn trees);
* the threshold is ``a / 2.0 + b / 2.0`` in float64 (falling back to ``a`` if that rounds up to ``b``);
* the score is Gini's proxy improvement ``sum_c L_c^2 / W_L + sum_c R_c^2 / W_R``; the best score wins, ties go to the
  feature sklearn visits first and, within a feature, to the lowest threshold;
* leaves predict the heaviest class (lowest class index on ties).

With exact binning (every distinct value its own bin, ``maxBins=0``) this is scikit-learn's
``DecisionTreeClassifier(max_depth=1)`` on the same weights. With ``maxBins=B`` the cuts are approximate quantiles, but
a split between bins still gets sklearn's midpoint threshold, because the bins' actual minima and maxima are recorded.

Tie-breaking. sklearn visits features in a random order (a Fisher-Yates shuffle driven by its own ``rand_r`` generator,
seeded from ``random_state``) and keeps the first of exactly equal scores. Ties are real: on iris,
``petal length <= 2.45`` and ``petal width <= 0.8`` split the data identically. :func:`sklearn_feature_order`
reproduces that visiting order from the same integer seed, so with the same ``random_state`` even the chosen *feature*
of tied stumps matches; scores within ``TIE_RTOL`` of each other count as ties, since partial sums here are added in a
different order than sklearn's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: sklearn's FEATURE_THRESHOLD (a float32 constant in ``sklearn/tree/_partitioner.pxd``)
FEATURE_THRESHOLD = np.float32(1e-7)
#: relative score difference below which two candidate splits count as tied
TIE_RTOL = 1e-12
#: sklearn's RAND_R_MAX (``sklearn/utils/_random.pxd``)
RAND_R_MAX = 2147483647


# ---------------------------------------------------------------------------------------------------------------
# scikit-learn's feature visiting order
# ---------------------------------------------------------------------------------------------------------------
def _our_rand_r(state: list[int]) -> int:
    """sklearn's xorshift ``our_rand_r`` on a one-element list holding the uint32 state."""
    s = state[0] or 1
    s ^= (s << 13) & 0xFFFFFFFF
    s ^= s >> 17
    s ^= (s << 5) & 0xFFFFFFFF
    state[0] = s
    return s % (RAND_R_MAX + 1)


def tree_seeds(random_state: int | None, n: int) -> list[int]:
    """The ``random_state`` sklearn's AdaBoost gives each of its ``n`` trees (``_set_random_states``)."""
    rs = np.random.RandomState(random_state)
    return [int(rs.randint(np.iinfo(np.int32).max)) for _ in range(n)]


def sklearn_feature_order(constant: np.ndarray, tree_seed: int) -> list[int]:
    """Order in which sklearn's ``BestSplitter`` evaluates the non-constant features at the root of a tree.

    ``constant[f]`` says whether feature ``f`` is constant; ``tree_seed`` is the tree's ``random_state`` integer.
    """
    n_features = len(constant)
    rand_state = [int(np.random.RandomState(tree_seed).randint(0, RAND_R_MAX))]  # Splitter.init
    features = list(range(n_features))
    f_i, n_found, n_total, visited = n_features, 0, 0, 0
    order: list[int] = []
    # the root node knows no constants yet: n_known_constants = n_drawn_constants = 0
    while f_i > n_total and (visited < n_features or visited <= n_found):
        visited += 1
        f_j = _our_rand_r(rand_state) % (f_i - n_found) + n_found
        feat = features[f_j]
        if constant[feat]:
            features[f_j], features[n_total] = features[n_total], features[f_j]
            n_found += 1
            n_total += 1
            continue
        f_i -= 1
        features[f_i], features[f_j] = features[f_j], features[f_i]
        order.append(feat)
    return order


# ---------------------------------------------------------------------------------------------------------------
# Binning
# ---------------------------------------------------------------------------------------------------------------
def summarize_column(values: np.ndarray, max_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """One partition's summary of one float32 feature: ``(values, weights)`` for :func:`merge_summaries`.

    Exact (all distinct values with their counts) when ``max_bins == 0`` or there are few distinct values; otherwise
    ``8 * max_bins`` evenly spaced order statistics, each standing for ``n / (8 * max_bins)`` rows.
    """
    if len(values) == 0:
        return np.zeros(0, np.float32), np.zeros(0)
    uniq, counts = np.unique(values, return_counts=True)
    sketch = 8 * max_bins
    if max_bins == 0 or len(uniq) <= sketch:
        return uniq, counts.astype(np.float64)
    ranks = ((np.arange(sketch) + 0.5) * (len(values) / sketch)).astype(np.int64)
    return np.sort(values)[ranks], np.full(sketch, len(values) / sketch)


@dataclass
class Binning:
    """Per-feature cut points: feature ``f``'s bin of ``x`` is ``searchsorted(cuts[f], x, 'left')``.

    Bin ``b`` holds ``cuts[b-1] < x <= cuts[b]``. After :meth:`finish` also holds each bin's observed min and max.
    """

    cuts: list[np.ndarray]
    lo: list[np.ndarray] | None = None
    hi: list[np.ndarray] | None = None

    @property
    def n_bins(self) -> np.ndarray:
        return np.array([len(c) + 1 for c in self.cuts], dtype=np.int64)

    def bin_block(self, X32: np.ndarray) -> np.ndarray:
        """Bin indices of a block, feature-major ``(n_features, n_rows)`` int32 (contiguous per feature)."""
        out = np.empty((X32.shape[1], X32.shape[0]), dtype=np.int32)
        for f, cuts in enumerate(self.cuts):
            out[f] = np.searchsorted(cuts, X32[:, f], side="left")
        return out

    def bin_ranges(self, X32: np.ndarray, bins: np.ndarray, w: np.ndarray | None = None
                   ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per-bin min and max of a block (+inf / -inf for empty bins), combined with :func:`combine_ranges`.

        Rows of zero weight ``w`` are left out, as sklearn's splitter drops them: they move neither thresholds nor
        the constant-feature test (their weight stays zero in every round, so this holds for the whole fit)."""
        if w is not None and (w == 0).any():
            keep = w != 0
            X32, bins = X32[keep], bins[:, keep]
        lo, hi = [], []
        for f, nb in enumerate(self.n_bins):
            mn = np.full(nb, np.inf, dtype=np.float32)
            mx = np.full(nb, -np.inf, dtype=np.float32)
            np.minimum.at(mn, bins[f], X32[:, f])
            np.maximum.at(mx, bins[f], X32[:, f])
            lo.append(mn)
            hi.append(mx)
        return lo, hi

    def finish(self, lo: list[np.ndarray], hi: list[np.ndarray]) -> None:
        self.lo, self.hi = lo, hi

    def constant_features(self) -> np.ndarray:
        """sklearn's test: ``max <= min + 1e-7`` in float32."""
        assert self.lo is not None and self.hi is not None
        out = np.zeros(len(self.cuts), dtype=bool)
        for f in range(len(self.cuts)):
            nonempty = np.isfinite(self.lo[f])
            if not nonempty.any():
                out[f] = True
                continue
            mn = self.lo[f][nonempty].min()
            mx = self.hi[f][nonempty].max()
            out[f] = mx <= mn + FEATURE_THRESHOLD
        return out


def combine_ranges(a: tuple[list, list], b: tuple[list, list]) -> tuple[list, list]:
    return ([np.minimum(x, y) for x, y in zip(a[0], b[0], strict=True)],
            [np.maximum(x, y) for x, y in zip(a[1], b[1], strict=True)])


def merge_summaries(summaries: list[list[tuple[np.ndarray, np.ndarray]]], max_bins: int) -> Binning:
    """Per-partition column summaries (``summaries[p][f]``) -> global :class:`Binning`.

    ``max_bins == 0``: every distinct value gets its own bin, except that values within sklearn's ``FEATURE_THRESHOLD``
    of their predecessor (in float32) share a bin, as sklearn never splits between them. Otherwise at most
    ``max_bins`` bins with cuts at weighted quantiles (all distinct values when there are no more than ``max_bins``).
    """
    n_features = len(summaries[0])
    cuts = []
    for f in range(n_features):
        vals = np.concatenate([s[f][0] for s in summaries]).astype(np.float32)
        wts = np.concatenate([s[f][1] for s in summaries])
        order = np.argsort(vals, kind="stable")
        vals, wts = vals[order], wts[order]
        uniq, start = np.unique(vals, return_index=True)
        if max_bins == 0 or len(uniq) <= max_bins:
            # a new group starts where the gap to the previous distinct value exceeds FEATURE_THRESHOLD
            new_group = uniq[1:] > uniq[:-1] + FEATURE_THRESHOLD
            cuts.append(uniq[:-1][new_group])  # last value of every group but the final one
            continue
        group_w = np.add.reduceat(wts, start)
        cum = np.cumsum(group_w)
        targets = cum[-1] * np.arange(1, max_bins) / max_bins
        idx = np.unique(np.searchsorted(cum, targets, side="left"))
        idx = idx[idx < len(uniq) - 1]
        cuts.append(uniq[idx])
    return Binning(cuts)


# ---------------------------------------------------------------------------------------------------------------
# Histograms and the best stump
# ---------------------------------------------------------------------------------------------------------------
def class_histogram(bins: np.ndarray, y: np.ndarray, w: np.ndarray, n_bins: np.ndarray, n_classes: int) -> np.ndarray:
    """``H[offset[f] + b, c] = sum(w[i] for rows i with bin b of feature f and class c)``, flat over features."""
    offsets = np.concatenate([[0], np.cumsum(n_bins)])
    out = np.zeros((offsets[-1], n_classes))
    yi = y.astype(np.int64)
    for f in range(bins.shape[0]):
        idx = bins[f].astype(np.int64) * n_classes + yi
        out[offsets[f]:offsets[f + 1]] = np.bincount(idx, weights=w, minlength=n_bins[f] * n_classes) \
            .reshape(n_bins[f], n_classes)
    return out


@dataclass
class Stump:
    """``x[feature] <= threshold`` -> ``left`` class, else ``right``; ``split_bin`` is the last bin on the left.

    ``feature == -1`` is a single leaf (no usable split: every feature constant) predicting ``left``.
    ``improvement`` is sklearn's weighted impurity decrease (``tree_.compute_feature_importances`` before normalising).
    """

    feature: int
    threshold: float
    left: int
    right: int
    split_bin: int = -1
    improvement: float = 0.0
    miss_weight: float = 0.0
    total_weight: float = 0.0

    def predict_bins(self, bins: np.ndarray) -> np.ndarray:
        if self.feature < 0:
            return np.full(bins.shape[1], self.left, dtype=np.int64)
        return np.where(bins[self.feature] <= self.split_bin, self.left, self.right)

    def predict(self, X32: np.ndarray) -> np.ndarray:
        if self.feature < 0:
            return np.full(X32.shape[0], self.left, dtype=np.int64)
        # float32 features against a float64 threshold, as sklearn's tree does
        return np.where(X32[:, self.feature].astype(np.float64) <= self.threshold, self.left, self.right)


def argmax_ties(v: np.ndarray) -> int:
    """``argmax`` that treats values within ``TIE_RTOL`` of the maximum as equal (the lowest index wins, as in sklearn,
    whose sums of equal weights tie exactly where ours may differ in the last bit)."""
    top = float(np.max(v))
    return int(np.flatnonzero(v >= top - TIE_RTOL * abs(top))[0])


def _gini(counts: np.ndarray, total: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 - (counts * counts).sum(axis=-1) / (total * total)


def best_stump(hist: np.ndarray, binning: Binning, order: list[int] | None = None) -> Stump:
    """The stump sklearn's ``DecisionTreeClassifier(max_depth=1)`` would fit to the weights behind ``hist``.

    ``order`` is the feature visiting order for tie-breaking (default: 0, 1, 2, ...).
    """
    assert binning.lo is not None and binning.hi is not None
    n_bins = binning.n_bins
    offsets = np.concatenate([[0], np.cumsum(n_bins)])
    total = hist[:n_bins[0]].sum(axis=0) if len(n_bins) else hist.sum(axis=0)
    W = total.sum()
    root_gini = float(_gini(total, W))
    majority = argmax_ties(total)
    if order is None:
        order = [f for f in range(len(n_bins)) if not binning.constant_features()[f]]
    best_score = -np.inf
    candidates = []  # (feature, score array, left masses, positions)
    for f in order:
        h = hist[offsets[f]:offsets[f + 1]]
        lo, hi = binning.lo[f], binning.hi[f]
        nonempty = np.flatnonzero(np.isfinite(lo))
        if len(nonempty) < 2:
            continue
        # split after nonempty bin nonempty[i], before nonempty[i+1]; sklearn skips gaps <= 1e-7 in float32
        a, b = hi[nonempty[:-1]], lo[nonempty[1:]]
        ok = b > a + FEATURE_THRESHOLD
        left = np.cumsum(h, axis=0)[nonempty[:-1]]
        wl = left.sum(axis=1)
        right = total - left
        wr = W - wl
        with np.errstate(invalid="ignore", divide="ignore"):
            score = (left * left).sum(axis=1) / wl + (right * right).sum(axis=1) / wr
        ok &= (wl > 0) & (wr > 0)
        score = np.where(ok, score, -np.inf)
        if not np.isfinite(score).any():
            continue
        candidates.append((f, score, nonempty, a, b, left, h))
        best_score = max(best_score, float(score.max()))
    if not candidates:
        return Stump(-1, -2.0, majority, majority, improvement=0.0, miss_weight=float(W - total[majority]),
                     total_weight=float(W))
    tol = TIE_RTOL * abs(best_score)
    for f, score, nonempty, a, b, left, h in candidates:  # noqa: B007 - in visiting order: the first (near-)best wins
        hits = np.flatnonzero(score >= best_score - tol)
        if len(hits):
            i = int(hits[0])
            break
    # sklearn: threshold = a/2 + b/2 in float64; if it rounds to b, use a
    thr = float(np.float64(a[i]) / 2.0 + np.float64(b[i]) / 2.0)
    if thr == float(b[i]) or not np.isfinite(thr):
        thr = float(a[i])
    # the chosen split's masses from this feature's own bins (``total - left`` would leave ~1e-17 of a class that
    # lies wholly on the left: a perfect stump would then get a nonzero error and an alpha of ~37 instead of 1)
    lmass, rmass = left[i], h[nonempty[i] + 1:].sum(axis=0)
    wl, wr = float(lmass.sum()), float(rmass.sum())
    lcls, rcls = argmax_ties(lmass), argmax_ties(rmass)
    improvement = root_gini - wl / W * float(_gini(lmass, wl)) - wr / W * float(_gini(rmass, wr))
    miss = (wl - lmass[lcls]) + (wr - rmass[rcls])
    return Stump(int(f), thr, lcls, rcls, int(nonempty[i]), improvement, float(miss), float(W))
