"""Policy and value networks (CleanRL's sizes) and flat-vector weight/gradient helpers.

Weights and gradients travel between actors and learners as one flat float32 numpy vector: one message, one
allreduce, no per-tensor overhead.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Normal


def _layer(inp: int, out: int, std: float = np.sqrt(2)) -> nn.Linear:
    layer = nn.Linear(inp, out)
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, 0.0)
    return layer


def obs_dim(space: gym.Space) -> int:
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(f"observation space {space} is not a Box; these networks take flat vector observations")
    return int(np.prod(space.shape))


class ActorCritic(nn.Module):
    """Separate tanh MLPs for policy and value (CleanRL ``ppo.py`` / ``ppo_continuous_action.py``).

    Discrete actions: categorical logits. Box actions: a Gaussian with a state-independent log-std.
    """

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, hidden: int = 64):
        super().__init__()
        d = obs_dim(observation_space)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        if self.discrete:
            n_out = int(action_space.n)
        elif isinstance(action_space, gym.spaces.Box):
            n_out = int(np.prod(action_space.shape))
            self.register_buffer("action_low", torch.as_tensor(action_space.low, dtype=torch.float32))
            self.register_buffer("action_high", torch.as_tensor(action_space.high, dtype=torch.float32))
            self.log_std = nn.Parameter(torch.zeros(n_out))
        else:
            raise ValueError(f"action space {action_space} is neither Discrete nor Box")
        self.critic = nn.Sequential(_layer(d, hidden), nn.Tanh(), _layer(hidden, hidden), nn.Tanh(),
                                    _layer(hidden, 1, 1.0))
        self.actor = nn.Sequential(_layer(d, hidden), nn.Tanh(), _layer(hidden, hidden), nn.Tanh(),
                                   _layer(hidden, n_out, 0.01))

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)

    def dist(self, obs: torch.Tensor):
        out = self.actor(obs)
        if self.discrete:  # no argument validation: it costs more than the forward pass of these small nets
            return Categorical(logits=out, validate_args=False)
        return Normal(out, self.log_std.exp().expand_as(out), validate_args=False)

    def log_prob(self, dist, actions: torch.Tensor) -> torch.Tensor:
        lp = dist.log_prob(actions)
        return lp if self.discrete else lp.sum(-1)

    def entropy(self, dist) -> torch.Tensor:
        ent = dist.entropy()
        return ent if self.discrete else ent.sum(-1)

    def act(self, obs: np.ndarray, greedy: bool = False,
            rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Actions for a batch of observations and their log-probabilities (one forward pass).

        Actors call this once per env step, so it runs the policy MLP in numpy on a copy of its weights (refreshed
        when a parameter changes: torch's in-place version counters): an eager torch forward plus a distribution
        object cost several times the arithmetic of these small nets (CartPole, 8 envs: ~2x the env steps/s).
        Sampling draws from ``rng`` (numpy), not torch's global generator: each actor owns its stream, so a run is
        the same whether its actors share one process (local runner) or not (Spark tasks).
        """
        out = _forward_numpy(self.actor, np.asarray(obs, dtype=np.float32), self._actor_weights())
        if rng is None and not greedy:
            rng = np.random.default_rng()
        if self.discrete:
            shifted = out - out.max(-1, keepdims=True)
            weights = np.exp(shifted)
            total = weights.sum(-1, keepdims=True)
            if greedy:
                actions = out.argmax(-1)
            else:
                u = rng.random((out.shape[0], 1)) * total  # inverse CDF on the unnormalised weights
                actions = np.minimum((weights.cumsum(-1) < u).sum(-1), out.shape[-1] - 1)
            logp = shifted - np.log(total)
            return actions, logp[np.arange(len(actions)), actions]
        log_std = self.log_std.detach().numpy()
        if greedy:
            actions = out
        else:
            actions = out + np.exp(log_std) * rng.standard_normal(out.shape).astype(np.float32)
        z = (actions - out) * np.exp(-log_std)
        logp = (-0.5 * z * z - log_std - 0.5 * np.log(2 * np.pi)).sum(-1)
        return actions.astype(np.float32), logp.astype(np.float32)

    def _actor_weights(self) -> list:
        """numpy copies of the actor's layers, rebuilt when any parameter was changed in place or replaced."""
        cached = getattr(self, "_np_actor", None)
        if cached is not None and all(p._version == v and p.data_ptr() == d for p, v, d in cached[0]):
            return cached[1]
        params = list(self.actor.parameters())
        layers = [(m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy())
                  if isinstance(m, nn.Linear) else None for m in self.actor]
        self._np_actor = ([(p, p._version, p.data_ptr()) for p in params], layers)
        return layers

    def env_action(self, actions: np.ndarray) -> np.ndarray:
        """What the env is stepped with: continuous actions clipped to the space's bounds."""
        if self.discrete:
            return actions
        return np.clip(actions, self.action_low.numpy(), self.action_high.numpy())


