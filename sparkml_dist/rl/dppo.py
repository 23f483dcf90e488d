"""DPPO (Heess et al. 2017): synchronous replicas, each collecting its own rollouts, averaging PPO gradients every
minibatch, so every replica takes the same step and keeps the same weights (DD-PPO's all-reduce form; no chief).

The loop is written once (:meth:`DPPO.run_replicas`) over a list of workers and a gradient average: the local runner
passes every worker and a plain mean; the Spark runner passes one worker per barrier task and the barrier's
allreduce divided by the world size. The PPO part is CleanRL's ``ppo.py`` (GAE, clipped surrogate, entropy bonus,
annealed learning rate, per-minibatch advantage normalisation), for discrete and continuous actions::

    result = DPPO(env="CartPole-v1", numActors=2, totalSteps=200_000, runner="spark").train(spark)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from sparkml_dist.rl.algorithm import Algorithm
from sparkml_dist.rl.config import RLConfig, annealed_lr, param
from sparkml_dist.rl.core.advantages import gae
from sparkml_dist.rl.core.envs import VectorEnv
from sparkml_dist.rl.core.nets import ActorCritic, get_flat, get_flat_grad, set_flat_grad
from sparkml_dist.rl.runners.progress import Checkpointer, Progress


@dataclass(kw_only=True)
class DPPOConfig(RLConfig):
    numSteps: int = param(128, "rollout steps per env per update", min=1)
    numMinibatches: int = param(4, "minibatches per epoch (each averaged over replicas)", min=1)
    updateEpochs: int = param(4, "PPO epochs per rollout", min=1)
    gaeLambda: float = param(0.95, "GAE lambda", min=0.0, max=1.0)
    clipCoef: float = param(0.2, "PPO ratio clip", gt=0.0)
    entropyCoef: float = param(0.01, "entropy bonus weight", min=0.0)
    valueCoef: float = param(0.5, "value loss weight", min=0.0)
    annealLr: bool = param(True, "decay the learning rate linearly to 0 over the run")
    normAdv: bool = param(True, "normalise advantages per minibatch")


class PPOWorker:
    """One replica's envs and rollout buffer; computes PPO gradients on its own minibatches."""

    def __init__(self, algo: Algorithm, worker_id: int, generation: int):
        c = self.config = algo.config
        seed = algo.actor_seed(worker_id, generation)
        self.env = VectorEnv(c.env, c.envsPerActor, seed)
        self.rng = np.random.default_rng(seed)

    def collect(self, net: ActorCritic) -> dict:
        c, env = self.config, self.env
        T, B = c.numSteps, env.num_envs
        obs = np.empty((T, B, *env.observation_space.shape), dtype=np.float32)
        actions, logp = None, np.empty((T, B), dtype=np.float32)
        rewards, dones = np.empty((T, B), dtype=np.float32), np.empty((T, B), dtype=np.float32)
        for t in range(T):
            obs[t] = env.obs
            a, lp = net.act(env.obs, rng=self.rng)
            if actions is None:
                actions = np.empty((T, *a.shape), dtype=a.dtype)
            actions[t], logp[t] = a, lp
            _, rewards[t], _, d, _ = env.step(net.env_action(a))
            dones[t] = d
        with torch.no_grad():
            flat_obs = torch.as_tensor(np.concatenate([obs.reshape(T * B, -1), env.obs.reshape(B, -1)]))
            values = net.value(flat_obs)
            adv, ret = gae(torch.as_tensor(rewards), values[:T * B].reshape(T, B), torch.as_tensor(dones),
                           values[T * B:], c.gamma, c.gaeLambda)
        self.buf = {"obs": torch.as_tensor(obs.reshape(T * B, -1)),
                    "actions": torch.as_tensor(actions.reshape(T * B, *actions.shape[2:])),
                    "logp": torch.as_tensor(logp.reshape(-1)), "adv": adv.reshape(-1), "ret": ret.reshape(-1)}
        return {"steps": T * B, "returns": env.drain_returns()}

    def shuffle(self) -> None:
        self.perm = self.rng.permutation(len(self.buf["logp"]))

    def grad(self, net: ActorCritic, mb: int) -> tuple[np.ndarray, float]:
        c = self.config
        size = len(self.perm) // c.numMinibatches
        idx = torch.as_tensor(self.perm[mb * size:(mb + 1) * size])
        b = {k: v[idx] for k, v in self.buf.items()}
        dist = net.dist(b["obs"])
        ratio = torch.exp(net.log_prob(dist, b["actions"]) - b["logp"])
        adv = b["adv"]
        if c.normAdv and len(adv) > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        pg_loss = torch.max(-adv * ratio, -adv * torch.clamp(ratio, 1 - c.clipCoef, 1 + c.clipCoef)).mean()
        v_loss = 0.5 * ((net.value(b["obs"]) - b["ret"]) ** 2).mean()
        loss = pg_loss - c.entropyCoef * net.entropy(dist).mean() + c.valueCoef * v_loss
        net.zero_grad()
        loss.backward()
        return get_flat_grad(net), loss.item()

    def close(self) -> None:
        self.env.close()


