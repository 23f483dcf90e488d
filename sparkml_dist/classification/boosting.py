"""The three distributed SAMME trainers behind :class:`~sparkml_dist.classification.adaboost.AdaBoostClassifier`.

All three work on resident float32 blocks (:func:`sparkml_dist.data.blocks.to_blocks`) and keep each partition's
sample weights and bin indices beside its block (``Block.save_state``), so no round re-ships data from the JVM.

``exact`` (:func:`fit_exact`): centralised AdaBoost, computed distributedly. One pass bins every feature (exact distinct
values, or quantile cuts), then each boosting round is **one** MapReduce step: every partition applies the previous
round's stump to its weights, builds ``H[feature, bin, class]`` and ``treeReduce`` sums them; the driver picks the
stump from prefix sums (:func:`~sparkml_dist.classification.stumps.best_stump`) and gets the round's weighted error
and the weight normaliser from the same histogram, so no extra pass is needed. With ``maxBins=0`` the result is
scikit-learn's ``AdaBoostClassifier`` (SAMME, ``DecisionTreeClassifier(max_depth=1)``) to rounding.

``lazarevic`` (:func:`fit_lazarevic`): Lazarevic & Obradovic (KDD 2001). Each partition is a site that fits a stump
to its local share of the *global* weight distribution; the stumps are exchanged and every site evaluates the ensemble
``E_t`` = weighted vote of all sites' stumps (vote = the stump's local SAMME weight); only scalars (weighted error and
weight sum) cross partitions for ``alpha_t`` and the global normalisation. Two Spark jobs per round. The final model is
the ensemble of ensembles ``sum_t alpha_t E_t``.

``pl`` (:func:`fit_pl`): AdaBoost.PL (Palit & Reddy, TKDE 2012). Every partition runs ``maxIter`` rounds of SAMME on its
own data in one job; each site's hypotheses are sorted by weight, and merged hypothesis ``t`` is the plurality vote of
the sites' ``t``-th hypotheses (a tied vote abstains, as ``sign(0)`` in the paper) with the sites' average weight.
One data pass and one communication round in total; approximate.

Partitions with no rows are skipped by all three; for ``lazarevic`` and ``pl`` so is any partition holding fewer than
two classes (a site cannot boost on one class), with a warning.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

import numpy as np

from sparkml_dist.classification.stumps import (Binning, Stump, best_stump, class_histogram,
                                                combine_ranges, merge_summaries, sklearn_feature_order,
                                                summarize_column, tree_seeds)
from sparkml_dist.runtime.logs import ProgressReporter

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
              history: list[dict] | None = None) -> "StumpEnsemble":
        """From ``[(stumps, votes, alpha, error), ...]`` in round order."""
        rows = [(s, v, t) for t, (stumps, votes, _, _) in enumerate(hypotheses) for s, v in zip(stumps, votes)]
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
            for s, v in zip(members, votes):
                if self.feature[s] >= 0 and self.improvement[s] > 0:
                    per[self.feature[s]] += v
            if votes.sum() > 0:
                out += a * per / votes.sum()
        total = self.alpha.sum()
        return out / total if total > 0 else out


def samme_weight(err: float, n_classes: int, learning_rate: float) -> float:
    return float(learning_rate * (np.log((1.0 - err) / err) + np.log(n_classes - 1.0)))


def samme_step(stump: Stump, n_classes: int, learning_rate: float, hypotheses: list,
               progress: ProgressReporter | None = None) -> tuple[Stump, float, float] | None:
    """Book one round's stump the way scikit-learn's ``_boost_discrete`` does; ``(stump, alpha, norm)`` for the
    weight update, or None when boosting stops. ``norm`` is the sum of the reweighted weights, known from the
    histogram (correct mass + miss mass * e^alpha), so no pass over the data is needed for it."""
    err = stump.miss_weight / stump.total_weight
    if err <= 0:
        hypotheses.append(([stump], [1.0], 1.0, 0.0))
        if progress is not None:
            progress.step(error=0.0, alpha=1.0, feature=stump.feature)
        return None
    if err >= 1.0 - 1.0 / n_classes:
        if not hypotheses:
            raise ValueError(f"the first stump is no better than chance (weighted error {err:.4f} >= 1 - 1/K); "
                             "AdaBoost cannot be fit")
        logger.info("adaboost: stop at round %d, stump error %.4f >= 1 - 1/K", len(hypotheses) + 1, err)
        return None
    alpha = samme_weight(err, n_classes, learning_rate)
    hypotheses.append(([stump], [1.0], alpha, err))
    if progress is not None:
        progress.step(error=err, alpha=alpha, feature=stump.feature)
    norm = (stump.total_weight - stump.miss_weight) + stump.miss_weight * np.exp(alpha)
    if not np.isfinite(norm) or norm <= 0:
        logger.warning("adaboost: sample weights overflowed at round %d; stopping (lower learningRate)",
                       len(hypotheses))
        return None
    return stump, alpha, norm


def _clip(w: np.ndarray, zero: np.ndarray | None) -> np.ndarray:
    """sklearn clips tiny weights to eps each round (issue #20320), except weights that were zero to begin with."""
    out = np.clip(w, _EPS, None)
    if zero is not None:
        out[zero] = 0.0
    return out


def _reweight(w: np.ndarray, alpha: float, miss: np.ndarray) -> np.ndarray:
    """sklearn's ``exp(log(w) + alpha * miss * (w > 0))``."""
    with np.errstate(divide="ignore"):
        return np.exp(np.log(w) + alpha * miss * (w > 0))


def _weights(block, key: str, t: int) -> np.ndarray:
    """This partition's sample weights of round ``t``, read from the file beside the block (``Block.load_state`` of
    a resident block always reads the file: another Python worker may have updated the partition since)."""
    return block.load_state(f"{key}_w{t}")


def _save_weights(block, key: str, t: int, w: np.ndarray) -> None:
    """Round ``t``'s weights, as a new file: a retried or speculative task of round ``t`` still finds round
    ``t - 1``'s and recomputes the same update instead of applying it twice. Older rounds are dropped."""
    block.save_state(f"{key}_w{t}", w)
    block.drop_state(f"{key}_w{t - 2}")


def _zero_mask(block) -> np.ndarray | None:
    return (np.asarray(block.w) == 0) if block.w is not None else None


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
        w = _clip(w, zero)
        hist = class_histogram(bins, y, w, binning.n_bins, n_classes)
        stump = best_stump(hist, binning, sklearn_feature_order(constant, seeds[t]))
        update = samme_step(stump, n_classes, learning_rate, hypotheses)
        if update is None or t == rounds - 1:
            break
        w = _reweight(w, update[1], stump.predict_bins(bins) != y) / update[2]
    return [(h[0][0], h[2], h[3]) for h in hypotheses]


# ---------------------------------------------------------------------------------------------------------------
# exact: one MapReduce step per round
# ---------------------------------------------------------------------------------------------------------------
def _summarize(block, max_bins: int):
    if block.n_rows == 0:
        return None
    X32 = np.asarray(block.X, dtype=np.float32)
    return [summarize_column(X32[:, f], max_bins) for f in range(X32.shape[1])]


def _setup(block, key: str, cuts: list[np.ndarray], n_classes: int, weight_scale: float):
    """Bin the block (kept as state), initial weights, per-bin min/max and the first histogram."""
    binning = Binning(cuts)
    n_bins = binning.n_bins
    if block.n_rows == 0:
        empty = ([np.full(b, np.inf, np.float32) for b in n_bins], [np.full(b, -np.inf, np.float32) for b in n_bins])
        return empty, np.zeros((int(n_bins.sum()), n_classes))
    X32 = np.asarray(block.X, dtype=np.float32)
    bins = binning.bin_block(X32)
    w = np.asarray(block.weights, dtype=np.float64) * weight_scale
    block.save_state(f"{key}_bins", bins)
    _save_weights(block, key, 0, w)
    ranges = binning.bin_ranges(X32, bins, w)
    hist = class_histogram(bins, np.asarray(block.y), _clip(w, _zero_mask(block)), n_bins, n_classes)
    return ranges, hist


def _combine_setup(a, b):
    return combine_ranges(a[0], b[0]), a[1] + b[1]


def _exact_round(block, key: str, n_bins: np.ndarray, n_classes: int, update: tuple, t: int):
    """Apply round ``t - 1``'s stump to this partition's weights, then return its class histogram for round ``t``."""
    if block.n_rows == 0:
        return np.zeros((int(n_bins.sum()), n_classes))
    bins = block.load_state(f"{key}_bins")
    w = _weights(block, key, t - 1)
    y = np.asarray(block.y)
    zero = _zero_mask(block)
    stump, alpha, norm = update
    w = _reweight(_clip(w, zero), alpha, stump.predict_bins(bins) != y) / norm
    _save_weights(block, key, t, w)
    return class_histogram(bins, y, _clip(w, zero), n_bins, n_classes)


def fit_exact(blocks, n_classes: int, rounds: int, learning_rate: float, max_bins: int, seed: int | None,
              weight_sum: float) -> StumpEnsemble:
    key = f"ab{uuid.uuid4().hex[:8]}"
    summaries = [s for s in blocks.map(_summarize, max_bins) if s is not None]
    binning = merge_summaries(summaries, max_bins)
    ranges, hist = blocks.aggregate(_setup, key, binning.cuts, n_classes, 1.0 / weight_sum, combine=_combine_setup)
    binning.finish(*ranges)
    n_bins = binning.n_bins
    logger.info("adaboost exact: %d features, %d bins in total (maxBins=%d)", len(n_bins), int(n_bins.sum()),
                max_bins)
    constant = binning.constant_features()
    seeds = tree_seeds(seed, rounds)
    progress = ProgressReporter("adaboost", total=rounds, rows=blocks.num_rows, logger=logger)
    hypotheses: list = []
    update = None  # the previous round's stump and alpha, applied inside the next round's pass
    for t in range(rounds):
        if t > 0:
            hist = blocks.aggregate(_exact_round, key, n_bins, n_classes, update, t)
        stump = best_stump(hist, binning, sklearn_feature_order(constant, seeds[t]))
        update = samme_step(stump, n_classes, learning_rate, hypotheses, progress)
        if update is None:
            break
    return StumpEnsemble.build(n_classes, blocks.n_features, hypotheses, progress.history)


# ---------------------------------------------------------------------------------------------------------------
# lazarevic: local stumps, global ensemble weights (scalars only)
# ---------------------------------------------------------------------------------------------------------------
def _usable(block, n_classes: int) -> bool:
    """A site can boost when its rows of nonzero weight hold at least two classes."""
    if block.n_rows == 0:
        return False
    return len(np.unique(np.asarray(block.y)[np.asarray(block.weights) > 0])) >= 2


def _laz_setup(block, key: str, max_bins: int, weight_scale: float, n_classes: int):
    if not _usable(block, n_classes):
        return None
    X32 = np.asarray(block.X, dtype=np.float32)
    binning, bins = local_binning(X32, max_bins, np.asarray(block.weights))
    block.save_state(f"{key}_bins", bins)
    _save_weights(block, key, 0, np.asarray(block.weights, dtype=np.float64) * weight_scale)
    block._state[f"{key}_binning"] = binning  # per-worker cache; rebuilt if this worker did not run setup
    return block.partition


def _laz_binning(block, key: str, max_bins: int) -> Binning:
    binning = block._state.get(f"{key}_binning")
    if binning is None:
        binning, _ = local_binning(np.asarray(block.X, dtype=np.float32), max_bins, np.asarray(block.weights))
        block._state[f"{key}_binning"] = binning
    return binning


def _laz_local_stump(block, key: str, sites: list[int], max_bins: int, n_classes: int, update, seed: int, t: int):
    """Site step of round ``t``: apply the previous ensemble's update to the local weights, fit the local stump."""
    if block.partition not in sites:
        return None
    y = np.asarray(block.y, dtype=np.int64)
    zero = _zero_mask(block)
    if update is None:
        w = _weights(block, key, 0)
    else:
        ensemble, alpha, norm = update
        miss = ensemble.hypothesis_predictions(np.asarray(block.X, dtype=np.float32))[:, -1] != y
        w = _reweight(_clip(_weights(block, key, t - 1), zero), alpha, miss) / norm
        _save_weights(block, key, t, w)
    w = _clip(w, zero)
    binning = _laz_binning(block, key, max_bins)
    hist = class_histogram(block.load_state(f"{key}_bins"), y, w, binning.n_bins, n_classes)
    order = sklearn_feature_order(binning.constant_features(), seed)
    stump = best_stump(hist, binning, order)
    return block.partition, stump


def _laz_error(block, key: str, sites: list[int], ensemble: StumpEnsemble, t: int):
    if block.partition not in sites:
        return np.zeros(2)
    w = _clip(_weights(block, key, t), _zero_mask(block))
    miss = ensemble.hypothesis_predictions(np.asarray(block.X, dtype=np.float32))[:, -1] != np.asarray(block.y)
    return np.array([float(w[miss].sum()), float(w.sum())])


def fit_lazarevic(blocks, n_classes: int, rounds: int, learning_rate: float, max_bins: int, seed: int | None,
                  weight_sum: float) -> StumpEnsemble:
    key = f"lz{uuid.uuid4().hex[:8]}"
    sites = sorted(p for p in blocks.map(_laz_setup, key, max_bins, 1.0 / weight_sum, n_classes) if p is not None)
    _warn_skipped(blocks, sites)
    seeds = tree_seeds(seed, rounds)
    progress = ProgressReporter("adaboost-lazarevic", total=rounds, rows=blocks.num_rows, logger=logger)
    hypotheses: list[tuple[list[Stump], list[float], float, float]] = []
    update = None
    for t in range(rounds):
        local = dict(r for r in blocks.map(_laz_local_stump, key, sites, max_bins, n_classes, update, seeds[t], t)
                     if r is not None)
        stumps = [local[p] for p in sites]
        # a site's vote is its stump's SAMME weight on its own data (zero if no better than chance there)
        votes = []
        for s in stumps:
            e = s.miss_weight / s.total_weight if s.total_weight > 0 else 1.0
            votes.append(samme_weight(max(e, 1e-10), n_classes, 1.0) if e < 1.0 - 1.0 / n_classes else 0.0)
        if not any(v > 0 for v in votes):
            if not hypotheses:
                raise ValueError("lazarevic: no site's first stump beats chance on its own data; nothing to boost "
                                 "(try algorithm='exact', which pools the partitions' histograms)")
            logger.info("lazarevic: stop at round %d, no site's stump beats chance locally", t + 1)
            break
        candidate = StumpEnsemble.build(n_classes, blocks.n_features, [(stumps, votes, 1.0, 0.0)])
        miss, total = blocks.aggregate(_laz_error, key, sites, candidate, t)
        err = miss / total
        if err <= 0:
            hypotheses.append((stumps, votes, 1.0, 0.0))
            progress.step(error=0.0, alpha=1.0)
            break
        if err >= 1.0 - 1.0 / n_classes:
            if not hypotheses:
                raise ValueError(f"the first round's ensemble is no better than chance (error {err:.4f})")
            break
        alpha = samme_weight(err, n_classes, learning_rate)
        hypotheses.append((stumps, votes, alpha, err))
        progress.step(error=err, alpha=alpha)
        update = (candidate, alpha, (total - miss) + miss * np.exp(alpha))
    return StumpEnsemble.build(n_classes, blocks.n_features, hypotheses, progress.history)


# ---------------------------------------------------------------------------------------------------------------
# pl: AdaBoost.PL, one pass
# ---------------------------------------------------------------------------------------------------------------
def _pl_site(block, n_classes: int, rounds: int, max_bins: int, learning_rate: float, seed: int | None,
             weight_scale: float):
    if not _usable(block, n_classes):
        return None
    X32 = np.asarray(block.X, dtype=np.float32)
    w = np.asarray(block.weights, dtype=np.float64) * weight_scale
    try:
        return block.partition, boost_local(X32, np.asarray(block.y), w, n_classes, rounds, max_bins,
                                            learning_rate, seed)
    except ValueError:  # not even the first local stump beats chance here: this site has nothing to add
        return block.partition, None


def fit_pl(blocks, n_classes: int, rounds: int, learning_rate: float, max_bins: int, seed: int | None,
           weight_sum: float) -> StumpEnsemble:
    progress = ProgressReporter("adaboost-pl", total=1, rows=blocks.num_rows, logger=logger)
    usable = dict(r for r in blocks.map(_pl_site, n_classes, rounds, max_bins, learning_rate, seed,
                                        1.0 / weight_sum) if r is not None)
    _warn_skipped(blocks, sorted(usable))
    results = {p: h for p, h in usable.items() if h}
    if not results:
        raise ValueError("pl: no site's first local stump beats chance on its own data; nothing to merge (try "
                         "algorithm='exact', which pools the partitions' histograms)")
    if len(results) < len(usable):
        logger.warning("adaboost-pl: %d site(s) could not beat chance locally and are left out",
                       len(usable) - len(results))
    sites = sorted(results)
    # each site's hypotheses sorted by weight, strongest first; merge the t-th of every site
    ordered = [sorted(results[p], key=lambda h: -h[1]) for p in sites]
    depth = min(len(h) for h in ordered)
    hypotheses = []
    for t in range(depth):
        stumps = [h[t][0] for h in ordered]
        alphas = np.array([h[t][1] for h in ordered])
        votes = [1.0] * len(stumps)  # plain plurality vote of the sites; a tie abstains
        hypotheses.append((stumps, votes, float(alphas.mean()), float(np.mean([h[t][2] for h in ordered]))))
    progress.step(sites=len(sites), rounds=depth)
    return StumpEnsemble.build(n_classes, blocks.n_features, hypotheses, progress.history)


def _warn_skipped(blocks, sites: list[int]) -> None:
    skipped = blocks.num_partitions - len(sites)
    if not sites:
        raise ValueError("no partition holds at least two classes: lazarevic/pl boost per partition and need two "
                         "classes in some partition (repartition the data randomly)")
    if skipped:
        logger.warning("adaboost: %d of %d partitions are empty or hold a single class and are left out of the "
                       "site ensemble", skipped, blocks.num_partitions)


TRAINERS = {"exact": fit_exact, "lazarevic": fit_lazarevic, "pl": fit_pl}
