"""The double-DQN update in numpy: forward, backward, gradient clipping and Adam on one flat weight vector.

Ape-X's learner is its bottleneck: actors wait on it (``replayRatio`` learner samples per env step). For the
Q-network (a 4-120-84-2 MLP on CartPole) an eager torch update is mostly per-op overhead: three forward passes,
autograd, clipping and Adam cost ~1.2-1.5 ms here, ~4-5 ms beside two busy actors; the same arithmetic in numpy
on one flat vector costs ~3x less. The weights keep torch's layout (:func:`~sparkml_dist.rl.core.nets.get_flat`:
``Linear`` weights as ``(out, in)``), so the vector is what actors load and what
:func:`~sparkml_dist.rl.core.nets.set_flat` puts back into the torch ``QNetwork`` that is saved and evaluated.

The step is torch's, operation for operation: Huber loss (``smooth_l1_loss``, ``beta=1``) weighted by importance
weights and averaged; ``clip_grad_norm_`` (``coef = max_norm / (norm + 1e-6)``, applied when below 1); Adam with
torch's bias corrections (``tests/test_rl_core.py`` checks 60 steps against torch autograd + ``torch.optim.Adam``).
"""

from __future__ import annotations

import numpy as np

from sparkml_dist.rl.core.policy import mlp_forward


class NumpyDoubleDQN:
    """Online and target weights of an MLP Q-network (a :func:`~sparkml_dist.rl.core.nets.numpy_layout`), and the
    Adam state of one double-DQN learner.

    Parameters
    ----------
    layout : dict
        The Q-network's layout (``kind == "q"``; ReLU hidden layers, linear output).
    flat : numpy.ndarray
        Initial weights (``get_flat`` of the torch network); the target starts equal to them.
    lr, max_grad_norm, eps, betas
        Adam's step size, the clipping norm, Adam's epsilon and betas (torch's defaults).
    """

    def __init__(self, layout: dict, flat: np.ndarray, lr: float, max_grad_norm: float, eps: float = 1e-8,
                 betas: tuple[float, float] = (0.9, 0.999)):
        if layout.get("kind") != "q":
            raise ValueError(f"NumpyDoubleDQN needs a Q-network layout, got kind={layout.get('kind')!r}")
        self._layers = [tuple(layer) for layer in layout["layers"]]
        size = max(max(w + i * o, b + o) for w, i, o, b, _ in self._layers)
        flat = np.asarray(flat, dtype=np.float32)
        if flat.size != size:
            raise ValueError(f"flat weights have {flat.size} values, the layout needs {size}")
        self.params = flat.copy()
        self.target = flat.copy()
        self.grad = np.zeros_like(self.params)
        self.m = np.zeros_like(self.params)
        self.v = np.zeros_like(self.params)
        self._scratch = np.zeros_like(self.params)
        self.t = 0
        self.max_grad_norm = max_grad_norm
        self.eps = eps
        self.betas = betas
        #: torch-optimizer-like, so :func:`~sparkml_dist.rl.config.annealed_lr` sets the step size of both kinds
        self.param_groups = [{"lr": float(lr)}]
        self._online = self._views(self.params)
        self._target = self._views(self.target)
        self._grads = self._views(self.grad)

    def _views(self, flat: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, str | None]]:
        """Per layer: the weight as an ``(in, out)`` view of torch's ``(out, in)`` block, the bias, the activation
        (what :func:`~sparkml_dist.rl.core.policy.mlp_forward` takes; writes through the views land in ``flat``)."""
        return [(flat[w:w + i * o].reshape(o, i).T, flat[b:b + o], act) for w, i, o, b, act in self._layers]

    def sync_target(self) -> None:
        self.target[:] = self.params

    def step(self, batch: dict, weights: np.ndarray) -> tuple[float, np.ndarray]:
        """One importance-weighted double-DQN step on ``batch`` (``obs, action, reward, discount, next_obs``);
        returns the loss and the new ``|TD|`` (computed before the update, as the torch step returns them)."""
        loss, td = self.gradient(batch, weights)
        self._apply()
        return loss, td

    def gradient(self, batch: dict, weights: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """The loss's gradient into :attr:`grad` (torch's flat layout; what a GORILA actor-learner ships), without
        an update; returns the loss and ``|TD|``. ``weights=None``: unweighted (``smooth_l1_loss``'s mean)."""
        obs = np.asarray(batch["obs"], dtype=np.float32)
        next_obs = np.asarray(batch["next_obs"], dtype=np.float32)
        n = len(obs)
        rows = np.arange(n)
        # one pass of the online net over s and s' (the s' half only picks the double-DQN action)
        acts = mlp_forward(self._online, np.concatenate((obs, next_obs)), keep=True)
        q_all = acts[-1]
        boot = mlp_forward(self._target, next_obs)[rows, q_all[n:].argmax(-1)]
        y = batch["reward"] + batch["discount"] * boot
        action = np.asarray(batch["action"], dtype=np.int64)
        delta = q_all[rows, action] - y
        abs_delta = np.abs(delta)
        weights = np.ones(n, dtype=np.float32) if weights is None else np.asarray(weights, dtype=np.float32)
        loss = float(np.mean(weights * np.where(abs_delta < 1.0, 0.5 * delta * delta, abs_delta - 0.5)))
        g = np.zeros((n, q_all.shape[1]), dtype=np.float32)
        g[rows, action] = weights * np.clip(delta, -1.0, 1.0) / n  # d loss / d q
        for k in range(len(self._online) - 1, -1, -1):
            below = acts[k][:n]
            g_weight, g_bias, _ = self._grads[k]
            np.matmul(g.T, below, out=g_weight.T)  # written in torch's (out, in) block, C-contiguous
            np.sum(g, axis=0, out=g_bias)
            if k:
                g = g @ self._online[k][0].T
                g *= below > 0  # through the ReLU of the layer below
        return loss, abs_delta.astype(np.float32)

    def _apply(self) -> None:
        """``clip_grad_norm_`` and one Adam step, in place on the flat vectors (one scratch vector, no temporaries)."""
        grad, m, v, tmp = self.grad, self.m, self.v, self._scratch
        norm = float(np.sqrt(np.dot(grad, grad)))
        coef = self.max_grad_norm / (norm + 1e-6)
        if coef < 1.0:
            grad *= coef
        self.t += 1
        b1, b2 = self.betas
        m *= b1
        np.multiply(grad, 1.0 - b1, out=tmp)
        m += tmp
        v *= b2
        np.multiply(grad, grad, out=tmp)
        tmp *= 1.0 - b2
        v += tmp
        np.sqrt(v, out=tmp)
        tmp /= np.sqrt(1.0 - b2 ** self.t)
        tmp += self.eps
        np.divide(m, tmp, out=tmp)
        tmp *= self.param_groups[0]["lr"] / (1.0 - b1 ** self.t)
        self.params -= tmp

    def state_dict(self) -> dict:
        return {"params": self.params.copy(), "target": self.target.copy(), "m": self.m.copy(), "v": self.v.copy(),
                "t": self.t, "lr": self.param_groups[0]["lr"]}

    def load_state_dict(self, state: dict) -> None:
        for key in ("params", "target", "m", "v"):
            getattr(self, key)[:] = state[key]
        self.t = int(state["t"])
        self.param_groups[0]["lr"] = float(state["lr"])
