"""Runners: the same actor and learner objects in one process (``local``) or as Spark tasks (``spark``).

``run_local`` and ``run_spark`` load on first use (PEP 562): an actor task imports :mod:`.task` and :mod:`.channel`
from this package without the learners' torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["run_local", "run_spark"]


def __getattr__(name: str) -> Any:
    if name == "run_local":
        from sparkml_dist.rl.runners.local import run_local as value
    elif name == "run_spark":
        from sparkml_dist.rl.runners.spark import run_spark as value
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value
