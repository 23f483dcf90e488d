"""IMPALA (Espeholt et al. 2018): actors unroll a behaviour policy, a central learner corrects the lag with V-trace.

Actors never compute gradients: each unrolls ``unrollLength`` steps on its ``envsPerActor`` envs with the newest
weights it has and ships ``(obs, actions, log mu, rewards, dones, version)``. The learner stacks ``batchUnrolls``
unrolls, recomputes ``log pi`` and ``V``, and takes one step on the V-trace actor-critic loss. The policy lag of every
update (learner version minus the version that acted) is recorded.

``lagMode="async"``: actors get the newest weights as soon as their unroll is queued (the measured lag depends on
timing). ``lagMode="lag1"``: rounds of one unroll per actor, actors exactly one version behind the learner (Cleanba's
scheme); a run is reproducible bit for bit, on either runner::

    result = IMPALA(env="CartPole-v1", numActors=2, envsPerActor=8, totalSteps=200_000, runner="spark").train()
    result.evaluate(episodes=10)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from sparkml_dist.rl.actors import UnrollActor
from sparkml_dist.rl.algorithm import Algorithm
from sparkml_dist.rl.config import RLConfig, annealed_lr, param
from sparkml_dist.rl.core.nets import ActorCritic, get_flat
from sparkml_dist.rl.core.off_policy import vtrace


@dataclass(kw_only=True)
class ImpalaConfig(RLConfig):
    learningRate: float = param(1e-3, "Adam step size", gt=0.0)
    annealLr: bool = param(True, "decay the step size linearly to 0 over totalSteps (the paper's schedule)")
    unrollLength: int = param(32, "steps per actor unroll (T)", min=1)
    batchUnrolls: int = param(0, "unrolls per learner update (0: numActors; lag1 always uses numActors)", min=0)
    entropyCoef: float = param(0.01, "entropy bonus weight", min=0.0)
    valueCoef: float = param(0.5, "value loss weight", min=0.0)
    rhoBar: float = param(1.0, "V-trace importance-weight clip (rho bar)", gt=0.0)
    cBar: float = param(1.0, "V-trace trace clip (c bar)", gt=0.0)
    lagMode: str = param("async", "'async' (newest weights) or 'lag1' (deterministic, one version behind)",
                         choices=("async", "lag1"))


class ImpalaLearner:
    """V-trace actor-critic learner: one Adam step per ``batchUnrolls`` unrolls."""

    def __init__(self, algo: Algorithm):
        c = self.config = algo.config
        torch.manual_seed(c.seed)
        self.net = algo.make_policy()
        self.opt = torch.optim.Adam(self.net.parameters(), lr=c.learningRate, eps=1e-5)
        self.batch = c.numActors if (c.lagMode == "lag1" or not c.batchUnrolls) else c.batchUnrolls
        self.version = 0
        self.steps_trained = 0  # env steps in the unrolls of every update so far (the step-size schedule's clock)
        self.pending: list[dict] = []

    def reply(self):
        return self.version, get_flat(self.net)

    def policy(self):
        return self.net

    def consume(self, items):
        self.pending.extend(p for _, p in items if p)
        metrics, updates = None, 0
        while len(self.pending) >= self.batch:
            batch, self.pending = self.pending[:self.batch], self.pending[self.batch:]
            metrics = self.update(batch)
            updates += 1
        if metrics:
            metrics["updates"] = updates
        return metrics

    def update(self, unrolls: list[dict]) -> dict:
        c = self.config
        cat = lambda key: torch.as_tensor(np.concatenate([u[key] for u in unrolls], axis=1))  # noqa: E731
        obs, actions, mu_logp = cat("obs"), cat("actions"), cat("logp")
        rewards, dones = cat("rewards"), cat("dones")
        T, B = rewards.shape
        flat_obs = obs.reshape((T + 1) * B, *obs.shape[2:])
        values = self.net.value(flat_obs).reshape(T + 1, B)
        dist = self.net.dist(flat_obs[:T * B])
        pi_logp = self.net.log_prob(dist, actions.reshape(T * B, *actions.shape[2:])).reshape(T, B)
        vs, pg_adv = vtrace(mu_logp, pi_logp.detach(), rewards, c.gamma * (1.0 - dones), values[:-1].detach(),
                            values[-1].detach(), rho_bar=c.rhoBar, c_bar=c.cBar, pg_rho_bar=c.rhoBar)
        pg_loss = -(pg_adv * pi_logp).mean()
        v_loss = 0.5 * ((vs - values[:-1]) ** 2).mean()
        entropy = self.net.entropy(dist).mean()
        loss = pg_loss + c.valueCoef * v_loss - c.entropyCoef * entropy
        self.opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), c.maxGradNorm)
        lr = (annealed_lr(self.opt, c.learningRate, self.steps_trained, c.totalSteps) if c.annealLr
              else c.learningRate)
        self.opt.step()
        self.steps_trained += T * B
        lag = float(np.mean([self.version - u["version"] for u in unrolls]))
        self.version += 1
        return {"loss": loss.item(), "policy_lag": lag, "entropy": entropy.item(), "lr": lr, "updates": 1}

    def state_dict(self) -> dict:
        return {"net": self.net.state_dict(), "opt": self.opt.state_dict(), "version": self.version,
                "steps_trained": self.steps_trained}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.version = state["version"]
        self.steps_trained = int(state.get("steps_trained", 0))


class IMPALA(Algorithm):
    """Importance-weighted actor-learner (V-trace). Parameters: :class:`ImpalaConfig` (camelCase keywords)."""

    name = "impala"
    Config = ImpalaConfig

    @property
    def mode(self) -> str:
        return "round" if self.config.lagMode == "lag1" else "weights"

    def make_policy(self):
        obs_space, action_space = self.spaces()
        return ActorCritic(obs_space, action_space, self.config.hidden)

    def actor_factory(self):
        c = self.config
        return functools.partial(UnrollActor, env=c.env, envs=c.envsPerActor, seed=c.seed, length=c.unrollLength,
                                 layout=self.layout())

    def make_learner(self):
        return ImpalaLearner(self)

    def batch_steps(self) -> int:
        c = self.config
        unrolls = c.numActors if (c.lagMode == "lag1" or not c.batchUnrolls) else c.batchUnrolls
        return unrolls * c.envsPerActor * c.unrollLength
