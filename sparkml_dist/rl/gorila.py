"""GORILA (Nair et al. 2015): bundled actor-learners, each with its own replay memory, pushing DQN gradients to a
parameter server that applies them asynchronously; actors pull parameters every call and refresh their target
network from the server's parameters every ``targetUpdate`` server versions.

Each call of an actor steps its envs ``stepsPerGradient`` times (epsilon decaying linearly from 1 to
``finalEpsilon`` over ``explorationFraction`` of its share of the budget), stores the transitions in its local replay
(uniform: GORILA predates prioritised replay) and, once ``learningStarts`` transitions are there, returns the gradient
of the double-DQN n-step loss on one minibatch::

    result = GORILA(env="CartPole-v1", numActors=2, totalSteps=100_000, runner="spark").train()
"""

from __future__ import annotations

from dataclasses import dataclass

from sparkml_dist.rl.actors import NStepActor
from sparkml_dist.rl.algorithm import Algorithm
from sparkml_dist.rl.apex import replay_fields
from sparkml_dist.rl.config import RLConfig, param
from sparkml_dist.rl.core.epsilon import linear_schedule
from sparkml_dist.rl.core.nets import QNetwork, get_flat
from sparkml_dist.rl.core.qlearn import NumpyDoubleDQN
from sparkml_dist.rl.core.replay import PrioritizedReplay, replay_nbytes
from sparkml_dist.rl.parameter_server import ParameterServer


@dataclass(kw_only=True)
class GorilaConfig(RLConfig):
    learningRate: float = param(1e-3, "Adam step size at the parameter server", gt=0.0)
    maxGradNorm: float = param(10.0, "gradient clipping norm", gt=0.0)
    stepsPerGradient: int = param(1, "env steps (per env) between gradients", min=1)
    nStep: int = param(1, "n of the n-step targets (the paper: 1)", min=1)
    bufferSize: int = param(20_000, "replay capacity of each actor-learner", min=1)
    batchSize: int = param(64, "minibatch of each gradient", min=1)
    learningStarts: int = param(1_000, "transitions in an actor's replay before it sends gradients", min=1)
    targetUpdate: int = param(100, "server versions between target-network refreshes", min=1)
    explorationFraction: float = param(0.3, "share of an actor's steps over which epsilon decays", gt=0.0, max=1.0)
    finalEpsilon: float = param(0.05, "epsilon after the decay", min=0.0, max=1.0)
    maxStaleness: int = param(8, "gradients computed more versions ago than this are dropped", min=0)


class GorilaActor(NStepActor):
    def __init__(self, algo: Algorithm, actor_id: int, generation: int):
        super().__init__(actor_id, generation, **algo.nstep_actor_kwargs())
        c = self.config = algo.config
        # the gradient in numpy on the flat weights (core.qlearn; the server's Adam does the update); the target is
        # refreshed from the server's weights every targetUpdate versions
        self.q = NumpyDoubleDQN(algo.layout(), get_flat(algo.make_policy()), c.learningRate, c.maxGradNorm)
        self.target_epoch = -1
        self.replay = PrioritizedReplay(c.bufferSize, replay_fields(algo), alpha=0.0, beta=0.0)
        self.explore_steps = c.explorationFraction * c.totalSteps / c.numActors
        self.steps = 0

    def on_weights(self, weights):
        self.q.params[:] = weights

    def act(self, reply):
        if reply is None:
            return None
        c = self.config
        self.load(reply)
        version, weights = reply
        if version // c.targetUpdate != self.target_epoch:
            self.q.target[:] = weights
            self.target_epoch = version // c.targetUpdate
        eps = linear_schedule(1.0, c.finalEpsilon, self.explore_steps, self.steps)
        batch, steps = self.rollout(c.stepsPerGradient, eps)
        self.steps += steps
        if batch:
            self.replay.add(batch)
        payload = {"steps": steps, "returns": self.env.drain_returns(), "version": self.version, "grad": None}
        if len(self.replay) >= c.learningStarts:
            sample, _, _ = self.replay.sample(c.batchSize, self.rng)
            loss, _ = self.q.gradient(sample)
            payload["grad"], payload["loss"] = self.q.grad.copy(), loss
        return payload


class GORILA(Algorithm):
    """General reinforcement learning architecture (distributed DQN). Parameters: :class:`GorilaConfig`."""

    name = "gorila"
    Config = GorilaConfig
    discrete_only = True

    def make_policy(self):
        obs_space, action_space = self.spaces()
        return QNetwork(obs_space, action_space)

    def make_actor(self, actor_id: int, generation: int = 0):
        return GorilaActor(self, actor_id, generation)

    def make_learner(self):
        return ParameterServer(self)

    def payload_bytes(self) -> int:
        return 4 * sum(p.numel() for p in self.make_policy().parameters())  # a flat float32 gradient

    def replay_bytes(self) -> int:
        return self.config.numActors * replay_nbytes(self.config.bufferSize, replay_fields(self))  # one per actor

    def batch_steps(self) -> int:
        return self.config.learningStarts


