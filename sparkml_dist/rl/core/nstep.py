"""n-step transitions of a ``[T, B]`` unroll (Ape-X / GORILA replay entries, and the check of V-trace)."""

from __future__ import annotations

import numpy as np


def nstep_targets(rewards: np.ndarray, terminated: np.ndarray, dones: np.ndarray, gamma: float,
                  n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The n-step reward sums, bootstrap discounts and bootstrap steps for every start ``t`` of an unroll.

    Parameters
    ----------
    rewards, terminated, dones : array ``[T, B]``
        ``dones[t]`` ends the episode after step ``t`` (terminated or truncated); ``terminated[t]`` ends it in a
        terminal state (no bootstrap). A truncated episode bootstraps from its final observation.
    n : int
        Horizon; a window never runs past the unroll's end (``T - t`` steps at most) or an episode's end.

    Returns
    -------
    returns : ``sum_{k < m} gamma^k r_{t+k}`` over the ``m`` steps the window took
    discounts : ``gamma^m``, or 0 when the window ended in a terminal state
    last : ``t + m - 1``, the step whose next observation bootstraps the target: the target is
        ``returns + discounts * V(next_obs[last])``
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    T, B = rewards.shape
    returns = np.zeros((T, B), dtype=np.float64)
    discounts = np.ones((T, B), dtype=np.float64)
    last = np.tile(np.arange(T)[:, None], (1, B))
    open_ = np.ones((T, B), dtype=bool)  # window still accumulating
    starts = np.arange(T)
    for k in range(n):
        idx = starts + k
        valid = idx < T
        rows = np.where(valid)[0]
        step = idx[rows]
        active = open_[rows] & valid[rows, None]
        returns[rows] += np.where(active, discounts[rows] * rewards[step], 0.0)
        discounts[rows] = np.where(active, discounts[rows] * gamma, discounts[rows])
        last[rows] = np.where(active, step[:, None], last[rows])
        ended = active & dones[step].astype(bool)
        discounts[rows] = np.where(active & terminated[step].astype(bool), 0.0, discounts[rows])
        open_[rows] &= ~ended
        open_[~valid] = False
    return returns, discounts, last
