"""The three distributed SAMME trainers behind :class:`~sparkml_dist.classification.adaboost.AdaBoostClassifier`,
each written once against the engine's data interface (:mod:`sparkml_dist.engine`): the same loop runs on the
driver over resident blocks (MapReduce: one Spark job per data pass) and on every rank of one barrier stage (BSP:
passes are gloo collectives), and both give the same model for every partitions/slots combination.

Per-partition state is declared as :class:`~sparkml_dist.engine.state.RebuildableState`: bin indices are a function
of the rows and the driver's bin cuts; sample weights a function of the rows and the rounds booked so far (each
round's stump or ensemble, its weight and the normaliser). A lost executor costs a replay, never a wrong model.

``exact`` (:func:`fit_exact`): centralised AdaBoost, computed distributedly. One pass bins every feature (exact distinct
values, or quantile cuts), then each boosting round is **one** pass: every partition applies the previous round's
stump to its weights and builds ``H[feature, bin, class]``; the sums give the stump
(:func:`~sparkml_dist.classification.stumps.best_stump`, chosen once: ``data.on_root``), the round's weighted error
and the weight normaliser, so no extra pass is needed. With ``maxBins=0`` the result is scikit-learn's
``AdaBoostClassifier`` (SAMME, ``DecisionTreeClassifier(max_depth=1)``) to rounding.

``lazarevic`` (:func:`fit_lazarevic`): Lazarevic & Obradovic (KDD 2001). Each partition is a site that fits a stump
to its local share of the *global* weight distribution; the stumps are exchanged and every site evaluates the ensemble
``E_t`` = weighted vote of all sites' stumps (vote = the stump's local SAMME weight); only scalars (weighted error and
weight sum) cross partitions for ``alpha_t`` and the global normalisation. Two passes per round. The final model is
the ensemble of ensembles ``sum_t alpha_t E_t``.

``pl`` (:func:`fit_pl`): AdaBoost.PL (Palit & Reddy, TKDE 2012). Every partition runs ``maxIter`` rounds of SAMME on its
own data in one pass; each site's hypotheses are sorted by weight, and merged hypothesis ``t`` is the plurality vote of
the sites' ``t``-th hypotheses (a tied vote abstains, as ``sign(0)`` in the paper) with the sites' average weight.
One data pass and one communication round in total; approximate.

Partitions with no rows are skipped by all three; for ``lazarevic`` and ``pl`` so is any partition holding fewer than
two classes (a site cannot boost on one class), with a warning.
"""

from __future__ import annotations

import logging
import uuid
from functools import partial

import numpy as np

from sparkml_dist.classification.ensemble import (
    StumpEnsemble,
    boost_local,
    clip_weights,
    local_binning,
    reweight,
    samme_step,
    samme_weight,
)
from sparkml_dist.classification.stumps import (
    Binning,
    Stump,
    best_stump,
    class_histogram,
    combine_ranges,
    merge_summaries,
    sklearn_feature_order,
    summarize_column,
    tree_seeds,
)
from sparkml_dist.engine import RebuildableState
from sparkml_dist.ml.errors import FitError
from sparkml_dist.runtime.logs import ProgressReporter

logger = logging.getLogger(__name__)


def fit_adaboost(data, algorithm: str, rounds: int, learning_rate: float, max_bins: int,
                 seed: int | None) -> StumpEnsemble:
    """The engine body: ``algorithm``'s trainer on ``data`` (labels validated: ``data.num_classes >= 2``)."""
    return TRAINERS[algorithm](data, data.num_classes, rounds, learning_rate, max_bins, seed)


# ---------------------------------------------------------------------------------------------------------------
# Per-partition state: bins and sample weights, rebuilt from the rows and the driver's records
# ---------------------------------------------------------------------------------------------------------------
def _zero_mask(block) -> np.ndarray | None:
    return (np.asarray(block.w) == 0) if block.w is not None else None


