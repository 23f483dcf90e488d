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

from sparkml_dist.rl.core.policy import make_numpy_policy


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

        Runs :class:`~sparkml_dist.rl.core.policy.NumpyPolicy` (the same code a torch-free actor runs) on a copy of
        the weights, refreshed when a parameter changes (torch's in-place version counters).
        """
        return _numpy_twin(self).act(obs, greedy=greedy, rng=rng)

    def env_action(self, actions: np.ndarray) -> np.ndarray:
        """What the env is stepped with: continuous actions clipped to the space's bounds."""
        return _numpy_twin(self).env_action(actions)


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

    def act(self, obs: np.ndarray, greedy: bool = True, epsilon: float = 0.0,
            rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Greedy or epsilon-greedy actions and the Q-values (numpy, as :meth:`ActorCritic.act`)."""
        return _numpy_twin(self).act(obs, greedy=greedy, epsilon=epsilon, rng=rng)

    def env_action(self, actions: np.ndarray) -> np.ndarray:
        return actions


def numpy_layout(net: nn.Module) -> dict:
    """Where each acting layer of ``net`` sits in :func:`get_flat`'s vector (a plain dict: actors load weights into
    :mod:`~sparkml_dist.rl.core.policy`'s numpy nets without torch)."""
    offsets, off = {}, 0
    for p in net.parameters():
        offsets[id(p)] = off
        off += p.numel()
    seq = net.net if isinstance(net, QNetwork) else net.actor
    modules = list(seq)
    layers = []
    for i, m in enumerate(modules):
        if isinstance(m, nn.Linear):
            nxt = modules[i + 1] if i + 1 < len(modules) else None
            act = "tanh" if isinstance(nxt, nn.Tanh) else "relu" if isinstance(nxt, nn.ReLU) else None
            layers.append((offsets[id(m.weight)], m.in_features, m.out_features, offsets[id(m.bias)], act))
        elif not isinstance(m, (nn.Tanh, nn.ReLU)):  # pragma: no cover - the networks here are built from these
            raise TypeError(f"no numpy forward for {type(m).__name__}")
    layout = {"kind": "q" if isinstance(net, QNetwork) else "actor_critic", "discrete": bool(net.discrete),
              "layers": layers, "log_std": None, "low": None, "high": None, "size": off}
    if not net.discrete:
        layout["log_std"] = (offsets[id(net.log_std)], net.log_std.numel())
        layout["low"], layout["high"] = net.action_low.tolist(), net.action_high.tolist()
    return layout


def _numpy_twin(net: nn.Module):
    """``net``'s acting layers in numpy, rebuilt when any parameter was changed in place or replaced."""
    params = list(net.parameters())
    cached = getattr(net, "_np_twin", None)
    if cached is not None and all(p._version == v and p.data_ptr() == d for p, v, d in cached[0]):
        return cached[1]
    twin = make_numpy_policy(numpy_layout(net), get_flat(net))
    net._np_twin = ([(p, p._version, p.data_ptr()) for p in params], twin)
    return twin


def get_flat(net: nn.Module) -> np.ndarray:
    """All parameters as one float32 vector (a copy)."""
    return torch.nn.utils.parameters_to_vector(net.parameters()).detach().numpy().astype(np.float32, copy=True)


def set_flat(net: nn.Module, flat: np.ndarray) -> None:
    """Copy ``flat`` into the parameters in place (a copy, not views of the caller's array).

    In place, so each parameter's version counter moves and the numpy twin :meth:`ActorCritic.act` runs is rebuilt.
    ``vector_to_parameters`` swaps ``.data`` instead: the counters stay put and, once the allocator hands the new
    vector the address a previous one had, the twin's check passed and the net acted with stale weights.
    """
    flat_t = torch.as_tensor(np.asarray(flat, dtype=np.float32)).reshape(-1)
    params = list(net.parameters())
    total = sum(p.numel() for p in params)
    if len(flat_t) != total:
        raise ValueError(f"set_flat: {len(flat_t)} values for {total} parameters")
    offset = 0
    with torch.no_grad():
        for p in params:
            p.copy_(flat_t[offset:offset + p.numel()].view_as(p))
            offset += p.numel()


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
