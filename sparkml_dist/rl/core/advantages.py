"""Generalised advantage estimation (Schulman et al. 2016) over a ``[T, B]`` unroll."""

from __future__ import annotations

import torch


def gae(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, last_value: torch.Tensor,
        gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns (``advantages + values``) of an unroll.

    Parameters
    ----------
    rewards, values, dones : Tensor ``[T, B]``
        ``dones[t]`` is 1 when the episode ended with step ``t`` (no bootstrap across it).
    last_value : Tensor ``[B]``
        ``V(x_T)``, the value of the observation after the unroll.

    Notes
    -----
    ``delta_t = r_t + gamma (1 - d_t) V(x_{t+1}) - V(x_t)`` and ``A_t = delta_t + gamma lam (1 - d_t) A_{t+1}``,
    scanned backwards (CleanRL's ``ppo.py`` with its ``next_done`` shifted to the step that ended).
    """
    T = rewards.shape[0]
    not_done = 1.0 - dones.to(values.dtype)
    advantages = torch.zeros_like(values)
    next_adv = torch.zeros_like(last_value)
    next_value = last_value
    for t in range(T - 1, -1, -1):
        delta = rewards[t] + gamma * not_done[t] * next_value - values[t]
        next_adv = delta + gamma * lam * not_done[t] * next_adv
        advantages[t] = next_adv
        next_value = values[t]
    return advantages, advantages + values