def _bin_rows(block, cuts: list[np.ndarray]) -> np.ndarray:
    if block.n_rows == 0:
        return np.zeros((len(cuts), 0), dtype=np.int32)
    return Binning(cuts).bin_block(np.asarray(block.X, dtype=np.float32))


def _site_bins(block, binnings: dict[int, Binning]) -> np.ndarray:
    return binnings[block.partition].bin_block(np.asarray(block.X, dtype=np.float32))


def _no_update(block, value: np.ndarray, record) -> np.ndarray:  # pragma: no cover - bins never get records
    return value


def _initial_weights(block, scale: float) -> np.ndarray:
    return np.asarray(block.weights, dtype=np.float64) * scale


def _after_stump(bins: RebuildableState, block, w: np.ndarray, record: tuple) -> np.ndarray:
    """Weights after one exact round: ``record = (stump, alpha, norm)``."""
    stump, alpha, norm = record
    if block.n_rows == 0:
        return w
    miss = stump.predict_bins(bins.get(block)) != np.asarray(block.y)
    return reweight(clip_weights(w, _zero_mask(block)), alpha, miss) / norm


def _after_ensemble(block, w: np.ndarray, record: tuple) -> np.ndarray:
    """Weights after one lazarevic round: ``record = (round's ensemble, alpha, norm)``."""
    ensemble, alpha, norm = record
    miss = ensemble.hypothesis_predictions(np.asarray(block.X, dtype=np.float32))[:, -1] != np.asarray(block.y)
    return reweight(clip_weights(w, _zero_mask(block)), alpha, miss) / norm


def _state_name(kind: str) -> str:
    return f"ada_{kind}_{uuid.uuid4().hex[:10]}"  # unique per fit: two fits may share an executor


# ---------------------------------------------------------------------------------------------------------------
# exact: one pass per round
# ---------------------------------------------------------------------------------------------------------------
def _summarize(block, max_bins: int):
    if block.n_rows == 0:
        return None
    X32 = np.asarray(block.X, dtype=np.float32)
    return [summarize_column(X32[:, f], max_bins) for f in range(X32.shape[1])]


def _histogram(block, bins: RebuildableState, weights: RebuildableState, n_bins: np.ndarray, n_classes: int):
    if block.n_rows == 0:
        return np.zeros((int(n_bins.sum()), n_classes))
    w = clip_weights(weights.get(block), _zero_mask(block))
    return class_histogram(bins.get(block), np.asarray(block.y), w, n_bins, n_classes)


def _ranges_and_histogram(block, cuts: list[np.ndarray], bins: RebuildableState, weights: RebuildableState,
                          n_bins: np.ndarray, n_classes: int):
    """Per-bin min/max of the features (for midpoint thresholds) and the first round's histogram."""
    if block.n_rows == 0:
        empty = ([np.full(b, np.inf, np.float32) for b in n_bins], [np.full(b, -np.inf, np.float32) for b in n_bins])
        return empty, np.zeros((int(n_bins.sum()), n_classes))
    X32 = np.asarray(block.X, dtype=np.float32)
    ranges = Binning(cuts).bin_ranges(X32, bins.get(block), weights.get(block))
    return ranges, _histogram(block, bins, weights, n_bins, n_classes)


def _combine_setup(a, b):
    return combine_ranges(a[0], b[0]), a[1] + b[1]


def _choose_stump(hist: np.ndarray, binning: Binning, order: list[int]) -> Stump:
    return best_stump(hist, binning, order)


