"""A3C (Mnih et al. 2016): actor-learners compute advantage actor-critic gradients on short unrolls with their own
copy of the weights; a central parameter server applies them asynchronously (the paper's Hogwild threads become
Spark tasks; staleness is bounded by ``maxStaleness`` instead of left unbounded).

Per call an actor copies the newest weights, unrolls ``tMax`` steps on its envs, bootstraps ``R = V(s_T)`` (0 at a
terminal), scans ``R = r + gamma R`` backwards and returns the gradient of
``-log pi(a|s) (R - V(s)) + valueCoef (R - V(s))^2 - entropyCoef H(pi)``::

    result = A3C(env="CartPole-v1", numActors=2, totalSteps=200_000, runner="spark").train()
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparkml_dist.rl.actors import UnrollActor
from sparkml_dist.rl.algorithm import Algorithm
from sparkml_dist.rl.config import RLConfig, param
from sparkml_dist.rl.core.advantages import gae
from sparkml_dist.rl.core.nets import ActorCritic, get_flat_grad, set_flat
from sparkml_dist.rl.parameter_server import ParameterServer


@dataclass(kw_only=True)
class A3CConfig(RLConfig):
    learningRate: float = param(7e-4, "RMSProp step size", gt=0.0)
    tMax: int = param(8, "unroll length per gradient", min=1)
    entropyCoef: float = param(0.01, "entropy bonus weight (beta)", min=0.0)
    valueCoef: float = param(0.5, "value loss weight", min=0.0)
    maxStaleness: int = param(8, "gradients computed more versions ago than this are dropped", min=0)


class A3CActor(UnrollActor):
    """An unroll actor that turns each unroll into a gradient."""

    def __init__(self, algo: Algorithm, actor_id: int, generation: int):
        c = self.config = algo.config
        super().__init__(actor_id, generation, env=c.env, envs=c.envsPerActor, seed=c.seed, length=c.tMax,
                         layout=algo.layout())
        self.net = algo.make_policy()  # the torch twin of the acting policy, for the gradient

    def on_weights(self, weights):
        set_flat(self.net, weights)

    def act(self, reply):
        unroll = super().act(reply)
        if unroll is None:
            return None
        c, net = self.config, self.net
        T, B = unroll["rewards"].shape
        obs = torch.as_tensor(unroll["obs"]).reshape((T + 1) * B, -1)
        values = net.value(obs).reshape(T + 1, B)
        with torch.no_grad():  # lambda = 1: the n-step returns of the paper
            _, returns = gae(torch.as_tensor(unroll["rewards"]), values[:-1], torch.as_tensor(unroll["dones"]),
                             values[-1], c.gamma, 1.0)
        dist = net.dist(obs[:T * B])
        actions = torch.as_tensor(unroll["actions"]).reshape(T * B, *unroll["actions"].shape[2:])
        logp = net.log_prob(dist, actions).reshape(T, B)
        adv = returns - values[:-1]
        loss = (-(logp * adv.detach()).mean() + c.valueCoef * (adv ** 2).mean()
                - c.entropyCoef * net.entropy(dist).mean())
        net.zero_grad()
        loss.backward()
        return {"grad": get_flat_grad(net), "loss": loss.item(), "version": unroll["version"],
                "steps": unroll["steps"], "returns": unroll["returns"]}


class A3C(Algorithm):
    """Asynchronous advantage actor-critic. Parameters: :class:`A3CConfig`."""

    name = "a3c"
    Config = A3CConfig

    def make_policy(self):
        obs_space, action_space = self.spaces()
        return ActorCritic(obs_space, action_space, self.config.hidden)

    def make_actor(self, actor_id: int, generation: int = 0):
        return A3CActor(self, actor_id, generation)

    def make_learner(self):
        return ParameterServer(self, optimizer="rmsprop")

    def payload_bytes(self) -> int:
        return 4 * sum(p.numel() for p in self.make_policy().parameters())  # a flat float32 gradient

    def batch_steps(self) -> int:
        return self.config.envsPerActor * self.config.tMax


