"""Distributed deep RL on Spark executors: DPPO, A3C, IMPALA (V-trace), Ape-X, GORILA and SEED-style inference.

Every algorithm runs through the same two runners (``runner="local"``: one process; ``runner="spark"``: actors are
long-lived Spark tasks of one barrier stage). See :mod:`sparkml_dist.rl.algorithm` for the actor/learner contract.

The names below load on first use (PEP 562): a Spark task that unpickles a torch-free actor
(:mod:`sparkml_dist.rl.actors`) imports this package without importing torch and the learners.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {"A3C": "a3c", "ApeX": "apex", "DPPO": "dppo", "GORILA": "gorila", "IMPALA": "impala", "SEED": "seed",
          "RLResult": "result", "evaluate_policy": "result", "random_policy_return": "result"}

__all__ = ["A3C", "ApeX", "DPPO", "GORILA", "IMPALA", "SEED", "RLResult", "evaluate_policy", "random_policy_return",
           "ALGORITHMS"]


def __getattr__(name: str) -> Any:
    if name == "ALGORITHMS":
        value: Any = {key: __getattr__(cls) for key, cls in
                      (("a3c", "A3C"), ("apex", "ApeX"), ("dppo", "DPPO"), ("gorila", "GORILA"), ("impala", "IMPALA"),
                       ("seed", "SEED"))}
    elif name in _NAMES:
        value = getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
