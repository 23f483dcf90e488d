"""The two execution engines behind one small interface, so every algorithm is written once.

An algorithm (Lloyd, k-means||, DFCM) is a driver loop that asks its data for two things:

* ``data.sum(fn, *args)``: the element-wise sum over partitions of ``fn(block, *args)`` -- fixed-size partial
  statistics (``k x d`` sums, counts, cost);
* ``data.gather(fn, *args)``: the list of ``fn(block, *args)`` per partition, in partition order (sampled
  candidates, row counts).

Three implementations:

* :class:`MapReduceData` -- the **MapReduce engine**: resident blocks from :func:`~sparkml_dist.data.blocks.to_blocks`;
  each call is one Spark job over the blocks (``treeReduce`` for sums). The data never leaves the executors.
* :class:`BarrierData` -- the **BSP engine**: inside one barrier stage, every rank holds its partition in memory and
  runs the *same* driver loop; ``sum`` is a gloo allreduce and ``gather`` an allgather, so every rank sees identical
  numbers and takes identical decisions (random draws included: every rank seeds the same generator).
  :func:`run_bsp` launches it.
* :class:`LocalData` -- one in-memory block, for the consensus algorithm's per-site clustering and for tests.

Both distributed engines feed the identical per-partition kernels with identical partitions, so they give the same
numbers (up to the summation order of more than two partials).
"""

from __future__ import annotations

import logging
import pickle
import time
from typing import Any, Callable

import numpy as np

from sparkml_dist.data.blocks import Block, arrow_to_block, select_for_arrow, to_blocks
from sparkml_dist.data.validation import ColumnSpec, DataValidationError, ScanStats, raise_for_stats

logger = logging.getLogger(__name__)

ENGINES = ("mapreduce", "bsp")


def _flatten(obj: Any, out: list[np.ndarray]) -> Any:
    """Nested tuples/lists of arrays and numbers -> flat float64 pieces in ``out`` plus a shape template."""
    if isinstance(obj, (tuple, list)):
        return (type(obj).__name__, [_flatten(o, out) for o in obj])
    arr = np.asarray(obj, dtype=np.float64)
    out.append(arr.ravel())
    return ("leaf", arr.shape, np.ndim(obj) == 0)


def _unflatten(template: Any, flat: np.ndarray, pos: list[int]) -> Any:
    kind = template[0]
    if kind in ("tuple", "list"):
        items = [_unflatten(t, flat, pos) for t in template[1]]
        return tuple(items) if kind == "tuple" else items
    shape, scalar = template[1], template[2]
    size = int(np.prod(shape)) if shape else 1
    piece = flat[pos[0]:pos[0] + size]
    pos[0] += size
    return float(piece[0]) if scalar else piece.reshape(shape).copy()


class LocalData:
    """One in-memory block (same interface as the distributed engines)."""

    engine = "local"

    def __init__(self, X: np.ndarray, w: np.ndarray | None = None):
        self.block = Block(np.ascontiguousarray(X, dtype=np.float64), None,
                           None if w is None else np.asarray(w, dtype=np.float64))
        self.bytes_communicated = 0
        self.passes = 0

    @property
    def num_rows(self) -> int:
        return self.block.n_rows

    @property
    def n_features(self) -> int:
        return self.block.n_features

    @property
    def num_partitions(self) -> int:
        return 1

    @property
    def total_weight(self) -> float:
        return float(self.block.weights.sum())

    def sum(self, fn: Callable[..., Any], *args: Any) -> Any:
        self.passes += 1
        return fn(self.block, *args)

    def gather(self, fn: Callable[..., Any], *args: Any) -> list[Any]:
        self.passes += 1
        return [fn(self.block, *args)]


