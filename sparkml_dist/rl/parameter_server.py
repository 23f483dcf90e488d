"""The learner of the gradient-pushing algorithms (A3C, GORILA): a parameter server applying actors' gradients
asynchronously, one optimizer step per gradient, dropping gradients older than ``maxStaleness`` versions."""

from __future__ import annotations

import numpy as np
import torch

from sparkml_dist.rl.core.nets import get_flat, set_flat_grad


class ParameterServer:
    def __init__(self, algo, optimizer: str = "adam"):
        c = self.config = algo.config
        torch.manual_seed(c.seed)
        self.net = algo.make_policy()
        if optimizer == "rmsprop":  # A3C's shared RMSProp (Mnih et al. 2016)
            self.opt = torch.optim.RMSprop(self.net.parameters(), lr=c.learningRate, alpha=0.99, eps=1e-5)
        else:
            self.opt = torch.optim.Adam(self.net.parameters(), lr=c.learningRate, eps=1e-5)
        self.version = 0
        self.dropped = 0
        self.applied = 0

    def reply(self):
        return self.version, get_flat(self.net)

    def policy(self):
        return self.net

    def consume(self, items):
        lags, losses = [], []
        for _, p in items:
            if not p or p.get("grad") is None:
                continue
            lag = self.version - p["version"]
            if lag > self.config.maxStaleness:
                self.dropped += 1  # bounded staleness: too old to help
                continue
            set_flat_grad(self.net, p["grad"])
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.config.maxGradNorm)
            self.opt.step()
            self.version += 1
            self.applied += 1
            lags.append(lag)
            losses.append(p["loss"])
        if not lags:
            return {"updates": 0} if items else None
        return {"updates": len(lags), "policy_lag": float(np.mean(lags)), "loss": float(np.mean(losses))}

    def stats(self) -> dict:
        return {"gradients_applied": self.applied, "gradients_dropped": self.dropped}

    def state_dict(self) -> dict:
        return {"net": self.net.state_dict(), "opt": self.opt.state_dict(), "version": self.version,
                "dropped": self.dropped, "applied": self.applied}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.version, self.dropped, self.applied = state["version"], state["dropped"], state["applied"]