def fit_exact(data, n_classes: int, rounds: int, learning_rate: float, max_bins: int,
              seed: int | None) -> StumpEnsemble:
    summaries = [s for s in data.gather(_summarize, max_bins) if s is not None]
    binning = merge_summaries(summaries, max_bins)
    n_bins = binning.n_bins
    bins = RebuildableState(_state_name("bins"), partial(_bin_rows, cuts=binning.cuts), _no_update)
    weights = RebuildableState(_state_name("w"), partial(_initial_weights, scale=1.0 / data.total_weight),
                               partial(_after_stump, bins))
    ranges, hist = data.reduce(_ranges_and_histogram, binning.cuts, bins, weights, n_bins, n_classes,
                               op=_combine_setup)
    binning.finish(*ranges)
    logger.info("adaboost exact: %d features, %d bins in total (maxBins=%d)", len(n_bins), int(n_bins.sum()),
                max_bins)
    constant = binning.constant_features()
    seeds = tree_seeds(seed, rounds)
    progress = ProgressReporter("adaboost", total=rounds, rows=data.num_rows, logger=logger)
    hypotheses: list = []
    for t in range(rounds):
        if t > 0:
            hist = data.sum(_histogram, bins, weights, n_bins, n_classes)
        # one rank decides (BSP: rank 0, broadcast), so every rank books the same stump
        stump = data.on_root(_choose_stump, hist, binning, sklearn_feature_order(constant, seeds[t]))
        hypothesis, update = samme_step(stump, n_classes, learning_rate, first=not hypotheses)
        if hypothesis is not None:
            hypotheses.append(hypothesis)
            progress.step(error=hypothesis[3], alpha=hypothesis[2], feature=stump.feature)
        if update is None:
            break
        weights = weights.then(update)
    return StumpEnsemble.build(n_classes, data.n_features, hypotheses, progress.history)



# ---------------------------------------------------------------------------------------------------------------
# lazarevic: local stumps, global ensemble weights (scalars only)
# ---------------------------------------------------------------------------------------------------------------
def _usable(block) -> bool:
    """A site can boost when its rows of nonzero weight hold at least two classes."""
    if block.n_rows == 0:
        return False
    return len(np.unique(np.asarray(block.y)[np.asarray(block.weights) > 0])) >= 2


def _site_binning(block, max_bins: int):
    """A usable site's own bin cuts (``(partition, Binning)``; the driver keeps them as the bins' record)."""
    if not _usable(block):
        return None
    binning, _ = local_binning(np.asarray(block.X, dtype=np.float32), max_bins, np.asarray(block.weights))
    return block.partition, binning


def _laz_local_stump(block, binnings: dict[int, Binning], bins: RebuildableState, weights: RebuildableState,
                     n_classes: int, seed: int):
    """Site step of a round: the local stump on the site's current weights (``None`` off the sites)."""
    if block.partition not in binnings:
        return None
    w = clip_weights(weights.get(block), _zero_mask(block))
    binning = binnings[block.partition]
    hist = class_histogram(bins.get(block), np.asarray(block.y, dtype=np.int64), w, binning.n_bins, n_classes)
    return block.partition, best_stump(hist, binning, sklearn_feature_order(binning.constant_features(), seed))


def _laz_error(block, sites: list[int], ensemble: StumpEnsemble, weights: RebuildableState):
    if block.partition not in sites:
        return np.zeros(2)
    w = clip_weights(weights.get(block), _zero_mask(block))
    miss = ensemble.hypothesis_predictions(np.asarray(block.X, dtype=np.float32))[:, -1] != np.asarray(block.y)
    return np.array([float(w[miss].sum()), float(w.sum())])


#: how close to chance (1 - 1/K) a round's weighted error counts as chance (floating-point rounding of the sums)
CHANCE_TOLERANCE = 1e-12


def _site_vote(stump: Stump, n_classes: int) -> float:
    """A site's vote: its stump's SAMME weight on its own data (zero if no better than chance there)."""
    e = stump.miss_weight / stump.total_weight if stump.total_weight > 0 else 1.0
    return samme_weight(max(e, 1e-10), n_classes, 1.0) if e < 1.0 - 1.0 / n_classes else 0.0


