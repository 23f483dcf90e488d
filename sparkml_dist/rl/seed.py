"""SEED RL (Espeholt et al. 2019): actors only step environments; the learner runs one batched forward pass for
every actor waiting on it, keeps the trajectories, and trains IMPALA's V-trace learner on them.

Each actor call sends its ``envsPerActor`` observations (plus the rewards and dones of the last step) and gets the
actions back: one round trip per env step, so the policy's forward pass is batched over ``numActors x envsPerActor``
envs instead of ``envsPerActor``. Trajectories never travel as batches; the learner cuts them into
``unrollLength``-step unrolls per actor. Weights never travel at all::

    result = SEED(env="CartPole-v1", numActors=2, envsPerActor=8, totalSteps=100_000, runner="spark").train()
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparkml_dist.rl.algorithm import Algorithm
from sparkml_dist.rl.config import param
from sparkml_dist.rl.core.envs import VectorEnv
from sparkml_dist.rl.impala import IMPALA, ImpalaConfig, ImpalaLearner


@dataclass(kw_only=True)
class SeedConfig(ImpalaConfig):
    lagMode: str = param("async", "SEED's actions always come from the newest weights", choices=("async",))


class EnvActor:
    """Steps its envs with the actions the learner sent; sends back what the learner needs."""

    def __init__(self, algo: Algorithm, actor_id: int, generation: int):
        c = algo.config
        self.env = VectorEnv(c.env, c.envsPerActor, algo.actor_seed(actor_id, generation))

    def act(self, reply):
        env = self.env
        if reply is None:
            return {"obs": env.obs.copy(), "first": True, "steps": 0, "returns": []}
        _, rewards, _, dones, _ = env.step(reply)
        return {"obs": env.obs.copy(), "rewards": rewards, "dones": dones.astype(np.float32),
                "steps": env.num_envs, "returns": env.drain_returns()}

    def close(self) -> None:
        self.env.close()


class SeedLearner(ImpalaLearner):
    """IMPALA's learner plus central inference and per-actor trajectory assembly."""

    _KEYS = ("obs", "actions", "logp", "rewards", "dones", "version")

    def __init__(self, algo: Algorithm):
        super().__init__(algo)
        self.rng = np.random.default_rng(algo.config.seed + 7)
        self.traj: dict[int, dict[str, list]] = {}
        self.last: dict[int, tuple] = {}
        self.inference_calls = 0
        self.inference_rows = 0

    def infer(self, items):
        T = self.config.unrollLength
        for actor_id, p in items:
            if p.get("first") or actor_id not in self.last:  # a new (or replaced) actor starts a fresh trajectory
                self.traj[actor_id] = {k: [] for k in self._KEYS}
                continue
            obs, actions, logp, version = self.last[actor_id]
            tr = self.traj[actor_id]
            for key, value in zip(self._KEYS, (obs, actions, logp, p["rewards"], p["dones"], version), strict=True):
                tr[key].append(value)
            if len(tr["rewards"]) == T:
                unroll = {k: np.stack(tr[k]) for k in self._KEYS[:-1]}
                unroll["obs"] = np.concatenate([unroll["obs"], p["obs"][None]])
                unroll["version"] = tr["version"][0]
                self.pending.append(unroll)
                self.traj[actor_id] = {k: [] for k in self._KEYS}
        metrics = self.consume([])
        sizes = [len(p["obs"]) for _, p in items]
        obs = np.concatenate([p["obs"] for _, p in items]).astype(np.float32)
        actions, logp = self.net.act(obs, rng=self.rng)  # one forward pass for every waiting actor
        self.inference_calls += 1
        self.inference_rows += len(obs)
        replies, start = [], 0
        for (actor_id, p), n in zip(items, sizes, strict=True):
            a, lp = actions[start:start + n], logp[start:start + n]
            self.last[actor_id] = (p["obs"], a, lp, self.version)
            replies.append(self.net.env_action(a))
            start += n
        return replies, metrics

    def stats(self) -> dict:
        return {"inference_calls": self.inference_calls,
                "inference_batch_mean": self.inference_rows / max(self.inference_calls, 1)}


class SEED(IMPALA):
    """SEED-style central batched inference for IMPALA. Parameters: :class:`SeedConfig`."""

    name = "seed"
    Config = SeedConfig

    @property
    def mode(self) -> str:
        return "inference"

    def make_actor(self, actor_id: int, generation: int = 0):
        return EnvActor(self, actor_id, generation)

    def make_learner(self):
        return SeedLearner(self)
