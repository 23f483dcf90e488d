"""Ape-X (Horgan et al. 2018): many epsilon-greedy actors with constant per-actor epsilons, actor-side initial
priorities, one central prioritised replay (sum-tree) and a double-DQN n-step learner.

Actor ``i`` of ``N`` explores with ``eps_i = 0.4 ** (1 + 7 i / (N - 1))`` (:func:`~sparkml_dist.rl.core.apex_epsilons`),
builds n-step transitions on its own envs, scores each with ``|TD|`` under its (stale) copy of the network, and ships
them every ``unrollLength`` steps with those priorities (so fresh data is not all inserted at the maximum priority).
The learner adds them to the replay, takes ``replayRatio x new transitions / batchSize`` double-DQN steps weighted by
importance sampling, writes the new ``|TD|`` back and syncs the target network every ``targetUpdate`` steps. The
steps run in numpy on the flat weight vector (:mod:`~sparkml_dist.rl.core.qlearn`, checked against torch autograd and
Adam): the actors wait on the learner, and an eager torch step of this small net is mostly per-op overhead::

    result = ApeX(env="CartPole-v1", numActors=2, totalSteps=100_000, runner="spark").train()
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import torch

from sparkml_dist.rl.actors import ApeXActor
from sparkml_dist.rl.algorithm import Algorithm
from sparkml_dist.rl.config import RLConfig, annealed_lr, config_fields, param
from sparkml_dist.rl.core.epsilon import apex_epsilons
from sparkml_dist.rl.core.nets import QNetwork, get_flat, set_flat
from sparkml_dist.rl.core.qlearn import NumpyDoubleDQN
from sparkml_dist.rl.core.replay import PrioritizedReplay, replay_nbytes


@dataclass(kw_only=True)
class ApeXConfig(RLConfig):
    learningRate: float = param(1e-3, "Adam step size", gt=0.0)
    annealLr: bool = param(False, "decay the step size linearly to 0 over totalSteps (env steps received)")
    maxGradNorm: float = param(10.0, "gradient clipping norm", gt=0.0)
    unrollLength: int = param(16, "steps per env between shipments (and weight pulls)", min=1)
    nStep: int = param(3, "n of the n-step targets", min=1)
    bufferSize: int = param(50_000, "replay capacity (transitions; FIFO eviction)", min=1)
    batchSize: int = param(128, "learner minibatch", min=1)
    learningStarts: int = param(2_000, "transitions in replay before learning starts", min=1)
    replayRatio: float = param(4.0, "sampled transitions per inserted transition", gt=0.0)
    targetUpdate: int = param(250, "learner steps between target-network syncs", min=1)
    alpha: float = param(0.6, "priority exponent", min=0.0)
    beta: float = param(0.4, "importance-sampling exponent", min=0.0, max=1.0)
    epsilon: float = param(0.4, "base epsilon of the per-actor schedule", min=0.0, max=1.0)
    epsilonAlpha: float = param(7.0, "exponent range of the per-actor schedule", min=0.0)
    # RLConfig's field at 10: Ape-X is learner-bound, so where actors share cores with the driver the learner goes first
    actorNice: int = field(default=10, metadata=config_fields(RLConfig)["actorNice"].metadata)


def replay_fields(algo: Algorithm) -> dict:
    obs_space, _ = algo.spaces()
    return {"obs": (obs_space.shape, np.float32), "action": ((), np.int64), "reward": ((), np.float32),
            "discount": ((), np.float32), "next_obs": (obs_space.shape, np.float32)}


class ApeXLearner:
    """Central sum-tree replay + double-DQN learner."""

    def __init__(self, algo: Algorithm):
        c = self.config = algo.config
        torch.manual_seed(c.seed)
        self.net = algo.make_policy()  # the torch policy: saved, evaluated; its weights are set from the learner's
        # the update itself runs in numpy on one flat vector (core.qlearn: ~3x faster than eager torch here)
        self.dqn = NumpyDoubleDQN(algo.layout(), get_flat(self.net), c.learningRate, c.maxGradNorm)
        self.replay = PrioritizedReplay(c.bufferSize, replay_fields(algo), alpha=c.alpha, beta=c.beta)
        self.rng = np.random.default_rng(c.seed)
        self.version = 0
        self._net_version = 0
        self._credit = 0.0
        self.env_steps = 0  # env steps of every payload received (the step-size schedule's clock)

    def reply(self):
        return self.version, self.dqn.params.copy()

    def policy(self):
        if self._net_version != self.version:
            set_flat(self.net, self.dqn.params)
            self._net_version = self.version
        return self.net

    def consume(self, items):
        lags, inserted = [], 0
        for _, p in items:
            self.env_steps += p.get("steps", 0) if p else 0
            batch = p.get("batch") if p else None
            if batch:
                prio = batch.pop("priority")
                self.replay.add(batch, prio)
                inserted += len(prio)
                lags.append(self.version - p["version"])
        if len(self.replay) < self.config.learningStarts:
            return {"updates": 0, "policy_lag": float(np.mean(lags)) if lags else 0.0} if items else None
        c = self.config
        self._credit += c.replayRatio * inserted / c.batchSize
        lr = (annealed_lr(self.dqn, c.learningRate, self.env_steps, c.totalSteps) if c.annealLr
              else c.learningRate)
        losses = []
        while self._credit >= 1.0:
            self._credit -= 1.0
            batch, idx, weights = self.replay.sample(c.batchSize, self.rng)
            loss, td = self.dqn.step(batch, weights)
            self.replay.update_priorities(idx, td)
            losses.append(loss)
            self.version += 1
            if self.version % c.targetUpdate == 0:
                self.dqn.sync_target()
        return {"updates": len(losses), "loss": float(np.mean(losses)) if losses else float("nan"),
                "policy_lag": float(np.mean(lags)) if lags else 0.0, "lr": lr}

    def stats(self) -> dict:
        return {"replay_size": len(self.replay)}

    def state_dict(self) -> dict:
        return {"dqn": self.dqn.state_dict(), "version": self.version, "replay": self.replay.state_dict(),
                "credit": self._credit, "rng": self.rng.bit_generator.state, "env_steps": self.env_steps}

    def load_state_dict(self, state: dict) -> None:
        self.dqn.load_state_dict(state["dqn"])
        self.version, self._credit = state["version"], state["credit"]
        self._net_version = -1
        self.replay.load_state_dict(state["replay"])
        self.rng.bit_generator.state = state["rng"]
        self.env_steps = int(state.get("env_steps", 0))


class ApeX(Algorithm):
    """Distributed prioritised experience replay (Ape-X DQN). Parameters: :class:`ApeXConfig`."""

    name = "apex"
    Config = ApeXConfig
    discrete_only = True

    def make_policy(self):
        obs_space, action_space = self.spaces()
        return QNetwork(obs_space, action_space)

    def actor_factory(self):
        c = self.config
        epsilons = [float(e) for e in apex_epsilons(c.numActors, c.epsilon, c.epsilonAlpha)]
        return functools.partial(ApeXActor, epsilons=epsilons, length=c.unrollLength, **self.nstep_actor_kwargs())

    def make_learner(self):
        return ApeXLearner(self)

    def replay_bytes(self) -> int:
        return replay_nbytes(self.config.bufferSize, replay_fields(self))  # the learner's central replay

    def batch_steps(self) -> int:
        c = self.config
        return max(c.learningStarts, c.batchSize)