def fit_lazarevic(data, n_classes: int, rounds: int, learning_rate: float, max_bins: int,
                  seed: int | None) -> StumpEnsemble:
    binnings = dict(r for r in data.gather(_site_binning, max_bins) if r is not None)
    sites = sorted(binnings)
    _warn_skipped(data, sites)
    bins = RebuildableState(_state_name("lzbins"), partial(_site_bins, binnings=binnings), _no_update)
    weights = RebuildableState(_state_name("lzw"), partial(_initial_weights, scale=1.0 / data.total_weight),
                               _after_ensemble)
    seeds = tree_seeds(seed, rounds)
    progress = ProgressReporter("adaboost-lazarevic", total=rounds, rows=data.num_rows, logger=logger)
    hypotheses: list[tuple[list[Stump], list[float], float, float]] = []
    for t in range(rounds):
        local = dict(r for r in data.gather(_laz_local_stump, binnings, bins, weights, n_classes, seeds[t])
                     if r is not None)
        stumps = [local[p] for p in sites]
        votes = [_site_vote(s, n_classes) for s in stumps]
        if not any(v > 0 for v in votes):
            if not hypotheses:
                raise FitError("lazarevic: no site's first stump beats chance on its own data; nothing to boost "
                               "(try algorithm='exact', which pools the partitions' histograms)")
            logger.info("lazarevic: stop at round %d, no site's stump beats chance locally", t + 1)
            break
        candidate = StumpEnsemble.build(n_classes, data.n_features, [(stumps, votes, 1.0, 0.0)])
        miss, total = data.sum(_laz_error, sites, candidate, weights)
        err = miss / total
        if err <= 0:
            hypotheses.append((stumps, votes, 1.0, 0.0))
            progress.step(error=0.0, alpha=1.0)
            break
        # chance within rounding: the weighted sums behind ``err`` are added in Spark's (varying) order, and a round
        # at exactly chance must stop whichever way its last bits fall (else it books an alpha of ~1e-16)
        if err >= 1.0 - 1.0 / n_classes - CHANCE_TOLERANCE:
            if not hypotheses:
                raise FitError(f"lazarevic: the first round's ensemble is no better than chance (error {err:.4f})")
            break
        alpha = samme_weight(err, n_classes, learning_rate)
        hypotheses.append((stumps, votes, alpha, err))
        progress.step(error=err, alpha=alpha)
        weights = weights.then((candidate, alpha, (total - miss) + miss * np.exp(alpha)))
    return StumpEnsemble.build(n_classes, data.n_features, hypotheses, progress.history)


# ---------------------------------------------------------------------------------------------------------------
# pl: AdaBoost.PL, one pass
# ---------------------------------------------------------------------------------------------------------------
def _pl_site(block, n_classes: int, rounds: int, max_bins: int, learning_rate: float, seed: int | None,
             weight_scale: float):
    if not _usable(block):
        return None
    X32 = np.asarray(block.X, dtype=np.float32)
    w = np.asarray(block.weights, dtype=np.float64) * weight_scale
    try:
        return block.partition, boost_local(X32, np.asarray(block.y), w, n_classes, rounds, max_bins,
                                            learning_rate, seed)
    except FitError:  # not even the first local stump beats chance here: this site has nothing to add
        return block.partition, None


def fit_pl(data, n_classes: int, rounds: int, learning_rate: float, max_bins: int,
           seed: int | None) -> StumpEnsemble:
    progress = ProgressReporter("adaboost-pl", total=1, rows=data.num_rows, logger=logger)
    usable = dict(r for r in data.gather(_pl_site, n_classes, rounds, max_bins, learning_rate, seed,
                                         1.0 / data.total_weight) if r is not None)
    _warn_skipped(data, sorted(usable))
    results = {p: h for p, h in usable.items() if h}
    if not results:
        raise FitError("pl: no site's first local stump beats chance on its own data; nothing to merge (try "
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
    return StumpEnsemble.build(n_classes, data.n_features, hypotheses, progress.history)


def _warn_skipped(data, sites: list[int]) -> None:
    if not sites:
        raise FitError("no partition holds at least two classes: lazarevic/pl boost per partition and need two "
                       "classes in some partition (repartition the data randomly)")
    skipped = data.num_partitions - len(sites)
    if skipped:
        logger.warning("adaboost: %d of %d partitions are empty or hold a single class and are left out of the "
                       "site ensemble", skipped, data.num_partitions)


TRAINERS = {"exact": fit_exact, "lazarevic": fit_lazarevic, "pl": fit_pl}
