"""SEED RL (Espeholt et al. 2019): actors only step environments; the learner runs one batched forward pass for
every actor waiting on it, keeps the trajectories, and trains IMPALA's V-trace learner on them.

Each actor call sends its ``envsPerActor`` observations (plus the rewards and dones of the last step) and gets the
actions back: one round trip per env step, so the policy's forward pass is batched over ``numActors x envsPerActor``
envs instead of ``envsPerActor``. Trajectories never travel as batches; the learner cuts them into
``unrollLength``-step unrolls per actor. Weights never travel at all::

    result = SEED(env="CartPole-v1", numActors=2, envsPerActor=8, totalSteps=100_000, runner="spark").train()
"""

from __future__ import annotations

import functools
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from sparkml_dist.rl.actors import EnvActor
from sparkml_dist.rl.algorithm import Algorithm
from sparkml_dist.rl.config import param
from sparkml_dist.rl.impala import IMPALA, ImpalaConfig, ImpalaLearner


@dataclass(kw_only=True)
class SeedConfig(ImpalaConfig):
    lagMode: str = param("async", "SEED's actions always come from the newest weights", choices=("async",))
    overlapTraining: bool = param(True, "spark runner: V-trace updates on a learner thread, overlapping the "
                                        "batched inference (the local runner always trains inline)")


class SeedLearner(ImpalaLearner):
    """IMPALA's learner plus central inference and per-actor trajectory assembly.

    Inference runs on ``actor_net``, a copy of the trained net refreshed after every update. With
    ``overlapTraining`` (spark runner) the V-trace updates run on a learner thread fed by a bounded queue of finished
    unrolls, so the runner's thread keeps answering inference requests while a training step runs (SEED RL's
    split; torch releases the GIL inside its ops). Without it (the local runner) training happens inline, in a fixed
    order, so a local run is reproducible.
    """

    _KEYS = ("obs", "actions", "logp", "rewards", "dones", "version")

    def __init__(self, algo: Algorithm):
        super().__init__(algo)
        c = algo.config
        self.rng = np.random.default_rng(c.seed + 7)
        self.actor_net = algo.make_policy()
        self.actor_net.load_state_dict(self.net.state_dict())
        self.actor_version = 0
        self.traj: dict[int, dict[str, list]] = {}
        self.last: dict[int, tuple] = {}
        self.inference_calls = 0
        self.inference_rows = 0
        self.inference_seconds = 0.0
        self.train_seconds = 0.0
        self._sync_lock = threading.Lock()  # actor_net being refreshed vs an inference forward pass
        self._train_lock = threading.Lock()  # an update vs state_dict() (checkpoints)
        self._thread: threading.Thread | None = None
        self._metrics: list[dict] = []
        self._error: BaseException | None = None
        if c.overlapTraining and c.runner == "spark":
            self._unrolls: queue.Queue = queue.Queue(maxsize=c.queueSize)
            self._thread = threading.Thread(target=self._train_loop, name="rl-seed-learner", daemon=True)
            self._thread.start()

    # --- training ---------------------------------------------------------------------------------------------------
    def update(self, unrolls: list[dict]) -> dict:
        t0 = time.perf_counter()
        with self._train_lock:
            metrics = super().update(unrolls)
        with self._sync_lock, torch.no_grad():
            for dst, src in zip(self.actor_net.parameters(), self.net.parameters(), strict=True):
                dst.copy_(src)
            self.actor_version = self.version
        self.train_seconds += time.perf_counter() - t0
        return metrics

    def _train_loop(self) -> None:
        try:
            while True:
                unroll = self._unrolls.get()
                if unroll is None:
                    return
                self.pending.append(unroll)
                metrics = self.consume([])
                if metrics:
                    with self._sync_lock:
                        self._metrics.append(metrics)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the runner's thread in infer()
            self._error = exc

    def _learned(self) -> dict | None:
        """Metrics of the updates since the last call (``updates`` summed, the rest of the newest)."""
        if self._thread is None:
            return self.consume([])
        if self._error is not None:
            raise RuntimeError("seed: the learner thread failed") from self._error
        with self._sync_lock:
            done, self._metrics = self._metrics, []
        if not done:
            return None
        return {**done[-1], "updates": sum(m["updates"] for m in done)}

    def _queue_unroll(self, unroll: dict) -> None:
        if self._thread is None:
            self.pending.append(unroll)
            return
        while True:  # bounded: a learner that falls behind blocks inference, so the actors wait (back-pressure)
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError("seed: the learner thread stopped") from self._error
            try:
                self._unrolls.put(unroll, timeout=0.1)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        """Stop the learner thread (the unrolls still queued are dropped)."""
        if self._thread is not None and self._thread.is_alive():
            while True:
                try:
                    self._unrolls.get_nowait()
                except queue.Empty:
                    break
            self._unrolls.put(None)
            self._thread.join()

    def state_dict(self) -> dict:
        with self._train_lock:
            return super().state_dict()

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.actor_net.load_state_dict(self.net.state_dict())
        self.actor_version = self.version

    # --- inference --------------------------------------------------------------------------------------------------
    def infer(self, items):
        t0 = time.perf_counter()
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
                self._queue_unroll(unroll)
                self.traj[actor_id] = {k: [] for k in self._KEYS}
        t1 = time.perf_counter()
        metrics = self._learned()
        t2 = time.perf_counter()
        sizes = [len(p["obs"]) for _, p in items]
        obs = np.concatenate([p["obs"] for _, p in items]).astype(np.float32)
        with self._sync_lock:
            actions, logp = self.actor_net.act(obs, rng=self.rng)  # one forward pass for every waiting actor
            version = self.actor_version
        self.inference_calls += 1
        self.inference_rows += len(obs)
        replies, start = [], 0
        for (actor_id, p), n in zip(items, sizes, strict=True):
            a, lp = actions[start:start + n], logp[start:start + n]
            self.last[actor_id] = (p["obs"], a, lp, version)
            replies.append(self.actor_net.env_action(a))
            start += n
        self.inference_seconds += t1 - t0 + time.perf_counter() - t2
        return replies, metrics

    def stats(self) -> dict:
        return {"inference_calls": self.inference_calls,
                "inference_batch_mean": self.inference_rows / max(self.inference_calls, 1),
                "inference_seconds": self.inference_seconds, "learner_train_seconds": self.train_seconds,
                "overlap_training": self._thread is not None}


class SEED(IMPALA):
    """SEED-style central batched inference for IMPALA. Parameters: :class:`SeedConfig`."""

    name = "seed"
    Config = SeedConfig

    @property
    def mode(self) -> str:
        return "inference"

    def actor_factory(self):
        c = self.config
        return functools.partial(EnvActor, env=c.env, envs=c.envsPerActor, seed=c.seed)

    def make_learner(self):
        return SeedLearner(self)
