"""Which partitions each rank of a barrier stage hosts: one validated :class:`Layout`, built and checked once.

A barrier stage needs all its tasks running at once, so its world size is ``min(partitions, free task slots)``. With
more partitions than ranks, a rank hosts *several partitions whole* (contiguous, balanced groups of partition ids):
a partition that an algorithm treats as a site stays that site, and a per-partition random draw sees the same rows
on every engine. Rows are never dealt round-robin.

How the rows get there. Spark refuses a barrier stage whose RDD chain changes the number of partitions (SPARK-24820:
no ``coalesce`` inside the stage), so grouping takes one exchange keyed by the *original* partition id: every row
carries its ``spark_partition_id()`` and a routing key chosen so that Spark's hash partitioner
(``pmod(murmur3(key), world)``) sends it to the rank that hosts its partition (:meth:`Layout.routing_keys`). The
receiving rank checks what arrived against :attr:`Layout.groups` (:meth:`Layout.check_received`), so a routing error
fails loudly instead of mixing sites. With no more partitions than slots there is no exchange: rank ``r`` reads
partition ``r``.

This is torchtitan's ``ParallelDims`` idea for a Spark job: the degrees are decided in one place, validated in
``__post_init__``, and every consumer (the BSP data interface, :func:`~sparkml_dist.runtime.barrier.run_barrier`)
reads them from here instead of recomputing ``min(partitions, slots)``.
"""

from __future__ import annotations

from dataclasses import dataclass

#: the column that carries a row's original partition id through the exchange
PARTITION_COLUMN = "__sparkml_dist_pid"
#: the routing key column (dropped before the rank sees the rows)
ROUTE_COLUMN = "__sparkml_dist_route"

_MASK = 0xFFFFFFFF


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _MASK


def spark_hash_int(value: int, seed: int = 42) -> int:
    """Spark SQL's ``hash()`` of an ``int`` (``Murmur3_x86_32.hashInt`` with Spark's seed 42), as a signed int."""
    k1 = (value & _MASK) * 0xCC9E2D51 & _MASK
    k1 = _rotl(k1, 15) * 0x1B873593 & _MASK
    h1 = seed ^ k1
    h1 = (_rotl(h1, 13) * 5 + 0xE6546B64) & _MASK
    h1 ^= 4
    h1 ^= h1 >> 16
    h1 = h1 * 0x85EBCA6B & _MASK
    h1 ^= h1 >> 13
    h1 = h1 * 0xC2B2AE35 & _MASK
    h1 ^= h1 >> 16
    return h1 - (1 << 32) if h1 & 0x80000000 else h1


class LayoutError(RuntimeError):
    """A barrier stage's partitions did not arrive where its layout put them."""


@dataclass(frozen=True)
class Layout:
    """World size and the partitions each rank hosts (validated on construction; build it with :meth:`plan`)."""

    num_partitions: int
    """partitions of the input DataFrame"""
    world_size: int
    """ranks of the barrier stage (``<= num_partitions`` and ``<= free_slots``)"""
    free_slots: int
    """free task slots when the layout was planned (the JVM's view)"""
    groups: tuple[tuple[int, ...], ...]
    """``groups[r]``: the partition ids rank ``r`` hosts, ascending, contiguous"""

    def __post_init__(self) -> None:
        if self.world_size < 1:
            raise ValueError(f"layout: world_size must be >= 1, got {self.world_size}")
        if self.world_size > self.free_slots:
            raise ValueError(f"layout: world_size={self.world_size} needs more than the {self.free_slots} free "
                             "task slots")
        if self.num_partitions < self.world_size:
            raise ValueError(f"layout: {self.num_partitions} partitions cannot fill {self.world_size} ranks")
        if len(self.groups) != self.world_size:
            raise ValueError(f"layout: {len(self.groups)} groups for world_size={self.world_size}")
        flat = [p for g in self.groups for p in g]
        if flat != list(range(self.num_partitions)) or any(not g for g in self.groups):
            raise ValueError(f"layout: groups {self.groups} must split partitions 0..{self.num_partitions - 1} "
                             "into non-empty contiguous runs, each partition exactly once")

    @classmethod
    def plan(cls, num_partitions: int, free_slots: int, world_size: int | None = None) -> Layout:
        """``world_size`` ranks (default ``min(num_partitions, free_slots)``), partitions split into balanced
        contiguous groups (the first ``num_partitions % world_size`` ranks host one more)."""
        if num_partitions < 1:
            raise ValueError(f"layout: the input has {num_partitions} partitions; it needs at least 1")
        if free_slots < 1:
            raise ValueError(f"layout: no free task slots (free_slots={free_slots})")
        world = min(num_partitions, free_slots) if world_size is None else int(world_size)
        base, extra = divmod(num_partitions, max(world, 1))
        groups, start = [], 0
        for r in range(world):
            size = base + (1 if r < extra else 0)
            groups.append(tuple(range(start, start + size)))
            start += size
        return cls(num_partitions, world, free_slots, tuple(groups))

    @property
    def needs_exchange(self) -> bool:
        """Whether some rank hosts more than one partition (so rows travel through the keyed exchange)."""
        return self.world_size < self.num_partitions

    def rank_of(self, partition: int) -> int:
        for r, g in enumerate(self.groups):
            if g[0] <= partition <= g[-1]:
                return r
        raise ValueError(f"layout: partition {partition} is not in 0..{self.num_partitions - 1}")

    def routing_keys(self) -> list[int]:
        """Per partition, an int whose Spark hash partitioning (``pmod(hash(key), world_size)``) is its rank."""
        found: dict[int, int] = {}
        candidate = 0
        while len(found) < self.world_size:
            found.setdefault(spark_hash_int(candidate) % self.world_size, candidate)
            candidate += 1
        return [found[self.rank_of(p)] for p in range(self.num_partitions)]

    def check_received(self, rank: int, partitions) -> None:
        """Raise :class:`LayoutError` if rank ``rank`` received rows of a partition it does not host."""
        stray = sorted(set(int(p) for p in partitions) - set(self.groups[rank]))
        if stray:
            raise LayoutError(f"rank {rank} hosts partitions {list(self.groups[rank])} but received rows of "
                              f"partitions {stray}: the exchange did not follow the layout")

    def describe(self) -> str:
        return (f"{self.num_partitions} partitions on {self.world_size} ranks ({self.free_slots} free slots): "
                + ", ".join(f"rank {r} <- {list(g)}" for r, g in enumerate(self.groups)))
