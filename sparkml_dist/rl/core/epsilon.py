"""Exploration schedules: Ape-X's per-actor constant epsilons and a linear decay."""

from __future__ import annotations

import numpy as np


def apex_epsilons(num_actors: int, eps: float = 0.4, alpha: float = 7.0) -> np.ndarray:
    """Ape-X's per-actor epsilons ``eps_i = eps ** (1 + alpha * i / (N - 1))`` for ``i = 0 .. N-1``.

    Horgan et al. 2018, section 4.1 (RLlib's ``PerWorkerEpsilonGreedy`` uses the same formula). With one actor the
    exponent's ``i / (N - 1)`` is 0/0; that actor gets ``eps`` (the most exploratory end of the range), so a one-actor
    run still explores.
    """
    if not isinstance(num_actors, (int, np.integer)) or num_actors < 1:
        raise ValueError(f"num_actors must be a positive integer, got {num_actors!r}")
    if num_actors == 1:
        return np.array([eps], dtype=np.float64)
    i = np.arange(num_actors, dtype=np.float64)
    return eps ** (1.0 + alpha * i / (num_actors - 1))


def linear_schedule(start: float, end: float, duration: float, t: float) -> float:
    """``start`` moving linearly to ``end`` over ``duration`` (then held), as CleanRL's DQN epsilon."""
    if duration <= 0:
        return end
    if t >= duration:
        return end
    return start + (end - start) * max(0.0, t / duration)
