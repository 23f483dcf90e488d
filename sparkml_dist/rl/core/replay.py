"""Proportional prioritised replay on a sum-tree (Schaul et al. 2016; Ape-X's central replay).

The tree is one flat array of ``2 * capacity`` floats in heap layout (node ``i`` has children ``2i`` and ``2i+1``,
leaves at ``capacity + j``), with ``capacity`` rounded up to a power of two so every leaf sits at the same depth.
Updating a batch of leaves and sampling a batch both walk the ``log2(capacity)`` levels once per item, in two small
numba kernels: O(batch log n). (The same walk vectorised over the batch in numpy cost ~0.3 ms per Ape-X learner step
here, ~1.3 ms beside two busy actors: 16 levels of a few array ops each, more than the DQN step's arithmetic.)
"""

from __future__ import annotations

import numpy as np

_KERNELS: dict = {}


def _kernel(fn):
    """``fn`` compiled by numba (cached on disk), imported on first use: processes that never build a tree (the
    torch-free actors) do not load numba."""
    if fn.__name__ not in _KERNELS:
        from numba import njit

        _KERNELS[fn.__name__] = njit(cache=True, nogil=True)(fn)
    return _KERNELS[fn.__name__]


def _update_paths(nodes, node, priority, leaves, capacity):  # pragma: no cover - compiled (numba)
    """Set ``nodes[node[i]] = priority[i]`` in order and re-add the sums above each; returns the nodes written, or
    before writing anything -1 (a priority negative or not finite) or -2 (a leaf outside ``[0, capacity)``)."""
    for i in range(node.size):
        if not (0.0 <= priority[i] < np.inf):
            return -1
        if node[i] < leaves or node[i] >= leaves + capacity:
            return -2
    writes = 0
    for i in range(node.size):
        j = node[i]
        nodes[j] = priority[i]
        writes += 1
        while j > 1:
            j >>= 1
            nodes[j] = nodes[2 * j] + nodes[2 * j + 1]
            writes += 1
    return writes


def _descend(nodes, mass, depth, leaves, capacity, out):  # pragma: no cover - compiled (numba)
    """For each mass, walk from the root to the leaf whose cumulative interval holds it; writes leaf numbers (clamped
    to ``capacity - 1``) to ``out`` and returns how many landed on an empty leaf (float round-off at the right)."""
    empty = 0
    for i in range(mass.size):
        m = mass[i]
        j = 1
        for _ in range(depth):
            left = 2 * j
            if m >= nodes[left]:
                m -= nodes[left]
                j = left + 1
            else:
                j = left
        leaf = min(j - leaves, capacity - 1)
        out[i] = leaf
        if nodes[leaves + leaf] <= 0:
            empty += 1
    return empty


def load_kernels() -> None:
    """Import numba and load (or compile) both kernels now: the first tree otherwise pays it, ~1.3 s here, on its
    first update (a benchmark's warm-up calls this, as it imports torch before timing)."""
    tree = SumTree(2)
    tree.update(np.array([0]), np.array([1.0]))
    tree.find(np.array([0.5]))