class DPPO(Algorithm):
    """Distributed PPO with synchronous gradient averaging. Parameters: :class:`DPPOConfig`."""

    name = "dppo"
    Config = DPPOConfig

    @property
    def mode(self) -> str:
        return "sync"

    def make_policy(self):
        obs_space, action_space = self.spaces()
        return ActorCritic(obs_space, action_space, self.config.hidden)

    def batch_steps(self) -> int:
        c = self.config
        return c.numActors * c.envsPerActor * c.numSteps

    def validate(self) -> None:
        super().validate()
        c = self.config
        if c.envsPerActor * c.numSteps < c.numMinibatches:
            raise ValueError(f"numMinibatches={c.numMinibatches} exceeds one replica's rollout "
                             f"(envsPerActor x numSteps = {c.envsPerActor * c.numSteps})")

    def run_replicas(self, worker_ids: list[int], reduce_mean, callback, state: dict | None = None,
                     generation: int = 0, rank: int = 0, world_size: int | None = None, report=None):
        """The DPPO loop. ``reduce_mean(flat_grad) -> mean over replicas`` (``None``: average ``worker_ids`` here).

        ``report`` (Spark replicas): called after every update with this replica's ``{"steps", "returns", "loss"}``
        (rank 0 adds its weights); the driver answers every replica with the whole round (all replicas' payloads
        in rank order, the mean loss, and whether to stop), which each replica's progress records, so every replica
        and the driver keep the same progress and history. Returns ``(policy, progress, extra_stats)``; only rank 0
        writes checkpoints.
        """
        from sparkml_dist.rl.runners.local import event, mean_of

        c = self.config
        world = world_size or len(worker_ids)
        torch.manual_seed(c.seed)
        net = self.make_policy()
        opt = torch.optim.Adam(net.parameters(), lr=c.learningRate, eps=1e-5)
        progress = Progress(self.name, c.totalSteps, c.logEvery if report is None else math.inf)
        ckpt = Checkpointer(c.checkpointDir if rank == 0 else None, c.checkpointEvery)
        if state is None and reduce_mean is None:
            state = ckpt.load()
            generation = int(state.get("generation", 0)) + 1 if state else generation
        if state is not None:
            net.load_state_dict(state["learner"]["net"])
            opt.load_state_dict(state["learner"]["opt"])
            progress.load_state_dict(state["progress"])
        ckpt._next = progress.env_steps + c.checkpointEvery
        workers = [PPOWorker(self, i, generation) for i in worker_ids]
        per_update = world * c.envsPerActor * c.numSteps
        updates = math.ceil(c.totalSteps / per_update)
        try:
            while not progress.done:
                if c.annealLr:
                    annealed_lr(opt, c.learningRate, progress.env_steps // per_update, updates)
                infos = [w.collect(net) for w in workers]
                losses = []
                for _ in range(c.updateEpochs):
                    for w in workers:
                        w.shuffle()
                    for mb in range(c.numMinibatches):
                        grads, mb_losses = zip(*(w.grad(net, mb) for w in workers), strict=True)
                        g = mean_of(list(grads)) if reduce_mean is None else reduce_mean(grads[0])
                        set_flat_grad(net, g)
                        torch.nn.utils.clip_grad_norm_(net.parameters(), c.maxGradNorm)
                        opt.step()
                        losses.extend(mb_losses)
                metrics = {"loss": float(np.mean(losses)), "policy_lag": 0.0,
                           "updates": c.updateEpochs * c.numMinibatches}
                if report is not None:  # the driver's round: every replica's steps and returns, the mean loss
                    mine = {"steps": infos[0]["steps"], "returns": infos[0]["returns"], "loss": metrics["loss"],
                            "weights": get_flat(net) if rank == 0 else None}
                    reply = report(mine)
                    infos, metrics["loss"] = reply["payloads"], reply["loss"]
                for info in infos:
                    progress.observe(info)
                progress.learned(metrics)
                ckpt.maybe_save(progress.env_steps, lambda: self._state(net, opt, progress, generation))
                if report is not None:
                    progress.stopped = bool(reply["stop"])  # the driver's callback decides, for every replica
                elif callback is not None:
                    progress.stopped = callback(event(progress, net)) is True
        finally:
            for w in workers:
                w.close()
        ckpt.save(self._state(net, opt, progress, generation))
        return net, progress, {}

    def round_metrics(self, payloads: list[dict]) -> dict:
        """The driver's side of a Spark round: the replicas' payloads (rank order) as the local runner's metrics."""
        c = self.config
        return {"loss": float(np.mean([p["loss"] for p in payloads])), "policy_lag": 0.0,
                "updates": c.updateEpochs * c.numMinibatches}

    def _state(self, net, opt, progress, generation) -> dict:
        return {"algorithm": self.name, "learner": {"net": net.state_dict(), "opt": opt.state_dict()},
                "progress": progress.state_dict(), "generation": generation}