class MapReduceData:
    """Resident blocks on the executors; one Spark job per ``sum``/``gather`` (see the module docstring).

    ``bytes_communicated`` counts the pickled arguments shipped to every task plus the pickled partial results
    sent back (the payload; Spark's own framing is not counted).
    """

    engine = "mapreduce"

    def __init__(self, blocks):
        self.blocks = blocks
        self.bytes_communicated = 0
        self.passes = 0

    @property
    def num_rows(self) -> int:
        return self.blocks.num_rows

    @property
    def n_features(self) -> int:
        return self.blocks.n_features

    @property
    def num_partitions(self) -> int:
        return self.blocks.num_partitions

    @property
    def total_weight(self) -> float:
        stats = self.blocks.stats
        return float(stats.weight_sum) if self.blocks.spec.weightCol else float(stats.rows)

    def _count(self, args: tuple, result: Any, per_partition: bool) -> None:
        p = self.num_partitions
        sent = len(pickle.dumps(args, protocol=pickle.HIGHEST_PROTOCOL)) * p
        back = len(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
        self.bytes_communicated += sent + (back if per_partition else back * p)
        self.passes += 1

    def sum(self, fn: Callable[..., Any], *args: Any) -> Any:
        result = self.blocks.aggregate(fn, *args)
        self._count(args, result, per_partition=False)
        return result

    def gather(self, fn: Callable[..., Any], *args: Any) -> list[Any]:
        result = self.blocks.map(fn, *args)
        self._count(args, result, per_partition=True)
        return result


class BarrierData:
    """This rank's partition inside a barrier stage; collectives make every rank see the global numbers."""

    engine = "bsp"

    def __init__(self, ctx, block: Block, stats: ScanStats, spec: ColumnSpec):
        self.ctx = ctx
        self.block = block
        self.stats = stats
        self.spec = spec
        self.passes = 0

    @property
    def bytes_communicated(self) -> int:
        return self.ctx.bytes_sent

    @property
    def num_rows(self) -> int:
        return self.stats.rows

    @property
    def n_features(self) -> int:
        return int(self.stats.n_features or 0)

    @property
    def num_partitions(self) -> int:
        return self.ctx.world_size

    @property
    def total_weight(self) -> float:
        return float(self.stats.weight_sum) if self.spec.weightCol else float(self.stats.rows)

    def sum(self, fn: Callable[..., Any], *args: Any) -> Any:
        pieces: list[np.ndarray] = []
        template = _flatten(fn(self.block, *args), pieces)
        flat = np.concatenate(pieces) if pieces else np.zeros(0)
        self.passes += 1
        return _unflatten(template, self.ctx.allreduce(flat), [0])

    def gather(self, fn: Callable[..., Any], *args: Any) -> list[Any]:
        self.passes += 1
        return self.ctx.allgather(fn(self.block, *args))


# -------------------------------------------------------------------------------------------------------------------
# Checks and dispatch
# -------------------------------------------------------------------------------------------------------------------
def data_check(k: int, featuresCol: str, initial_width: int | None = None):
    """A check on the validated data's statistics run before any training work, on either engine."""

    def check(stats: ScanStats) -> None:
        if k > stats.rows:
            raise DataValidationError(f"k={k} is larger than the number of rows ({stats.rows}) in featuresCol="
                                      f"{featuresCol!r}")
        if initial_width is not None and initial_width != stats.n_features:
            raise DataValidationError(f"initialCenters have {initial_width} columns but featuresCol={featuresCol!r} "
                                      f"has {stats.n_features} features")

    return check


def run_engine(engine: str, df, spec, body, args: tuple, check) -> Any:
    """Run ``body(data, *args)`` on the chosen engine; the result's ``bytes_communicated`` (BSP) and
    ``load_seconds`` are filled in."""
    if engine == "bsp":
        result, nbytes, load_seconds = run_bsp(df, spec, body, args, check)
        result.bytes_communicated = nbytes
    else:
        result, load_seconds = run_mapreduce(df, spec, body, args, check)
    result.load_seconds = load_seconds
    return result


# -------------------------------------------------------------------------------------------------------------------
# Launchers
# -------------------------------------------------------------------------------------------------------------------
def spec_for(featuresCol: str, weightCol: str | None) -> ColumnSpec:
    return ColumnSpec(featuresCol=featuresCol, labelCol=None, weightCol=weightCol or None, labelKind=None)


def run_mapreduce(df, spec: ColumnSpec, body: Callable[..., Any], args: tuple = (),
                  check: Callable[[ScanStats], None] | None = None) -> tuple[Any, float]:
    """Materialise resident blocks (validating them), run ``body(data, *args)`` on the driver, drop the blocks.

    Returns the body's result and the seconds spent loading (and validating) the data.
    """
    start = time.perf_counter()
    with to_blocks(df, spec.featuresCol, weightCol=spec.weightCol, labelKind=None) as blocks:
        load_seconds = time.perf_counter() - start
        if check is not None:
            check(blocks.stats)
        return body(MapReduceData(blocks), *args), load_seconds


def _bsp_task(ctx, spec: ColumnSpec, body: Callable[..., Any], args: tuple,
              check: Callable[[ScanStats], None] | None) -> tuple:
    start = time.perf_counter()
    block, local_stats = arrow_to_block(ctx.batches(), spec, np.float64, False, ctx.rank)
    stats = ScanStats()
    for s in ctx.allgather(local_stats):
        stats = stats.merge(s)
    load_seconds = time.perf_counter() - start
    try:
        # the same checks as to_blocks, on the same merged statistics, so both engines raise the same errors
        raise_for_stats(stats, spec)
        if check is not None:
            check(stats)
        data = BarrierData(ctx, block, stats, spec)
        result = body(data, *args)
    except DataValidationError as exc:  # every rank sees the same stats, so every rank gets here together
        return ("invalid", str(exc), 0, 0.0)
    return ("ok", result if ctx.rank == 0 else None, ctx.bytes_sent, load_seconds)


def run_bsp(df, spec: ColumnSpec, body: Callable[..., Any], args: tuple = (),
            check: Callable[[ScanStats], None] | None = None,
            num_tasks: int | None = None, timeout: float | None = 3600.0) -> tuple[Any, int, float]:
    """Run ``body(BarrierData, *args)`` on every rank of one barrier stage; returns rank 0's result, the bytes
    all ranks sent and the slowest rank's seconds to load and validate its partition.

    The stage has one task per partition of ``df``, capped at the cluster's free task slots (a barrier stage needs
    all its tasks running at once); with fewer slots the data is repartitioned.
    """
    from sparkml_dist.runtime.barrier import available_slots, run_barrier

    selected = select_for_arrow(df, spec)  # checks the columns; dense vectors cross as array<double> (5x faster)
    slots = available_slots(df.sparkSession)
    n = num_tasks or max(1, min(selected.rdd.getNumPartitions(), slots))  # an empty DataFrame may have 0
    if n < selected.rdd.getNumPartitions():
        logger.info("bsp engine: %d partitions but %d task slots; repartitioning to %d",
                    selected.rdd.getNumPartitions(), slots, n)
    results = run_barrier(_bsp_task, n, spark=df.sparkSession, df=selected, args=(spec, body, args, check),
                          timeout=timeout)
    if not results:  # Spark runs no Python task for a DataFrame without rows or partitions
        raise_for_stats(ScanStats(), spec)
    status, payload = results[0][:2]
    if status == "invalid":
        raise DataValidationError(payload)
    return payload, int(sum(r[2] for r in results)), max(r[3] for r in results)
