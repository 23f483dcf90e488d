"""The actors that only act: IMPALA's unroll actor, Ape-X's n-step actor (with its initial priorities) and SEED's env
actor. numpy and gymnasium only, so the Spark tasks that run them never import torch (~240 MB of RSS and 2.5-4 s of
start-up per actor process).

Each is built by ``factory(actor_id, generation)``, where the factory (:meth:`Algorithm.actor_factory`) is a
``functools.partial`` of one of these classes over plain values: the env id, counts, the seed, the algorithm's
parameters and the policy's numpy layout (:func:`~sparkml_dist.rl.core.nets.numpy_layout`). The learner's replies
carry ``(version, flat float32 weights)``; an actor slices a new vector into its numpy net when the version changes.
Actors whose work needs gradients (A3C, GORILA, DPPO) extend these in their torch files.
"""

from __future__ import annotations

import numpy as np

from sparkml_dist.rl.core.envs import VectorEnv
from sparkml_dist.rl.core.nstep import nstep_targets
from sparkml_dist.rl.core.policy import make_numpy_policy


def actor_seed(seed: int, actor_id: int, generation: int) -> int:
    """Env seeds of an actor: distinct per actor and per relaunch (a replaced actor does not replay episodes)."""
    return seed * 1_000_003 + actor_id * 10_007 + generation * 1_009 + 1


class WeightsActor:
    """Holds the numpy policy an actor acts with; :meth:`load` takes the learner's ``(version, weights)`` reply."""

    policy: object
    version: int = -1

    def load(self, reply) -> None:
        version, weights = reply
        if version != self.version:
            self.policy.load(weights)
            self.on_weights(weights)
            self.version = version

    def on_weights(self, weights: np.ndarray) -> None:
        """Called with each new weight vector (actors that also train keep a torch copy in step)."""


class UnrollActor(WeightsActor):
    """Steps ``envs`` envs for ``length`` steps per call with one batched policy call per step (IMPALA, A3C)."""

    def __init__(self, actor_id: int, generation: int, *, env: str, envs: int, seed: int, length: int,
                 layout: dict):
        s = actor_seed(seed, actor_id, generation)
        self.env = VectorEnv(env, envs, s)
        self.rng = np.random.default_rng(s)
        self.policy = make_numpy_policy(layout)
        self.T = length

    def act(self, reply):
        if reply is None:
            return None
        self.load(reply)
        env, T, B = self.env, self.T, self.env.num_envs
        obs = np.empty((T + 1, B, *env.observation_space.shape), dtype=np.float32)
        actions = None
        logp = np.empty((T, B), dtype=np.float32)
        rewards = np.empty((T, B), dtype=np.float32)
        dones = np.empty((T, B), dtype=np.float32)
        for t in range(T):
            obs[t] = env.obs
            a, lp = self.policy.act(env.obs, rng=self.rng)
            if actions is None:
                actions = np.empty((T, *a.shape), dtype=a.dtype)
            actions[t], logp[t] = a, lp
            _, rewards[t], _, d, _ = env.step(self.policy.env_action(a))
            dones[t] = d
        obs[T] = env.obs
        return {"obs": obs, "actions": actions, "logp": logp, "rewards": rewards, "dones": dones,
                "version": self.version, "steps": T * B, "returns": env.drain_returns()}

    def close(self) -> None:
        self.env.close()


