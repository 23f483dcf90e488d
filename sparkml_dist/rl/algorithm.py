"""The contract between algorithms and runners (Acme's principle: the same actor and learner objects run in one
process or as Spark tasks), and the ``Algorithm`` base every estimator-like class extends.

An algorithm file defines an ``Actor`` (steps ``envsPerActor`` envs; ``act(reply) -> payload``) and a ``Learner``
(``consume(items)`` / ``infer(items)``, ``reply()``), and says how replies flow (:attr:`Algorithm.mode`):

``"weights"``   actors send data or gradients and get the learner's latest ``(version, weights)`` straight back
                (IMPALA, Ape-X, A3C, GORILA): asynchronous, bounded by the learner's queue.
``"round"``     every actor sends one payload per round; all get the same weights; the learner then trains on the
                round in actor order. Actors act one version behind the learner (IMPALA's deterministic lag-1 mode,
                Cleanba's scheme): a run is reproducible bit for bit.
``"inference"`` actors only step envs and send observations; the learner answers with actions from one batched
                forward pass over all waiting actors and keeps the trajectories (SEED).
``"sync"``      replicas average gradients every minibatch through allreduce (DPPO); no central learner.

Every payload is a dict with ``steps`` (env steps taken) and ``returns`` (episodes finished), which the runners count.
``act(None)`` is an actor's first call; it may return ``None`` to ask for weights only.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from sparkml_dist.rl.config import RLConfig, make_config, validate
from sparkml_dist.rl.core.envs import check_env_id, make_env_fn
from sparkml_dist.rl.result import RLResult

logger = logging.getLogger(__name__)


class Actor(Protocol):
    def act(self, reply: Any) -> dict | None: ...

    def close(self) -> None: ...


class Learner(Protocol):
    version: int

    def reply(self) -> Any: ...

    def consume(self, items: list[tuple[int, dict]]) -> dict | None: ...

    def policy(self): ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def _make_actor(algo: Algorithm, actor_id: int, generation: int) -> Actor:
    return algo.make_actor(actor_id, generation)


@functools.lru_cache(maxsize=32)
def env_spaces(env_id: str) -> tuple[gym.Space, gym.Space]:
    env = make_env_fn(env_id)()
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


class Algorithm:
    """Base of ``DPPO``, ``A3C``, ``IMPALA``, ``ApeX``, ``GORILA`` and ``SEED``.

    ``Algo(env="CartPole-v1", numActors=2, ..., runner="spark").train(spark=None)`` -> :class:`RLResult`.
    ``__init__`` stores the parameters; :meth:`train` validates them before any actor starts.
    """

    name = "base"
    Config: type[RLConfig] = RLConfig
    #: actions must be discrete (Q-learning)
    discrete_only = False

    def __init__(self, **params: Any):
        self.config = make_config(self.Config, params)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"

    @property
    def mode(self) -> str:
        return "weights"

    # --- to implement ---------------------------------------------------------------------------------------------
    def make_policy(self):
        raise NotImplementedError

    def make_actor(self, actor_id: int, generation: int = 0) -> Actor:
        """Actor ``actor_id`` (local runner and Spark tasks alike). Override this or :meth:`actor_factory`."""
        return self.actor_factory()(actor_id, generation)

    def actor_factory(self) -> Callable[[int, int], Actor]:
        """What a Spark task calls to build its actor: ``factory(actor_id, generation)``, pickled to the task.

        The default ships the whole algorithm and calls :meth:`make_actor` there (its actor may train with torch:
        A3C, GORILA). IMPALA, SEED and Ape-X override it with a ``functools.partial`` of a
        :mod:`~sparkml_dist.rl.actors` class over plain values, so their tasks never import torch.
        """
        if type(self).make_actor is Algorithm.make_actor:
            raise NotImplementedError(f"{type(self).__name__} defines neither make_actor nor actor_factory")
        return functools.partial(_make_actor, self)

    def make_learner(self) -> Learner:
        raise NotImplementedError

    def batch_steps(self) -> int:
        """Env steps the learner needs for its first update (the budget must cover it)."""
        raise NotImplementedError

    def payload_bytes(self) -> int:
        """Bytes of one actor payload (the learner's queue holds up to ``queueSize``): observations (and the next
        ones) plus four scalars per env step of one shipment. Gradient-sending algorithms override it."""
        c = self.config
        obs_space, _ = self.spaces()
        steps = next((getattr(c, k) for k in ("unrollLength", "numSteps", "tMax", "stepsPerGradient")
                      if getattr(c, k, None)), 1)
        return c.envsPerActor * steps * (2 * int(np.prod(obs_space.shape)) + 4) * 4

    def replay_bytes(self) -> int:
        """Bytes of the replay memories the run allocates (Ape-X, GORILA); 0 without one."""
        return 0

    # --- shared ---------------------------------------------------------------------------------------------------
    def spaces(self) -> tuple[gym.Space, gym.Space]:
        return env_spaces(self.config.env)

    def actor_seed(self, actor_id: int, generation: int) -> int:
        """Env seeds of an actor: distinct per actor and per relaunch (a replaced actor does not replay episodes)."""
        from sparkml_dist.rl.actors import actor_seed

        return actor_seed(self.config.seed, actor_id, generation)

    def layout(self) -> dict:
        """The policy's numpy layout (:func:`~sparkml_dist.rl.core.nets.numpy_layout`), for torch-free actors."""
        from sparkml_dist.rl.core.nets import numpy_layout

        return numpy_layout(self.make_policy())

    def nstep_actor_kwargs(self) -> dict:
        """The arguments of an :class:`~sparkml_dist.rl.actors.NStepActor` (Ape-X, GORILA)."""
        c = self.config
        return dict(env=c.env, envs=c.envsPerActor, seed=c.seed, n_step=c.nStep, gamma=c.gamma, layout=self.layout())

    def validate(self) -> None:
        """Every check a run needs, before any Spark work: params, env id, action space, budget."""
        c = self.config
        validate(c)
        check_env_id(c.env)
        _, action_space = self.spaces()
        if self.discrete_only and not isinstance(action_space, gym.spaces.Discrete):
            raise ValueError(f"{self.name} needs a Discrete action space; env={c.env!r} has {action_space}")
        need = self.batch_steps()
        if c.totalSteps < need:
            raise ValueError(f"totalSteps={c.totalSteps} is smaller than one learner batch ({need} env steps = "
                             f"numActors x envsPerActor x unroll); raise totalSteps or shrink the batch")
        from sparkml_dist.rl.runners.memory import check_budget

        check_budget(self)

    def train(self, spark=None, callback: Callable[[dict], None] | None = None) -> RLResult:
        """Run to ``totalSteps`` env steps with the configured runner; returns the policy, history and stats.

        Parameters
        ----------
        spark : SparkSession, optional
            For ``runner="spark"``; defaults to the active session.
        callback : callable, optional
            Called after every learner update with ``{"env_steps", "updates", "return", "seconds", "policy",
            "actors"}`` (``actors``: actor id -> Python worker pid, spark runner); returning ``True`` stops the run
            (early stopping). It runs on the driver, for every algorithm and runner (DPPO's Spark replicas
            report each update to the driver and stop together when it says so).
        """
        self.validate()
        from sparkml_dist.rl.runners import run_local, run_spark

        if self.config.runner == "local":
            policy, progress, extra = run_local(self, callback)
        else:
            if spark is None:
                from pyspark.sql import SparkSession

                spark = SparkSession.getActiveSession()
                if spark is None:
                    raise RuntimeError("runner='spark' needs a SparkSession: pass spark= or create one")
            policy, progress, extra = run_spark(self, spark, callback)
        progress.finish()
        stats = {**progress.stats(), **extra}
        logger.info("%s finished: %d env steps in %.1fs (%.0f/s), return %.1f", self.name, stats["env_steps"],
                    stats["seconds"], stats["env_steps_per_s"], stats["final_return"])
        return RLResult(self.name, self.config.to_dict(), policy, progress.history, stats)

