"""What a training run returns: the policy, its history and stats; greedy evaluation; save/load."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from sparkml_dist.rl.core.envs import VectorEnv


def evaluate_policy(policy: torch.nn.Module, env_id: str, episodes: int = 10, seed: int = 10_000) -> float:
    """Mean undiscounted return of ``episodes`` greedy episodes (one env per episode, seeds ``seed + i``)."""
    return _mean_return(lambda env: lambda obs: policy.env_action(policy.act(obs, greedy=True)[0]), env_id,
                        episodes, seed)


def random_policy_return(env_id: str, episodes: int = 10, seed: int = 10_000, rng_seed: int = 0) -> float:
    """Mean return of uniformly random actions on the episodes :func:`evaluate_policy` plays (the floor a trained
    policy must clear)."""
    def actor(env):
        space = env.action_space
        space.seed(rng_seed)
        return lambda obs: np.stack([space.sample() for _ in range(len(obs))])

    return _mean_return(actor, env_id, episodes, seed)


def _mean_return(actor, env_id: str, episodes: int, seed: int) -> float:
    """The episode loop of both: ``actor(env)`` gives ``act(obs batch) -> env actions``; runs until every one of
    the ``episodes`` envs finished an episode."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    env = VectorEnv(env_id, episodes, seed)
    act = actor(env)
    returns = np.full(episodes, np.nan)
    running = np.zeros(episodes)
    try:
        while np.isnan(returns).any():
            _, rewards, _, dones, _ = env.step(act(env.obs))
            running += rewards
            first = dones & np.isnan(returns)
            returns[first] = running[first]
            running[dones] = 0.0
    finally:
        env.close()
    return float(returns.mean())


@dataclass
class RLResult:
    """A trained policy with its run record.

    Attributes
    ----------
    policy : torch.nn.Module
        ``ActorCritic`` or ``QNetwork``; ``policy.act(obs, greedy=True)`` gives actions for a batch of observations.
    history : list of dict
        One row per report: ``env_steps``, ``return`` (mean of the last finished episodes), ``loss``,
        ``policy_lag`` (learner version minus the version that acted), ``env_steps_per_s``, ``seconds``.
    stats : dict
        Totals: env steps, learner updates, seconds, actor restarts, mean/max policy lag, payload bytes, ...
    """

    algorithm: str
    config: dict
    policy: torch.nn.Module
    history: list[dict] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    def evaluate(self, episodes: int = 10, seed: int = 10_000) -> float:
        """Mean greedy return over ``episodes`` fresh episodes of the training env."""
        return evaluate_policy(self.policy, self.config["env"], episodes, seed)

    def save(self, path: str) -> None:
        """``path/policy.pt`` (state dict) and ``path/run.json`` (algorithm, config, history, stats)."""
        os.makedirs(path, exist_ok=True)
        torch.save(self.policy.state_dict(), os.path.join(path, "policy.pt"))
        with open(os.path.join(path, "run.json"), "w") as fh:
            json.dump({"algorithm": self.algorithm, "config": self.config, "history": self.history,
                       "stats": self.stats}, fh, indent=1, default=float)

    @classmethod
    def load(cls, path: str) -> RLResult:
        from sparkml_dist.rl import ALGORITHMS

        with open(os.path.join(path, "run.json")) as fh:
            meta = json.load(fh)
        algo = ALGORITHMS[meta["algorithm"]](**meta["config"])
        policy = algo.make_policy()
        policy.load_state_dict(torch.load(os.path.join(path, "policy.pt"), weights_only=True))
        return cls(meta["algorithm"], meta["config"], policy, meta["history"], meta["stats"])

    # the job harness saves models through ``write().overwrite().save(path)``, as pyspark.ml's writers
    def write(self) -> _ResultWriter:
        return _ResultWriter(self)


class _ResultWriter:
    def __init__(self, result: RLResult):
        self.result = result

    def overwrite(self) -> _ResultWriter:
        return self

    def save(self, path: str) -> None:
        self.result.save(path)