class NStepActor(WeightsActor):
    """Epsilon-greedy actor producing n-step transitions; the part Ape-X and GORILA share."""

    def __init__(self, actor_id: int, generation: int, *, env: str, envs: int, seed: int, n_step: int,
                 gamma: float, layout: dict):
        s = actor_seed(seed, actor_id, generation)
        self.env = VectorEnv(env, envs, s)
        self.rng = np.random.default_rng(s)
        self.policy = make_numpy_policy(layout)
        self.n_step, self.gamma = n_step, gamma
        self.carry: dict | None = None  # the last n-1 steps, whose windows close in the next shipment

    def rollout(self, steps: int, epsilon: float) -> tuple[dict, int]:
        """``steps`` steps on every env; returns the transitions whose n-step windows closed, flattened."""
        env, n = self.env, self.n_step
        cols: dict[str, list] = {k: [] for k in ("obs", "action", "reward", "terminated", "done", "next_obs")}
        for _ in range(steps):
            a, _ = self.policy.act(env.obs, greedy=False, epsilon=epsilon, rng=self.rng)
            cols["obs"].append(env.obs)
            _, r, term, done, next_obs = env.step(a)
            for k, v in (("action", a), ("reward", r), ("terminated", term), ("done", done), ("next_obs", next_obs)):
                cols[k].append(v)
        window = {k: np.stack(v) for k, v in cols.items()}
        if self.carry is not None:
            window = {k: np.concatenate([self.carry[k], window[k]]) for k in window}
        W = len(window["reward"])
        emit = W - (n - 1)
        self.carry = {k: v[max(emit, 0):] for k, v in window.items()}
        if emit <= 0:
            return {}, steps * env.num_envs
        R, disc, last = nstep_targets(window["reward"], window["terminated"], window["done"], self.gamma, n)
        b_idx = np.arange(env.num_envs)[None, :]
        out = {"obs": window["obs"][:emit], "action": window["action"][:emit], "reward": R[:emit],
               "discount": disc[:emit], "next_obs": window["next_obs"][last[:emit], b_idx]}
        flat = {k: v.reshape(-1, *v.shape[2:]) for k, v in out.items()}
        flat["obs"] = flat["obs"].astype(np.float32)
        flat["next_obs"] = flat["next_obs"].astype(np.float32)
        flat["reward"] = flat["reward"].astype(np.float32)
        flat["discount"] = flat["discount"].astype(np.float32)
        return flat, steps * env.num_envs

    def close(self) -> None:
        self.env.close()


class ApeXActor(NStepActor):
    """Ape-X's actor: a constant epsilon (its entry of the per-actor schedule) and actor-side initial priorities."""

    def __init__(self, actor_id: int, generation: int, *, epsilons: list[float], length: int, **kw):
        super().__init__(actor_id, generation, **kw)
        self.epsilon = float(epsilons[actor_id])
        self.length = length

    def act(self, reply):
        if reply is None:
            return None
        self.load(reply)
        batch, steps = self.rollout(self.length, self.epsilon)
        payload = {"steps": steps, "returns": self.env.drain_returns(), "version": self.version,
                   "epsilon": self.epsilon}
        if batch:
            batch["priority"] = self.priorities(batch)
            payload["batch"] = batch
        return payload

    def priorities(self, batch: dict) -> np.ndarray:
        """``|R + discount * Q(s', argmax_a Q(s', a)) - Q(s, a)|`` under the actor's copy of the net (double DQN's
        target with the online net as its own target, as the paper's actors do)."""
        q = self.policy.forward(batch["obs"])[np.arange(len(batch["action"])), batch["action"]]
        boot = self.policy.forward(batch["next_obs"]).max(-1)
        return np.abs(batch["reward"] + batch["discount"] * boot - q).astype(np.float32)


class EnvActor:
    """SEED's actor: steps its envs with the actions the learner sent; sends back what the learner needs."""

    def __init__(self, actor_id: int, generation: int, *, env: str, envs: int, seed: int):
        self.env = VectorEnv(env, envs, actor_seed(seed, actor_id, generation))

    def act(self, reply):
        env = self.env
        if reply is None:
            return {"obs": env.obs.copy(), "first": True, "steps": 0, "returns": []}
        _, rewards, _, dones, _ = env.step(reply)
        return {"obs": env.obs.copy(), "rewards": rewards, "dones": dones.astype(np.float32),
                "steps": env.num_envs, "returns": env.drain_returns()}

    def close(self) -> None:
        self.env.close()