class SumTree:
    """Sums of non-negative leaf priorities; prefix-sum search for proportional sampling."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.leaves = 1 << max(0, int(np.ceil(np.log2(capacity))))
        self.depth = int(np.log2(self.leaves))
        self.nodes = np.zeros(2 * self.leaves, dtype=np.float64)
        #: tree nodes written by the last :meth:`update` (per item: its leaf plus one node per level)
        self.last_update_writes = 0

    @property
    def total(self) -> float:
        return float(self.nodes[1])

    def get(self, index: np.ndarray) -> np.ndarray:
        return self.nodes[self.leaves + np.asarray(index)]

    def update(self, index: np.ndarray, priority: np.ndarray) -> None:
        """Set leaves ``index`` to ``priority`` and repair the sums on their paths to the root."""
        index = np.asarray(index, dtype=np.int64).ravel()
        priority = np.asarray(priority, dtype=np.float64).ravel()
        # items in order (a duplicate: the last write wins), each repairing its path to the root; the kernel checks
        # every priority before it writes any
        writes = _kernel(_update_paths)(self.nodes, self.leaves + index, priority, self.leaves, self.capacity)
        if writes == -2:
            raise IndexError(f"leaf index out of range [0, {self.capacity})")
        if writes < 0:
            raise ValueError("priorities must be finite and >= 0")
        self.last_update_writes = writes

    def find(self, mass: np.ndarray) -> np.ndarray:
        """For each ``mass`` in ``[0, total)``, the leaf whose cumulative interval contains it."""
        mass = np.ascontiguousarray(mass, dtype=np.float64)
        leaf = np.empty(mass.shape, dtype=np.int64)
        empty = _kernel(_descend)(self.nodes, mass.ravel(), self.depth, self.leaves, self.capacity, leaf.ravel())
        if empty:  # float round-off landed on an empty leaf at the far right: step back to the last non-empty one
            miss = self.nodes[self.leaves + leaf] <= 0
            nonzero = np.flatnonzero(self.nodes[self.leaves:self.leaves + self.capacity] > 0)
            pos = np.searchsorted(nonzero, leaf[miss], side="right") - 1
            leaf[miss] = nonzero[np.clip(pos, 0, nonzero.size - 1)]
        return leaf

    def sample(self, batch: int, rng: np.random.Generator) -> np.ndarray:
        """``batch`` leaves drawn proportionally to priority (stratified: one draw per equal slice of the mass)."""
        if self.total <= 0:
            raise ValueError("cannot sample from an empty sum-tree")
        total = self.total
        mass = np.arange(batch, dtype=np.float64)
        mass += rng.random(batch)
        mass *= total / batch
        return self.find(np.minimum(mass, np.nextafter(total, 0), out=mass))


def replay_nbytes(capacity: int, fields: dict) -> int:
    """Bytes a :class:`PrioritizedReplay` of ``capacity`` allocates up front (its columns and its sum-tree)."""
    row = sum(int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize for shape, dtype in fields.values())
    leaves = 1 << max(0, int(np.ceil(np.log2(capacity))))
    return capacity * row + 2 * leaves * 8


class PrioritizedReplay:
    """FIFO ring of transitions with sum-tree priorities ``p_i^alpha`` and importance weights ``(N P(i))^-beta``.

    ``alpha = 0`` gives uniform replay (GORILA's learners use it that way).

    Parameters
    ----------
    capacity : int
        Transitions kept; the oldest is evicted first (bounded memory).
    fields : dict
        name -> (shape, dtype) of each stored column, e.g. ``{"obs": ((4,), np.float32), "action": ((), np.int64)}``.
    """

    def __init__(self, capacity: int, fields: dict, alpha: float = 0.6, beta: float = 0.4, eps: float = 1e-6):
        self.capacity = capacity
        self.alpha = alpha
        self.beta = beta
        self.eps = eps
        self.tree = SumTree(capacity)
        self.data = {k: np.zeros((capacity, *shape), dtype=dtype) for k, (shape, dtype) in fields.items()}
        self.size = 0
        self.cursor = 0
        self.max_priority = 1.0

    def __len__(self) -> int:
        return self.size

    def add(self, batch: dict, priorities: np.ndarray | None = None) -> None:
        """Append a batch (dict of arrays with a common first axis); ``None`` priorities get the running maximum."""
        n = len(next(iter(batch.values())))
        if n == 0:
            return
        if n > self.capacity:
            batch = {k: v[-self.capacity:] for k, v in batch.items()}
            priorities = None if priorities is None else np.asarray(priorities)[-self.capacity:]
            n = self.capacity
        idx = (self.cursor + np.arange(n)) % self.capacity
        for key, column in self.data.items():
            column[idx] = batch[key]
        if priorities is None:
            p = np.full(n, self.max_priority)
        else:
            p = np.abs(np.asarray(priorities, dtype=np.float64)) + self.eps
            self.max_priority = max(self.max_priority, float(p.max()))
        self.tree.update(idx, p ** self.alpha)
        self.cursor = int((self.cursor + n) % self.capacity)
        self.size = min(self.capacity, self.size + n)

    def sample(self, batch: int, rng: np.random.Generator) -> tuple[dict, np.ndarray, np.ndarray]:
        """A batch, its indices (for :meth:`update_priorities`) and normalised importance-sampling weights."""
        idx = self.tree.sample(batch, rng)
        # (N P(i))^-beta over its maximum, the weight of the least likely draw: (p_i / p_min)^-beta
        prio = self.tree.get(idx)
        weights = np.divide(prio, prio.min(), out=prio)
        np.power(weights, -self.beta, out=weights)
        return {k: v.take(idx, axis=0) for k, v in self.data.items()}, idx, weights.astype(np.float32)

    def update_priorities(self, idx: np.ndarray, priorities: np.ndarray) -> None:
        p = np.abs(np.asarray(priorities, dtype=np.float64)) + self.eps
        self.max_priority = max(self.max_priority, float(p.max()))
        self.tree.update(idx, p ** self.alpha)

    def state_dict(self) -> dict:
        return {"data": {k: v[:self.size].copy() if self.size < self.capacity else v.copy()
                         for k, v in self.data.items()},
                "priorities": self.tree.get(np.arange(self.size)).copy(), "size": self.size,
                "cursor": self.cursor, "max_priority": self.max_priority}

    def load_state_dict(self, state: dict) -> None:
        n = state["size"]
        for key, column in self.data.items():
            column[:n] = state["data"][key][:n]
        self.size, self.cursor, self.max_priority = n, state["cursor"], state["max_priority"]
        self.tree.update(np.arange(n), state["priorities"])
