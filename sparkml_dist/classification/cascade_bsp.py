"""``engine="bsp"`` for CascadeSVC's ``cascade`` and ``mrsmo`` modes: the whole cascade inside one Spark barrier stage.

The MapReduce engine (:func:`sparkml_dist.classification.cascade.fit_cascade`) runs every cascade step as Spark jobs:
materialise the blocks, a pass for ``gamma``, layer 1, one job per merge level, then a scan job and a re-solve job per
feedback pass -- about ten jobs of 0.1-0.3 s scheduling each, whatever the data size. Here every rank converts its
partition once (``ctx.batches()``) and keeps it, with its scan state, in memory; the merge tree, the top SVM, the
feedback scans and re-solves are the same functions as the MapReduce engine's, linked by gloo collectives
(:func:`sparkml_dist.runtime.barrier.run_barrier`): SV sets travel by ``allgather``, the top solution by
``broadcast``. Same arithmetic, so the same model as the MapReduce engine on the same partitioning.

The input checks of :func:`sparkml_dist.data.blocks.to_blocks` run on the allgathered scan statistics before any
training; a failed check comes back to the driver as the same :class:`DataValidationError`.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from sparkml_dist.classification.cascade import (
    MARGIN_BUFFER,
    CascadeResult,
    SolverConfig,
    _coefficients,
    _layer1,
    _require_solution,
    _scan_delta,
    _train_merge,
    scan_rows,
)
from sparkml_dist.classification.kernel_svm import KernelSpec, SVSet, compute_gamma
from sparkml_dist.classification.params import check_classes
from sparkml_dist.data.validation import ColumnSpec, DataValidationError
from sparkml_dist.runtime.logs import ProgressReporter

logger = logging.getLogger(__name__)


def _rank_main(ctx, spec: ColumnSpec, kernel_args: dict, solver_args: dict, max_passes: int, tol: float,
               feedback: bool):
    from sparkml_dist.classification.cascade_svc import _merge_moments, feature_moments
    from sparkml_dist.data.blocks import rank_block

    t_start = time.perf_counter()
    try:
        block, merged = rank_block(ctx, spec, np.float64)
        n_classes = check_classes(merged.label_counts, spec.labelCol or "label")
    except DataValidationError as exc:  # every rank sees the same stats: all return, none hangs
        return {"error": str(exc)}
    n_rows = int(block.n_rows)
    X = np.asarray(block.X, dtype=np.float64) if n_rows else np.zeros((0, int(merged.n_features or 0)))
    y = np.asarray(block.y).astype(np.int64) if n_rows else np.zeros(0, np.int64)
    counts = ctx.allgather(n_rows)
    offset = int(sum(counts[:ctx.rank]))
    rows = SVSet(np.arange(offset, offset + n_rows, dtype=np.int64), X, y)
    gamma = kernel_args["gamma"]
    if gamma == "scale":
        total = (0.0, 0.0, 0.0)
        for m in ctx.allgather(feature_moments(X)):
            total = _merge_moments(total, m)
        gamma = compute_gamma("scale", X.shape[1], total[2] / total[0] if total[0] else 0.0)
    else:
        gamma = compute_gamma(gamma, X.shape[1], 0.0)
    kernel = KernelSpec(kernel_args["kernel"], gamma, kernel_args["degree"], kernel_args["coef0"])
    cfg = SolverConfig(kernel, n_classes=n_classes, **solver_args)
    progress = ProgressReporter("cascade-svm-bsp" if feedback else "mrsmo-bsp", total=max_passes if feedback else 1,
                                rows=merged.rows, logger=logger) if ctx.rank == 0 else None
    setup_seconds = time.perf_counter() - t_start

    # layer 1 and the rank's own merges, then the merge tree across ranks: at level `step`, rank r (r % 2 step == 0)
    # merges its set with rank r + step's; the others drop out
    t0 = time.perf_counter()
    mine, n_leaves, leaf_sv = _layer1(rows, cfg) if n_rows else (None, 0, 0)
    layer1 = ctx.allgather((n_leaves, leaf_sv, len(mine) if mine is not None else 0))
    t1 = time.perf_counter()
    top, sol, merge_rows = mine, None, 0
    step = 1
    while step < ctx.world_size:
        sets = ctx.allgather(top if ctx.rank % (2 * step) == step else None)
        if ctx.rank % (2 * step) == 0:
            other = sets[ctx.rank + step] if ctx.rank + step < ctx.world_size else None
            parts = [s for s in (top, other) if s is not None]
            if len(parts) == 2 or (step * 2 >= ctx.world_size and parts):  # the top is always solved
                top, sol, n, _ = _train_merge(parts, cfg)
                merge_rows += n
            elif parts:  # an empty partition's partner moves up unchanged
                top = parts[0]
        step *= 2
    if ctx.world_size == 1 and top is not None:
        top, sol, n, _ = _train_merge([top], cfg)
        merge_rows += n
    merge_rows = int(sum(ctx.allgather(merge_rows)))
    sol = ctx.broadcast(_require_solution(sol) if ctx.rank == 0 else None, root=0)
    if progress is not None:
        progress.step(objective=sol.objective, relative_change=float("inf"), n_sv=len(sol.support_ids), violators=-1,
                      leaves=int(sum(r[0] for r in layer1)), leaf_sv=int(sum(r[1] for r in layer1)),
                      partition_sv=int(sum(r[2] for r in layer1)), layer1_seconds=t1 - t0,
                      merge_rows=merge_rows, merge_seconds=time.perf_counter() - t1, setup_seconds=setup_seconds)

    converged = not feedback
    working = top.ids if ctx.rank == 0 else None
    stored, scanned = None, None
    for p in range(1, max_passes if feedback else 1):
        t0 = time.perf_counter()
        working = ctx.broadcast(working, root=0)
        now = _coefficients(sol)
        delta = _scan_delta(scanned, now) if scanned is not None else None
        found, n_viol, _, stored = scan_rows(rows, sol, kernel, MARGIN_BUFFER, working, stored, delta, n_classes)
        scanned = now
        gathered = ctx.allgather((found, n_viol))
        t1 = time.perf_counter()
        decision = None
        if ctx.rank == 0:
            n_violators = int(sum(g[1] for g in gathered))
            if n_violators == 0:
                logger.info("cascade (bsp): pass %d finds no KKT violators; converged", p + 1)
                decision = ("converged", None)
            else:
                new_top, new_sol, n, _ = _train_merge([top] + [g[0] for g in gathered], cfg, True)
                new_sol = _require_solution(new_sol)
                change = abs(new_sol.objective - sol.objective) / max(abs(new_sol.objective), 1e-300)
                top = new_top
                working = top.ids
                progress.step(objective=new_sol.objective, relative_change=change, n_sv=len(new_sol.support_ids),
                              violators=n_violators, added=int(sum(len(g[0]) for g in gathered)),
                              scan_seconds=t1 - t0, merge_rows=n, merge_seconds=time.perf_counter() - t1)
                decision = ("converged" if change < tol else "continue", new_sol)
        status, new_sol = ctx.broadcast(decision, root=0)
        if new_sol is not None:
            sol = new_sol
        if status == "converged":
            converged = True
            break
    if ctx.rank != 0:
        return None
    return {"solution": sol, "kernel": kernel, "n_classes": n_classes, "n_features": int(X.shape[1]),
            "passes": len(progress.history), "converged": converged, "history": progress.history,
            "rows": int(merged.rows)}


def fit_cascade_bsp(df, spec: ColumnSpec, kernel_args: dict, solver_args: dict, max_passes: int, tol: float,
                    feedback: bool = True, num_tasks: int | None = None):
    """Cascade (``feedback``) or MRSMO in one barrier stage of ``num_tasks`` ranks (default: the input's partitions,
    capped at the cluster's free task slots). Returns ``(CascadeResult, kernel, n_classes, n_features)``."""
    from sparkml_dist.data.blocks import select_for_arrow
    from sparkml_dist.runtime.barrier import available_slots, run_barrier

    spark = df.sparkSession
    selected = select_for_arrow(df, spec, dtype=np.float64)
    tasks = num_tasks or min(selected.rdd.getNumPartitions(), available_slots(spark))
    start = time.perf_counter()
    results = run_barrier(_rank_main, tasks, spark=spark, df=selected,
                          args=(spec, kernel_args, solver_args, max_passes, tol, feedback))
    out = results[0]
    if "error" in out:
        raise DataValidationError(out["error"])
    logger.info("svm bsp: %d ranks, %d passes, %.2fs in the barrier stage", tasks, out["passes"],
                time.perf_counter() - start)
    result = CascadeResult(out["solution"], out["passes"], out["converged"], out["history"])
    return result, out["kernel"], out["n_classes"], out["n_features"]
