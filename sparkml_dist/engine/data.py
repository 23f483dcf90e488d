"""The data interface every algorithm is written against, and its three implementations.

An algorithm is a driver loop that asks its ``data`` for:

* ``data.sum(fn, *args)``: the element-wise sum over partitions of ``fn(block, *args)`` -- fixed-size partial
  statistics (``k x d`` sums, counts, a cost), any nesting of tuples/lists of arrays and numbers;
* ``data.gather(fn, *args)``: ``[fn(block, *args) for every partition]`` in partition order (sampled candidates,
  row counts, per-site models);
* ``data.reduce(fn, *args, op=...)``: like ``sum`` with ``op="max"``/``"min"``, or any associative
  ``op(a, b)`` (combined in partition order);
* ``data.merge_tree(leaf, merge, *args)``: a binary merge tree: ``leaf(block, *args)`` per partition, then
  ``merge(a, b, *args)`` level by level (pairs of neighbours, partition order) up to one root -- the cascade SVM's
  shape; the merges of one level run in parallel;
* ``data.on_root(fn, *args)``: ``fn(*args)`` once -- on the driver, or on rank 0 and broadcast -- so a decision
  with its own randomness is taken once and seen identically everywhere;
* per-partition state inside ``fn``: :class:`~sparkml_dist.engine.state.RebuildableState` (``state.get(block)``).

Three implementations, so algorithms never branch on the engine:

* :class:`MapReduceData` -- the **MapReduce engine**: resident blocks from :func:`~sparkml_dist.data.blocks.to_blocks`
  (one per partition, on the executor that converted it); each call is one Spark job (``treeReduce`` for sums).
* :class:`BarrierData` -- the **BSP engine**: inside one barrier stage every rank holds its partitions in memory
  (several whole ones when there are more partitions than slots: the :class:`~sparkml_dist.runtime.layout.Layout`)
  and runs the *same* driver loop; ``sum`` is a gloo allreduce and ``gather`` an allgather, so every rank sees the
  same numbers and takes the same decisions (random draws included: every rank seeds the same generator).
* :class:`LocalData` -- one in-memory block (consensus sites' local clustering, tests).

Both distributed engines feed identical per-partition functions with identical partitions (same ids, same rows in
the same order), so they give the same numbers for every partitions/slots combination, up to the summation order of
the partials.
"""

from __future__ import annotations

import logging
import pickle
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np

from sparkml_dist.data.blocks import Block, BlockSet, add_partials
from sparkml_dist.data.validation import ColumnSpec, ScanStats

logger = logging.getLogger(__name__)

REDUCE_OPS = ("sum", "max", "min")


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


def _elementwise(op: str) -> Callable[[Any, Any], Any]:
    """The combiner of a named reduce op over nested tuples/lists/dicts of arrays and numbers."""
    if op == "sum":
        return add_partials
    ufunc = np.maximum if op == "max" else np.minimum

    def combine(a, b):
        if isinstance(a, tuple):
            return tuple(combine(x, y) for x, y in zip(a, b, strict=False))
        if isinstance(a, list):
            return [combine(x, y) for x, y in zip(a, b, strict=False)]
        if isinstance(a, dict):
            return {k: combine(a[k], b[k]) for k in a}
        out = ufunc(a, b)
        return float(out) if np.ndim(out) == 0 else out

    return combine


