"""``algorithm="exact"`` on the BSP engine: the whole boosting loop inside one Spark barrier stage.

The MapReduce engine (:func:`sparkml_dist.classification.boosting.fit_exact`) pays one Spark job per round, about
0.2-0.4 s of scheduling on a small cluster whatever the data size. Here every rank converts its partition to a block
once (``ctx.batches()``), and each round is one gloo ``allreduce`` of the class histogram
(:func:`sparkml_dist.runtime.barrier.run_barrier`): milliseconds. Rank 0 picks the stump and broadcasts it, so all
ranks update their weights identically; the arithmetic is the same as the MapReduce engine's, and so are the stumps.

The input checks of :func:`sparkml_dist.data.blocks.to_blocks` run on the allgathered scan statistics before any
boosting; a failed check comes back to the driver as the same :class:`DataValidationError`.
"""

from __future__ import annotations

import logging

import numpy as np

from sparkml_dist.classification.boosting import StumpEnsemble, _clip, _reweight, _summarize, samme_step
from sparkml_dist.classification.params import check_classes
from sparkml_dist.classification.stumps import (best_stump, class_histogram, merge_summaries,
                                                sklearn_feature_order, tree_seeds)
from sparkml_dist.data.validation import ColumnSpec, DataValidationError
from sparkml_dist.runtime.logs import ProgressReporter

logger = logging.getLogger(__name__)


def _rank_main(ctx, spec: ColumnSpec, rounds: int, learning_rate: float, max_bins: int, seed: int | None):
    from sparkml_dist.data.blocks import rank_block

    try:
        block, merged = rank_block(ctx, spec, np.float32)
        n_classes = check_classes(merged.label_counts, spec.labelCol or "label")
    except DataValidationError as exc:  # every rank sees the same stats: all return, none hangs
        return {"error": str(exc)}
    weight_sum = merged.weight_sum if spec.weightCol else float(merged.rows)
    summaries = [s for s in ctx.allgather(_summarize(block, max_bins)) if s is not None]
    binning = merge_summaries(summaries, max_bins)
    n_bins = binning.n_bins
    y = np.asarray(block.y, dtype=np.int64) if block.y is not None else np.zeros(0, np.int64)
    if block.n_rows:
        X32 = np.asarray(block.X, dtype=np.float32)
        bins = binning.bin_block(X32)
        w = np.asarray(block.weights, dtype=np.float64) / weight_sum
        lo, hi = binning.bin_ranges(X32, bins, w)
        zero = (np.asarray(block.w) == 0) if block.w is not None else None
    else:  # an empty partition still takes part in every collective
        bins = np.zeros((len(n_bins), 0), dtype=np.int32)
        lo = [np.full(b, np.inf, np.float32) for b in n_bins]
        hi = [np.full(b, -np.inf, np.float32) for b in n_bins]
        w, zero = np.zeros(0), None
    lo_all = ctx.allreduce(np.concatenate(lo), op="min")
    hi_all = ctx.allreduce(np.concatenate(hi), op="max")
    splits = np.cumsum(n_bins)[:-1]
    binning.finish(np.split(lo_all, splits), np.split(hi_all, splits))
    constant = binning.constant_features()
    seeds = tree_seeds(seed, rounds)
    progress = ProgressReporter("adaboost-bsp", total=rounds, rows=merged.rows, logger=logger) if ctx.rank == 0 \
        else None
    hypotheses: list = []
    for t in range(rounds):
        w = _clip(w, zero)
        hist = ctx.allreduce(class_histogram(bins, y, w, n_bins, n_classes))
        update = None
        if ctx.rank == 0:
            stump = best_stump(hist, binning, sklearn_feature_order(constant, seeds[t]))
            update = samme_step(stump, n_classes, learning_rate, hypotheses, progress)
        update = ctx.broadcast(update, root=0)
        if update is None or t == rounds - 1:
            break
        stump, alpha, norm = update
        w = _reweight(w, alpha, stump.predict_bins(bins) != y) / norm
    if ctx.rank != 0:
        return None
    return {"n_classes": n_classes, "n_features": int(merged.n_features or 0), "hypotheses": hypotheses,
            "history": progress.history if progress else [], "rows": merged.rows}


def fit_exact_bsp(df, spec: ColumnSpec, rounds: int, learning_rate: float, max_bins: int, seed: int | None,
                  num_tasks: int | None = None) -> tuple[StumpEnsemble, int]:
    """Exact SAMME in one barrier stage of ``num_tasks`` ranks (default: the input's partitions, capped at the
    cluster's free task slots). Returns the ensemble and the number of training rows."""
    from sparkml_dist.runtime.barrier import available_slots, run_barrier

    spark = df.sparkSession
    try:  # Vector -> array<float> in the JVM: Arrow converts arrays several times faster than the Vector struct
        from sparkml_dist.data.blocks import select_for_arrow

        selected = select_for_arrow(df, spec, dtype=np.float32)
    except ImportError:
        from sparkml_dist.data.validation import check_columns

        check_columns(df, spec)
        selected = df.select(*spec.columns())
    tasks = num_tasks or min(selected.rdd.getNumPartitions(), available_slots(spark))
    results = run_barrier(_rank_main, tasks, spark=spark, df=selected,
                          args=(spec, rounds, learning_rate, max_bins, seed))
    out = results[0]
    if "error" in out:
        raise DataValidationError(out["error"])
    ensemble = StumpEnsemble.build(out["n_classes"], out["n_features"], out["hypotheses"], out["history"])
    logger.info("adaboost bsp: %d ranks, %d rounds, %.2fs in the barrier stage", tasks, len(ensemble.alpha),
                getattr(results, "seconds", float("nan")))
    return ensemble, int(out["rows"])

