"""Per-partition state that survives the loss of the executor holding it.

An algorithm that keeps something per row between passes (k-means|| costs, AdaBoost sample weights, an SVM scan's
stored scores) declares it as a :class:`RebuildableState`: a *name*, how version 0 is made from the rows (``init``),
how version ``t`` follows from version ``t - 1`` and the ``t``-th thing the driver recorded (``update``), and the
records so far. The driver keeps the records (they are small: the centres chosen so far, the stumps and their
weights) and ships the state object with every pass; a partition function asks ``state.get(block)``:

* the stored version ``t`` if the block has it (a retried task reads the same version: writes are atomic);
* else version ``t - 1`` plus one ``update`` (the normal step), stored as version ``t``;
* else -- the executor that held the state is gone and Spark rebuilt the block elsewhere from lineage -- version
  ``t`` replayed from ``init`` through every record, logged at WARNING. Same rows, same records, same numbers: an
  executor loss costs a recomputation, never a silently biased model.

State that cannot be replayed is read with :func:`require_state`, which raises :class:`StateLostError` naming the
partition instead of returning ``None`` into arithmetic.

Example (AdaBoost-style weights; ``stump`` is what the driver chose in a round)::

    def init(block):
        return np.full(block.n_rows, 1.0 / TOTAL_ROWS)

    def update(block, w, stump):
        return w * np.exp(stump.alpha * (stump.predict(block.X) != block.y))

    weights = RebuildableState("boost_w", init, update)
    for t in range(rounds):
        hist = data.sum(histogram, weights)          # histogram(block, state) calls state.get(block)
        stump = choose(hist)
        weights = weights.then(stump)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


class StateLostError(RuntimeError):
    """Per-partition state that cannot be rebuilt is gone (its executor was lost)."""

    retryable = False


@dataclass(frozen=True)
class RebuildableState:
    """A per-partition array defined by the rows and the driver's records (see the module docstring).

    ``init`` and ``update`` must be module-level functions (they travel to the executors with every pass) and
    deterministic; ``update`` may modify the array it is given (it is a private copy).
    """

    name: str
    """unique per fit (include a random tag: two fits may share an executor)"""
    init: Callable[[Any], np.ndarray]
    """``init(block) -> array``: version 0"""
    update: Callable[[Any, np.ndarray, Any], np.ndarray]
    """``update(block, previous, record) -> array``: the next version"""
    records: tuple = ()
    """what the driver recorded, one per version after 0"""

    @property
    def version(self) -> int:
        return len(self.records)

    def then(self, record: Any) -> RebuildableState:
        """The next version: this state after ``update`` with ``record``."""
        return replace(self, records=self.records + (record,))

    def key(self, version: int) -> str:
        return f"{self.name}@{version}"

    def get(self, block) -> np.ndarray:
        """This block's current version: stored, one step from the previous one, or replayed from the records."""
        v = self.version
        value = block.load_state(self.key(v))
        if value is not None:
            return value
        previous = block.load_state(self.key(v - 1)) if v > 0 else None
        if v == 0:
            value = self.init(block)
        elif previous is not None:
            value = self.update(block, np.array(previous, copy=True), self.records[-1])
        else:
            value = self.init(block)
            for record in self.records:
                value = self.update(block, value, record)
            if v > 1:
                logger.warning("state %r of partition %d was missing (executor lost?): rebuilt from its rows and "
                               "%d driver records", self.name, block.partition, v)
        block.save_state(self.key(v), value)
        if v >= 2:
            block.drop_state(self.key(v - 2))  # v - 1 stays for a retried task of this pass
        return value


def require_state(block, name: str) -> np.ndarray:
    """A state saved with ``block.save_state`` that has no recipe to rebuild it; :class:`StateLostError` naming the
    partition if it is gone."""
    value = block.load_state(name)
    if value is None:
        raise StateLostError(f"per-partition state {name!r} of partition {block.partition} is gone (its executor was "
                             "lost?) and cannot be rebuilt; declare it as a RebuildableState to survive executor loss")
    return value