def _combiner(op: str | Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    if callable(op):
        return op
    if op not in REDUCE_OPS:
        raise ValueError(f"reduce op must be one of {REDUCE_OPS} or a function (a, b) -> c, got {op!r}")
    return _elementwise(op)


def _fold(values: list[Any], combine: Callable[[Any, Any], Any]) -> Any:
    out = values[0]
    for v in values[1:]:
        out = combine(out, v)
    return out


def _pairs(level: list[Any]) -> list[tuple]:
    """Neighbours of a merge-tree level: ``(a, b)`` pairs, and a lone last item as ``(a,)``."""
    return [tuple(level[i:i + 2]) for i in range(0, len(level), 2)]


def _merge_pair(pair: tuple, merge: Callable[..., Any], args: tuple) -> Any:
    return merge(pair[0], pair[1], *args) if len(pair) == 2 else pair[0]


class _Data(ABC):
    """What every implementation shares: the merge tree and the interface's bookkeeping."""

    engine = "?"
    passes: int = 0

    @abstractmethod
    def gather(self, fn: Callable[..., Any], *args: Any) -> list[Any]:
        """``fn(block, *args)`` of every partition, in partition order."""

    def _merge_level(self, pairs: list[tuple], merge: Callable[..., Any], args: tuple) -> list[Any]:
        return [_merge_pair(p, merge, args) for p in pairs]

    def merge_tree(self, leaf: Callable[..., Any], merge: Callable[..., Any], *args: Any) -> Any:
        """``leaf(block, *args)`` per partition, then ``merge(a, b, *args)`` of neighbours level by level."""
        level = self.gather(leaf, *args)
        while len(level) > 1:
            level = self._merge_level(_pairs(level), merge, args)
        return level[0]

    def on_root(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` once, on the driver (MapReduce, local); BSP: on rank 0, broadcast to every rank."""
        return fn(*args)


class LocalData(_Data):
    """One in-memory block (same interface as the distributed engines)."""

    engine = "local"

    def __init__(self, X: np.ndarray, w: np.ndarray | None = None, y: np.ndarray | None = None):
        X = X if hasattr(X, "tocsr") else np.ascontiguousarray(X, dtype=np.float64)
        self.block = Block(X, None if y is None else np.asarray(y), None if w is None else np.asarray(w, np.float64))
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

    def reduce(self, fn: Callable[..., Any], *args: Any, op: str | Callable = "sum") -> Any:
        _combiner(op)
        self.passes += 1
        return fn(self.block, *args)

    def gather(self, fn: Callable[..., Any], *args: Any) -> list[Any]:
        self.passes += 1
        return [fn(self.block, *args)]


class MapReduceData(_Data):
    """Resident blocks on the executors; one Spark job per call (see the module docstring).

    ``bytes_communicated`` counts the pickled arguments shipped to every task plus the pickled partial results
    sent back (the payload; Spark's own framing is not counted).
    """

    engine = "mapreduce"

    def __init__(self, blocks: BlockSet):
        self.blocks = blocks
        self.bytes_communicated = 0
        self.passes = 0

    @property
    def stats(self) -> ScanStats:
        return self.blocks.stats

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
    def num_classes(self) -> int:
        return self.blocks.num_classes

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

    def reduce(self, fn: Callable[..., Any], *args: Any, op: str | Callable = "sum") -> Any:
        result = self.blocks.aggregate(fn, *args, combine=_combiner(op))
        self._count(args, result, per_partition=False)
        return result

    def gather(self, fn: Callable[..., Any], *args: Any) -> list[Any]:
        result = self.blocks.map(fn, *args)
        self._count(args, result, per_partition=True)
        return result

    def _merge_level(self, pairs: list[tuple], merge: Callable[..., Any], args: tuple) -> list[Any]:
        if len(pairs) == 1:  # the root: one merge, no job worth its scheduling
            return [_merge_pair(pairs[0], merge, args)]
        sc = self.blocks.spark.sparkContext
        out = sc.parallelize(pairs, len(pairs)).map(lambda p: _merge_pair(p, merge, args)).collect()
        self._count((pairs, args), out, per_partition=True)
        return out


class BarrierData(_Data):
    """The partitions this rank hosts, inside a barrier stage; collectives make every rank see the global numbers."""

    engine = "bsp"

    def __init__(self, ctx, blocks: list[Block], stats: ScanStats, spec: ColumnSpec):
        if not blocks:
            raise ValueError(f"rank {ctx.rank} hosts no partition")
        self.ctx = ctx
        self.blocks = blocks
        self.stats = stats
        self.spec = spec
        self.passes = 0

    @property
    def block(self) -> Block:
        """The only hosted block (for code that needs exactly one; see :attr:`blocks`)."""
        if len(self.blocks) != 1:
            raise ValueError(f"rank {self.ctx.rank} hosts {len(self.blocks)} partitions; iterate data.blocks")
        return self.blocks[0]

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
        return self.ctx.layout.num_partitions if self.ctx.layout is not None else self.ctx.world_size

    @property
    def num_classes(self) -> int:
        return int(max(self.stats.label_counts) + 1) if self.stats.label_counts else 0

    @property
    def total_weight(self) -> float:
        return float(self.stats.weight_sum) if self.spec.weightCol else float(self.stats.rows)

    def _local(self, fn: Callable[..., Any], args: tuple, combine: Callable[[Any, Any], Any]) -> Any:
        return _fold([fn(b, *args) for b in self.blocks], combine)

    def sum(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.reduce(fn, *args, op="sum")

    def reduce(self, fn: Callable[..., Any], *args: Any, op: str | Callable = "sum") -> Any:
        combine = _combiner(op)
        local = self._local(fn, args, combine)
        self.passes += 1
        if callable(op):
            return _fold(self.ctx.allgather(local), combine)
        pieces: list[np.ndarray] = []
        template = _flatten(local, pieces)
        flat = np.concatenate(pieces) if pieces else np.zeros(0)
        return _unflatten(template, self.ctx.allreduce(flat, op=op), [0])

    def gather(self, fn: Callable[..., Any], *args: Any) -> list[Any]:
        self.passes += 1
        mine = [(b.partition, fn(b, *args)) for b in self.blocks]
        every = [item for part in self.ctx.allgather(mine) for item in part]
        return [value for _, value in sorted(every, key=lambda item: item[0])]

    def _merge_level(self, pairs: list[tuple], merge: Callable[..., Any], args: tuple) -> list[Any]:
        world, rank = self.ctx.world_size, self.ctx.rank
        mine = {i: _merge_pair(p, merge, args) for i, p in enumerate(pairs) if i % world == rank}
        merged: dict[int, Any] = {}
        for part in self.ctx.allgather(mine):
            merged.update(part)
        return [merged[i] for i in range(len(pairs))]

    def on_root(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.ctx.broadcast(fn(*args) if self.ctx.rank == 0 else None, root=0)
