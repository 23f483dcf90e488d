"""The fitted SAMME ensemble of stumps, SAMME's bookkeeping, and SAMME on one in-memory block.

Shared by the three distributed trainers (:mod:`sparkml_dist.classification.boosting`), by AdaBoost.PL's site learner
and by the model (:class:`~sparkml_dist.classification.adaboost.AdaBoostClassificationModel`). The rules are
scikit-learn's ``AdaBoostClassifier`` (SAMME) with a ``DecisionTreeClassifier(max_depth=1)`` base learner.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from sparkml_dist.classification.stumps import (
    Binning,
    Stump,
    best_stump,
    class_histogram,
    merge_summaries,
    sklearn_feature_order,
    summarize_column,
    tree_seeds,
)
from sparkml_dist.ml.errors import FitError

logger = logging.getLogger(__name__)

_EPS = np.finfo(np.float64).eps


# ---------------------------------------------------------------------------------------------------------------
# The fitted ensemble (shared by all three trainers and by the model)
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class StumpEnsemble:
    """Stumps grouped into hypotheses: hypothesis ``t`` is the ``vote``-weighted plurality of its stumps (one stump
    for ``exact``, one per site for ``lazarevic`` / ``pl``) and enters the SAMME sum with weight ``alpha[t]``."""

    n_classes: int
    n_features: int
    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    group: np.ndarray
    vote: np.ndarray
    improvement: np.ndarray
    alpha: np.ndarray
    error: np.ndarray
    history: list[dict] = field(default_factory=list)

    @classmethod
    def build(cls, n_classes: int, n_features: int, hypotheses: list[tuple[list[Stump], list[float], float, float]],
              history: list[dict] | None = None) -> StumpEnsemble:
        """From ``[(stumps, votes, alpha, error), ...]`` in round order."""
        rows = [(s, v, t) for t, (stumps, votes, _, _) in enumerate(hypotheses)
                for s, v in zip(stumps, votes, strict=True)]
        return cls(n_classes, n_features,
                   feature=np.array([s.feature for s, _, _ in rows], dtype=np.int64),
                   threshold=np.array([s.threshold for s, _, _ in rows], dtype=np.float64),
                   left=np.array([s.left for s, _, _ in rows], dtype=np.int64),
                   right=np.array([s.right for s, _, _ in rows], dtype=np.int64),
                   group=np.array([t for _, _, t in rows], dtype=np.int64),
                   vote=np.array([v for _, v, _ in rows], dtype=np.float64),
                   improvement=np.array([s.improvement for s, _, _ in rows], dtype=np.float64),
                   alpha=np.array([h[2] for h in hypotheses], dtype=np.float64),
                   error=np.array([h[3] for h in hypotheses], dtype=np.float64),
                   history=list(history or []))

    def stump_predictions(self, X32: np.ndarray) -> np.ndarray:
        """``(n, n_stumps)`` class predicted by every stump (float32 features vs float64 thresholds, as sklearn)."""
        n = X32.shape[0]
        out = np.empty((n, len(self.feature)), dtype=np.int64)
        for s, f in enumerate(self.feature):
            if f < 0:
                out[:, s] = self.left[s]
            else:
                out[:, s] = np.where(X32[:, f].astype(np.float64) <= self.threshold[s], self.left[s], self.right[s])
        return out

    def hypothesis_predictions(self, X32: np.ndarray) -> np.ndarray:
        """``(n, T)`` class predicted by every hypothesis (-1 where a hypothesis' vote is tied: it abstains)."""
        preds = self.stump_predictions(X32)
        n, T, K = X32.shape[0], len(self.alpha), self.n_classes
        out = np.empty((n, T), dtype=np.int64)
        for t in range(T):
            members = np.flatnonzero(self.group == t)
            if len(members) == 1:
                out[:, t] = preds[:, members[0]]
                continue
            votes = np.zeros((n, K))
            for s in members:
                votes[np.arange(n), preds[:, s]] += self.vote[s]
            best = np.argmax(votes, axis=1)
            # a tied vote abstains (-1): sign(0) in Palit & Reddy's merge of binary hypotheses
            tied = (votes == votes[np.arange(n), best][:, None]).sum(axis=1) > 1
            out[:, t] = np.where(tied, -1, best)
        return out

    def decision_function(self, X32: np.ndarray) -> np.ndarray:
        """scikit-learn's SAMME ``decision_function``: ``(n,)`` for two classes, ``(n, K)`` otherwise."""
        K = self.n_classes
        h = self.hypothesis_predictions(X32)
        pred = np.zeros((X32.shape[0], K))
        classes = np.arange(K)
        for t, a in enumerate(self.alpha):
            contrib = np.where(h[:, t][:, None] == classes[None, :], a, -1.0 / (K - 1) * a)
            pred += np.where(h[:, t][:, None] >= 0, contrib, 0.0)
        pred /= self.alpha.sum()
        if K == 2:
            pred[:, 0] *= -1
            return pred.sum(axis=1)
        return pred

    def predict_all(self, X32: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rawPrediction (n, K), probability (n, K), prediction (n,))`` as scikit-learn's decision/proba/predict."""
        K = self.n_classes
        dec = self.decision_function(X32)
        if K == 2:
            raw = np.column_stack([-dec, dec])
            pred = (dec > 0).astype(np.float64)
            z = raw / 2
        else:
            raw = dec
            pred = np.argmax(dec, axis=1).astype(np.float64)
            z = dec / (K - 1)
        z = z - z.max(axis=1, keepdims=True)
        prob = np.exp(z)
        prob /= prob.sum(axis=1, keepdims=True)
        return raw, prob, pred

    def feature_importances(self) -> np.ndarray:
        """scikit-learn's ``feature_importances_``: alpha-weighted mean of the stumps' (normalised) Gini importances."""
        out = np.zeros(self.n_features)
        for t, a in enumerate(self.alpha):
            members = np.flatnonzero(self.group == t)
            votes = self.vote[members]
            per = np.zeros(self.n_features)
            for s, v in zip(members, votes, strict=True):
                if self.feature[s] >= 0 and self.improvement[s] > 0:
                    per[self.feature[s]] += v
            if votes.sum() > 0:
                out += a * per / votes.sum()
        total = self.alpha.sum()
        return out / total if total > 0 else out


def samme_weight(err: float, n_classes: int, learning_rate: float) -> float:
    return float(learning_rate * (np.log((1.0 - err) / err) + np.log(n_classes - 1.0)))


def samme_step(stump: Stump, n_classes: int, learning_rate: float, first: bool) -> tuple[tuple | None, tuple | None]:
    """Book one round's stump the way scikit-learn's ``_boost_discrete`` does: ``(hypothesis, update)``.

    ``hypothesis`` is ``([stump], [1.0], alpha, error)`` to keep (None: the stump is dropped), ``update`` is
    ``(stump, alpha, norm)`` for the weights (None: boosting stops). ``norm`` is the sum of the reweighted weights,
    known from the histogram (correct mass + miss mass * e^alpha), so no pass over the data is needed for it.
    A first stump no better than chance raises :class:`~sparkml_dist.ml.errors.FitError`.
    """
    err = stump.miss_weight / stump.total_weight
    if err <= 0:
        return ([stump], [1.0], 1.0, 0.0), None
    if err >= 1.0 - 1.0 / n_classes:
        if first:
            raise FitError(f"the first stump is no better than chance (weighted error {err:.4f} >= 1 - 1/K); "
                           "AdaBoost cannot be fit")
        logger.info("adaboost: stop, stump error %.4f >= 1 - 1/K", err)
        return None, None
    alpha = samme_weight(err, n_classes, learning_rate)
    norm = (stump.total_weight - stump.miss_weight) + stump.miss_weight * np.exp(alpha)
    if not np.isfinite(norm) or norm <= 0:
        logger.warning("adaboost: sample weights overflowed; stopping (lower learningRate)")
        return ([stump], [1.0], alpha, err), None
    return ([stump], [1.0], alpha, err), (stump, alpha, norm)


def clip_weights(w: np.ndarray, zero: np.ndarray | None) -> np.ndarray:
    """sklearn clips tiny weights to eps each round (issue #20320), except weights that were zero to begin with."""
    out = np.clip(w, _EPS, None)
    if zero is not None:
        out[zero] = 0.0
    return out


def reweight(w: np.ndarray, alpha: float, miss: np.ndarray) -> np.ndarray:
    """sklearn's ``exp(log(w) + alpha * miss * (w > 0))``."""
    with np.errstate(divide="ignore"):
        return np.exp(np.log(w) + alpha * miss * (w > 0))


# ---------------------------------------------------------------------------------------------------------------
# Local SAMME on one block (AdaBoost.PL's site learner, and the numpy reference)
# ---------------------------------------------------------------------------------------------------------------
def local_binning(X32: np.ndarray, max_bins: int, w: np.ndarray | None = None) -> tuple[Binning, np.ndarray]:
    binning = merge_summaries([[summarize_column(X32[:, f], max_bins) for f in range(X32.shape[1])]], max_bins)
    bins = binning.bin_block(X32)
    binning.finish(*binning.bin_ranges(X32, bins, w))
    return binning, bins


def boost_local(X32: np.ndarray, y: np.ndarray, w: np.ndarray, n_classes: int, rounds: int, max_bins: int,
                learning_rate: float, seed: int | None) -> list[tuple[Stump, float, float]]:
    """SAMME with histogram stumps on one in-memory block: ``[(stump, alpha, error), ...]`` (sklearn's stopping)."""
    binning, bins = local_binning(X32, max_bins, w)
    constant = binning.constant_features()
    seeds = tree_seeds(seed, rounds)
    y = np.asarray(y, dtype=np.int64)
    zero = w == 0
    w = w / w.sum()
    hypotheses: list = []
    for t in range(rounds):
        w = clip_weights(w, zero)
        hist = class_histogram(bins, y, w, binning.n_bins, n_classes)
        stump = best_stump(hist, binning, sklearn_feature_order(constant, seeds[t]))
        hypothesis, update = samme_step(stump, n_classes, learning_rate, first=not hypotheses)
        if hypothesis is not None:
            hypotheses.append(hypothesis)
        if update is None or t == rounds - 1:
            break
        w = reweight(w, update[1], stump.predict_bins(bins) != y) / update[2]
    return [(h[0][0], h[2], h[3]) for h in hypotheses]
