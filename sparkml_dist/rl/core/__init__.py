"""Framework-free RL cores shared by every algorithm and both runners (numpy / torch, no Spark).

The names load on first use (PEP 562), so ``sparkml_dist.rl.core.envs`` or ``.policy`` import without torch. No
function shares its name with a submodule: importing a submodule binds its name on the package, which would hide
the function of that name from ``from sparkml_dist.rl.core import ...`` (``gae`` lives in ``advantages``,
``vtrace`` in ``off_policy``).
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {"VectorEnv": "envs", "check_env_id": "envs", "make_env_fn": "envs", "apex_epsilons": "epsilon",
          "linear_schedule": "epsilon", "gae": "advantages", "ActorCritic": "nets", "QNetwork": "nets",
          "get_flat": "nets", "set_flat": "nets", "numpy_layout": "nets", "NumpyPolicy": "policy", "NumpyQ": "policy",
          "nstep_targets": "nstep", "PrioritizedReplay": "replay", "SumTree": "replay", "vtrace": "off_policy"}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
