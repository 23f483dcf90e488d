"""One launch path for both engines: validate the input, build the data, run the algorithm's body, return one result.

:func:`launch` is what an estimator's ``_fit`` calls::

    run = launch(self.getEngine(), df, ColumnSpec("features", "label", None, "classes"), fit_body, (cfg,),
                 check=my_check, dtype=np.float32)
    model = run.result                      # body(data, cfg)'s return value (rank 0's on the BSP engine)
    run.load_seconds, run.bytes_communicated, run.layout

* ``engine="mapreduce"``: :func:`~sparkml_dist.data.blocks.to_blocks` converts and validates every partition once
  into resident blocks, ``check(stats)`` runs on the merged scan statistics, ``body(MapReduceData, *args)`` runs on
  the driver, and the blocks are removed when it returns (or raises).
* ``engine="bsp"``: one barrier stage (:func:`~sparkml_dist.runtime.barrier.run_barrier`) whose world size and
  partition placement come from one :class:`~sparkml_dist.runtime.layout.Layout` (``min(partitions, free slots)``
  ranks, each hosting whole partitions); every rank converts its partitions, the scan statistics are allgathered
  and checked identically on every rank, then ``body(BarrierData, *args)`` runs on every rank.

Errors, one way: bad input raises :class:`~sparkml_dist.data.validation.DataValidationError` (naming the column)
before any training pass, on either engine -- on BSP every rank raises it together and the barrier protocol
re-raises it on the driver as itself, without retrying the stage. Other failures follow
:func:`~sparkml_dist.runtime.barrier.run_barrier` (stage retried, then :class:`BarrierTaskError`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sparkml_dist.data.blocks import arrow_to_block, select_for_arrow, to_blocks
from sparkml_dist.data.validation import ColumnSpec, DataValidationError, ScanStats, raise_for_stats
from sparkml_dist.engine.data import BarrierData, MapReduceData

logger = logging.getLogger(__name__)

ENGINES = ("mapreduce", "bsp")


@dataclass
class EngineRun:
    """What :func:`launch` returns."""

    result: Any
    """the body's return value (rank 0's on the BSP engine)"""
    engine: str
    load_seconds: float
    """seconds to read, convert and validate the input (BSP: the slowest rank)"""
    bytes_communicated: int
    """partials and arguments moved (MapReduce: pickled task arguments and results; BSP: every rank's collectives)"""
    layout: Any = None
    """the BSP stage's :class:`~sparkml_dist.runtime.layout.Layout` (None for MapReduce)"""
    stats: ScanStats | None = None


def spec_for(featuresCol: str, weightCol: str | None = None, labelCol: str | None = None,
             labelKind: str | None = None) -> ColumnSpec:
    """The :class:`ColumnSpec` of a fit (unsupervised by default)."""
    return ColumnSpec(featuresCol=featuresCol, labelCol=labelCol or None, weightCol=weightCol or None,
                      labelKind=labelKind if labelCol else None)


def check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r}: expected one of {ENGINES}")


def launch(engine: str, df, spec: ColumnSpec, body: Callable[..., Any], args: tuple = (),
           check: Callable[[ScanStats], None] | None = None, *, dtype=np.float64, sparse: bool = False,
           timeout: float | None = 3600.0) -> EngineRun:
    """Run ``body(data, *args)`` on ``engine`` over ``df`` (see the module docstring)."""
    check_engine(engine)
    if engine == "bsp":
        return _launch_bsp(df, spec, body, tuple(args), check, dtype, sparse, timeout)
    return _launch_mapreduce(df, spec, body, tuple(args), check, dtype, sparse)


def _launch_mapreduce(df, spec, body, args, check, dtype, sparse) -> EngineRun:
    start = time.perf_counter()
    with to_blocks(df, spec.featuresCol, labelCol=spec.labelCol, weightCol=spec.weightCol, dtype=dtype,
                   sparse=sparse, labelKind=spec.labelKind) as blocks:
        load_seconds = time.perf_counter() - start
        if check is not None:
            check(blocks.stats)
        data = MapReduceData(blocks)
        result = body(data, *args)
        return EngineRun(result, "mapreduce", load_seconds, data.bytes_communicated, None, blocks.stats)


def load_rank(ctx, spec: ColumnSpec, dtype=np.float64, sparse: bool = False,
              check: Callable[[ScanStats], None] | None = None) -> BarrierData:
    """This rank's partitions as blocks (one per hosted partition, ids and row order as in the DataFrame), with the
    input checks run on the allgathered statistics: every rank raises the same :class:`DataValidationError`
    together, so none is left waiting in a collective."""
    tables = ctx.partition_tables()
    blocks, local = [], ScanStats()
    for pid in ctx.partitions:
        table = tables.get(pid)
        block, stats = arrow_to_block([] if table is None else table.to_batches(), spec, np.dtype(dtype), sparse,
                                      pid)
        blocks.append(block)
        local = local.merge(stats)
    merged = ScanStats()
    for s in ctx.allgather(local):
        merged = merged.merge(s)
    raise_for_stats(merged, spec)
    if check is not None:
        check(merged)
    return BarrierData(ctx, blocks, merged, spec)


def _bsp_rank(ctx, spec: ColumnSpec, body: Callable[..., Any], args: tuple, check, dtype, sparse) -> tuple:
    start = time.perf_counter()
    data = load_rank(ctx, spec, dtype, sparse, check)
    load_seconds = time.perf_counter() - start
    result = body(data, *args)
    return (result if ctx.rank == 0 else None), ctx.bytes_sent, load_seconds, data.stats if ctx.rank == 0 else None


def _launch_bsp(df, spec, body, args, check, dtype, sparse, timeout) -> EngineRun:
    from sparkml_dist.runtime.barrier import run_barrier

    selected = select_for_arrow(df, spec, sparse, dtype)  # checks the columns (no job); vectors cross as arrays
    if selected.rdd.getNumPartitions() == 0:  # nothing to launch: the same error to_blocks gives
        raise_for_stats(ScanStats(), spec)
    results = run_barrier(_bsp_rank, spark=df.sparkSession, df=selected,
                          args=(spec, body, args, check, dtype, sparse), timeout=timeout)
    if not results:  # pragma: no cover - Spark ran no task
        raise DataValidationError("the DataFrame is empty")
    result, _, _, stats = results[0]
    return EngineRun(result, "bsp", max(r[2] for r in results), int(sum(r[1] for r in results)), results.layout,
                     stats)
