"""V-trace off-policy targets (Espeholt et al. 2018, eq. 1; deepmind/scalable_agent ``vtrace.py``)."""

from __future__ import annotations

import torch


@torch.no_grad()
def vtrace(behaviour_logp: torch.Tensor, target_logp: torch.Tensor, rewards: torch.Tensor, discounts: torch.Tensor,
           values: torch.Tensor, bootstrap_value: torch.Tensor, rho_bar: float = 1.0, c_bar: float = 1.0,
           pg_rho_bar: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """V-trace value targets ``vs`` and policy-gradient advantages of a ``[T, B]`` unroll.

    Parameters
    ----------
    behaviour_logp, target_logp : Tensor ``[T, B]``
        ``log mu(a_t|x_t)`` of the actor that acted and ``log pi(a_t|x_t)`` of the learner.
    rewards, discounts, values : Tensor ``[T, B]``
        ``discounts[t] = gamma * (1 - done_t)``; ``values[t] = V(x_t)``.
    bootstrap_value : Tensor ``[B]``
        ``V(x_T)``.

    Returns
    -------
    vs : Tensor ``[T, B]``
        ``v_s = V(x_s) + delta_s + discount_s c_s (v_{s+1} - V(x_{s+1}))``, with
        ``delta_s = rho_s (r_s + discount_s V(x_{s+1}) - V(x_s))``.
    pg_advantages : Tensor ``[T, B]``
        ``min(pg_rho_bar, pi/mu) (r_s + discount_s v_{s+1} - V(x_s))``.

    Notes
    -----
    With ``pi = mu`` and ``rho_bar, c_bar >= 1`` every ratio is 1 and ``v_s`` is the n-step return bootstrapped from
    ``V(x_T)`` (tested).
    """
    ratios = torch.exp(target_logp - behaviour_logp)
    rhos = torch.clamp(ratios, max=rho_bar)
    cs = torch.clamp(ratios, max=c_bar)
    values_next = torch.cat([values[1:], bootstrap_value.unsqueeze(0)], dim=0)
    deltas = rhos * (rewards + discounts * values_next - values)
    acc = torch.zeros_like(bootstrap_value)
    corrections = torch.zeros_like(values)
    for t in range(values.shape[0] - 1, -1, -1):
        acc = deltas[t] + discounts[t] * cs[t] * acc
        corrections[t] = acc
    vs = values + corrections
    vs_next = torch.cat([vs[1:], bootstrap_value.unsqueeze(0)], dim=0)
    pg_advantages = torch.clamp(ratios, max=pg_rho_bar) * (rewards + discounts * vs_next - values)
    return vs, pg_advantages