def _forward_numpy(seq: nn.Sequential, x: np.ndarray, layers: list) -> np.ndarray:
    """``seq(x)`` for a Sequential of Linear / Tanh / ReLU layers, in numpy (float32)."""
    for module, weights in zip(seq, layers, strict=True):
        if weights is not None:
            x = x @ weights[0] + weights[1]
        elif isinstance(module, nn.Tanh):
            x = np.tanh(x)
        elif isinstance(module, nn.ReLU):
            x = np.maximum(x, 0.0)
        else:  # pragma: no cover - the networks here are built from these three
            raise TypeError(f"no numpy forward for {type(module).__name__}")
    return x


class QNetwork(nn.Module):
    """CleanRL ``dqn.py``'s Q-network (120-84 ReLU MLP)."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, hidden: tuple[int, int] = (120, 84)):
        super().__init__()
        if not isinstance(action_space, gym.spaces.Discrete):
            raise ValueError(f"Q-learning needs a Discrete action space, got {action_space}")
        self.discrete = True
        d = obs_dim(observation_space)
        self.net = nn.Sequential(nn.Linear(d, hidden[0]), nn.ReLU(), nn.Linear(hidden[0], hidden[1]), nn.ReLU(),
                                 nn.Linear(hidden[1], int(action_space.n)))
        self.n_actions = int(action_space.n)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)

    @torch.no_grad()
    def act(self, obs: np.ndarray, greedy: bool = True, epsilon: float = 0.0,
            rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        q = self.net(torch.as_tensor(obs, dtype=torch.float32)).numpy()
        actions = q.argmax(-1)
        if not greedy and epsilon > 0:
            explore = rng.random(len(actions)) < epsilon
            actions = np.where(explore, rng.integers(0, self.n_actions, len(actions)), actions)
        return actions, q

    def env_action(self, actions: np.ndarray) -> np.ndarray:
        return actions


def get_flat(net: nn.Module) -> np.ndarray:
    """All parameters as one float32 vector (a copy)."""
    return torch.nn.utils.parameters_to_vector(net.parameters()).detach().numpy().astype(np.float32, copy=True)


def set_flat(net: nn.Module, flat: np.ndarray) -> None:
    torch.nn.utils.vector_to_parameters(torch.as_tensor(np.asarray(flat, dtype=np.float32)), net.parameters())


def get_flat_grad(net: nn.Module) -> np.ndarray:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                      for p in net.parameters()]).numpy().astype(np.float32, copy=True)


def set_flat_grad(net: nn.Module, flat: np.ndarray) -> None:
    flat_t = torch.as_tensor(np.asarray(flat, dtype=np.float32))
    offset = 0
    for p in net.parameters():
        n = p.numel()
        p.grad = flat_t[offset:offset + n].view_as(p).clone()
        offset += n
