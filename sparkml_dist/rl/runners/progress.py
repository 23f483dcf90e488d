"""Run bookkeeping shared by both runners: env-step accounting, history rows, progress logging, checkpoints."""

from __future__ import annotations

import logging
import os
import time
from collections import deque

import numpy as np
import torch

logger = logging.getLogger("sparkml_dist.rl")


class Progress:
    """Counts env steps and episodes from actor payloads, records history rows and logs progress.

    Every payload an actor sends carries ``steps`` (env steps it took) and ``returns`` (episodes it finished).
    """

    def __init__(self, name: str, total_steps: int, log_every: float, rows: int = 100):
        self.name = name
        self.total_steps = total_steps
        self.log_every = log_every
        self.row_every = max(1, total_steps // rows)
        self.env_steps = 0
        self.episodes = 0
        self.updates = 0
        self.restarts = 0
        self.recent: deque[float] = deque(maxlen=20)
        self.history: list[dict] = []
        self.lag_sum, self.lag_count, self.lag_max = 0.0, 0, 0.0  # running aggregates: flat memory on long runs
        self.last_metrics: dict = {}
        self.seconds_before = 0.0  # time spent by earlier (checkpointed) parts of a resumed run
        self.stopped = False  # a callback asked to stop early
        self._start = time.perf_counter()
        self._last_log = self._start
        self._last_row_steps = 0
        self._last_rate = (self._start, 0)

    @property
    def done(self) -> bool:
        return self.stopped or self.env_steps >= self.total_steps

    @property
    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self._start

    def mean_return(self) -> float:
        return float(np.mean(self.recent)) if self.recent else float("nan")

    def observe(self, payload: dict | None) -> None:
        if not payload:
            return
        self.env_steps += int(payload.get("steps", 0))
        returns = payload.get("returns", ())
        self.episodes += len(returns)
        self.recent.extend(returns)

    def learned(self, metrics: dict | None) -> None:
        """After a learner update: keep its metrics, add a history row every ``row_every`` env steps, log."""
        if metrics:
            self.updates += int(metrics.pop("updates", 1))
            lag = metrics.get("policy_lag")
            if lag is not None:
                self.lag_sum += float(lag)
                self.lag_count += 1
                self.lag_max = max(self.lag_max, float(lag))
            self.last_metrics = metrics
        if self.env_steps - self._last_row_steps >= self.row_every or self.env_steps >= self.total_steps:
            self._row()
        now = time.perf_counter()
        if now - self._last_log >= self.log_every:
            self._last_log = now
            logger.info("%s: %d/%d env steps, return %.1f, %.0f env steps/s, %d updates, lag %.2f", self.name,
                        self.env_steps, self.total_steps, self.mean_return(), self._rate(), self.updates,
                        self.last_metrics.get("policy_lag", 0.0))

    def _rate(self) -> float:
        t0, s0 = self._last_rate
        now = time.perf_counter()
        rate = (self.env_steps - s0) / max(now - t0, 1e-9)
        self._last_rate = (now, self.env_steps)
        return rate

    def _row(self) -> None:
        steps = self.env_steps - self._last_row_steps
        seconds = self.seconds
        prev = self.history[-1]["seconds"] if self.history else self.seconds_before
        row = {"env_steps": self.env_steps, "return": self.mean_return(), "episodes": self.episodes,
               "updates": self.updates, "seconds": seconds,
               "env_steps_per_s": steps / max(seconds - prev, 1e-9)}
        for key in ("loss", "policy_lag", "lr"):
            if key in self.last_metrics:
                row[key] = float(self.last_metrics[key])
        self.history.append(row)
        self._last_row_steps = self.env_steps
        from sparkml_dist.tracking import on_progress  # MLflow: rl.<metric> at step=env_steps if a run is active

        on_progress("rl", row, step_key="env_steps")

    def finish(self) -> None:
        """The closing history row (env steps that arrived after the last update)."""
        if not self.history or self.history[-1]["env_steps"] != self.env_steps:
            self._row()

    def stats(self) -> dict:
        return {"env_steps": self.env_steps, "episodes": self.episodes, "updates": self.updates,
                "seconds": self.seconds, "env_steps_per_s": self.env_steps / max(self.seconds, 1e-9),
                "actor_restarts": self.restarts, "policy_lag_mean": self.lag_sum / max(self.lag_count, 1),
                "policy_lag_max": self.lag_max, "final_return": self.mean_return()}

    def state_dict(self) -> dict:
        return {"env_steps": self.env_steps, "episodes": self.episodes, "updates": self.updates,
                "recent": list(self.recent), "history": list(self.history),
                "lags": (self.lag_sum, self.lag_count, self.lag_max),
                "seconds": self.seconds, "restarts": self.restarts}

    def load_state_dict(self, state: dict) -> None:
        self.env_steps, self.episodes, self.updates = state["env_steps"], state["episodes"], state["updates"]
        self.recent.extend(state["recent"])
        self.history = list(state["history"])
        self.lag_sum, self.lag_count, self.lag_max = state["lags"]
        self.seconds_before, self.restarts = state["seconds"], state["restarts"]
        self._last_row_steps = self.env_steps
        self._last_rate = (time.perf_counter(), self.env_steps)


class Checkpointer:
    """``checkpointDir/checkpoint.pt``: written atomically (temp file + rename) every ``every`` env steps."""

    def __init__(self, directory: str | None, every: int):
        self.path = os.path.join(directory, "checkpoint.pt") if directory else None
        self.every = every
        self._next = every
        self.loaded: dict | None = None  # what the last load() found

    def load(self) -> dict | None:
        self.loaded = None
        if self.path and os.path.exists(self.path):
            state = torch.load(self.path, weights_only=False)
            logger.info("resuming from %s (%d env steps done)", self.path, state["progress"]["env_steps"])
            self._next = state["progress"]["env_steps"] + self.every
            self.loaded = state
        return self.loaded

    def maybe_save(self, env_steps: int, state_fn) -> None:
        if self.path and self.every and env_steps >= self._next:
            self.save(state_fn())
            self._next = env_steps + self.every

    def save(self, state: dict) -> None:
        if not self.path:
            return
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        tmp = f"{self.path}.tmp-{os.getpid()}"
        torch.save(state, tmp)
        os.replace(tmp, self.path)
