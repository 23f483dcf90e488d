"""The acting half of the networks in numpy: what an actor needs to choose actions, without torch.

Actors call the policy once per env step on a batch of ``envsPerActor`` observations. For these small MLPs an eager
torch forward plus a distribution object costs several times the arithmetic (CartPole, 8 envs: ~2x the env steps/s in
numpy), and importing torch costs an actor process ~240 MB of RSS and 2.5-4 s. So IMPALA, SEED and Ape-X actors run
in Spark tasks that never import torch: they get a *layout* (which slices of the learner's flat weight vector are
which layer) once, and each new weight vector is sliced into numpy arrays.

A layout is a plain dict made by :func:`sparkml_dist.rl.core.nets.numpy_layout` from the torch network::

    {"kind": "actor_critic" | "q", "discrete": bool,
     "layers": [(weight_offset, in_dim, out_dim, bias_offset, "tanh" | "relu" | None), ...],
     "log_std": (offset, n) | None, "low": [...] | None, "high": [...] | None}

Sampling draws from the caller's ``rng`` (numpy): each actor owns its stream, so a run is the same whether its actors
share one process (local runner) or not (Spark tasks).
"""

from __future__ import annotations

import numpy as np

_LOG_SQRT_2PI = 0.5 * np.log(2 * np.pi)


def mlp_forward(layers, x: np.ndarray, keep: bool = False):
    """``layers`` (``(weight (in, out), bias, "tanh" | "relu" | None)``) applied to ``x``; with ``keep``, the list of
    every layer's input and the output (what a backward pass needs: :mod:`~sparkml_dist.rl.core.qlearn`)."""
    acts = [x]
    for weight, bias, act in layers:
        x = x @ weight
        x += bias
        if act == "tanh":
            np.tanh(x, out=x)
        elif act == "relu":
            np.maximum(x, 0.0, out=x)
        if keep:
            acts.append(x)
    return acts if keep else x


class NumpyMLP:
    """The layers of a layout, loaded from a flat float32 weight vector (the learner's ``get_flat``)."""

    def __init__(self, layout: dict, flat: np.ndarray | None = None):
        self.layout = layout
        self.layers: list[tuple[np.ndarray, np.ndarray, str | None]] = []
        self.log_std: np.ndarray | None = None
        if flat is not None:
            self.load(flat)

    def load(self, flat: np.ndarray) -> None:
        flat = np.asarray(flat, dtype=np.float32)
        layers = []
        for w_off, d_in, d_out, b_off, act in self.layout["layers"]:
            weight = flat[w_off:w_off + d_in * d_out].reshape(d_out, d_in).T.copy()  # torch stores (out, in)
            layers.append((weight, flat[b_off:b_off + d_out].copy(), act))
        self.layers = layers
        if self.layout.get("log_std"):
            off, n = self.layout["log_std"]
            self.log_std = flat[off:off + n].copy()

    def forward(self, x: np.ndarray) -> np.ndarray:
        return mlp_forward(self.layers, np.asarray(x, dtype=np.float32))


class NumpyPolicy(NumpyMLP):
    """``ActorCritic``'s policy head: categorical over logits, or a Gaussian with a state-independent log-std."""

    def __init__(self, layout: dict, flat: np.ndarray | None = None):
        super().__init__(layout, flat)
        if not layout["discrete"]:  # the action bounds, once (env_action runs every env step)
            self._low = np.asarray(layout["low"], np.float32)
            self._high = np.asarray(layout["high"], np.float32)

    @property
    def discrete(self) -> bool:
        return bool(self.layout["discrete"])

    def act(self, obs: np.ndarray, greedy: bool = False,
            rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Actions for a batch of observations and their log-probabilities (one forward pass)."""
        out = self.forward(obs)
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
        log_std = self.log_std
        if greedy:
            actions = out
        else:
            actions = out + np.exp(log_std) * rng.standard_normal(out.shape).astype(np.float32)
        z = (actions - out) * np.exp(-log_std)
        logp = (-0.5 * z * z - log_std - _LOG_SQRT_2PI).sum(-1)
        return actions.astype(np.float32), logp.astype(np.float32)

    def env_action(self, actions: np.ndarray) -> np.ndarray:
        """What the env is stepped with: continuous actions clipped to the space's bounds."""
        if self.discrete:
            return actions
        return np.clip(actions, self._low, self._high)


class NumpyQ(NumpyMLP):
    """``QNetwork`` in numpy: Q-values, greedy or epsilon-greedy actions."""

    discrete = True

    def act(self, obs: np.ndarray, greedy: bool = True, epsilon: float = 0.0,
            rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        q = self.forward(obs)
        actions = q.argmax(-1)
        if not greedy and epsilon > 0:
            explore = rng.random(len(actions)) < epsilon
            actions = np.where(explore, rng.integers(0, q.shape[-1], len(actions)), actions)
        return actions, q

    def env_action(self, actions: np.ndarray) -> np.ndarray:
        return actions


def make_numpy_policy(layout: dict, flat: np.ndarray | None = None) -> NumpyPolicy | NumpyQ:
    return (NumpyQ if layout["kind"] == "q" else NumpyPolicy)(layout, flat)
