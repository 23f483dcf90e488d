"""Param helpers shared by every estimator of this package."""

from __future__ import annotations

import zlib


def stable_seed(name: str) -> int:
    """A fixed default seed for class ``name`` (crc32, so the same in every process; pyspark's ``HasSeed`` default,
    ``hash(class name)``, changes with ``PYTHONHASHSEED`` and so from one driver process to the next)."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF
