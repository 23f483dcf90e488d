"""The configuration every algorithm shares, with declarative constraints checked once before any actor starts.

Each field carries its documentation and rule in ``metadata`` (``min``, ``gt``, ``choices``); :func:`validate` walks
them, then checks the env id and the budget, so a bad value fails with a ``ValueError`` naming the parameter before
Spark is touched. Names are camelCase, as pyspark.ml Params are.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


def param(default: Any, doc: str, **rule: Any) -> Any:
    """A config field with its documentation and constraint (``min``, ``gt``, ``choices``, ``optional``)."""
    return field(default=default, metadata={"doc": doc, **rule})


@dataclass(kw_only=True)
class RLConfig:
    """Shared settings; each algorithm's config subclasses this with its own fields."""

    env: str = param("CartPole-v1", "gymnasium environment id (ALE ids as 'ALE/Pong-v5')")
    numActors: int = param(2, "actors (Spark tasks with the spark runner)", min=1)
    envsPerActor: int = param(8, "environments each actor steps together, one batched policy call per step", min=1)
    totalSteps: int = param(100_000, "environment steps of the run (all actors together)", min=1)
    seed: int = param(0, "seed of networks, environments and sampling", min=0)
    runner: str = param("local", "'local' (one process) or 'spark' (actors are Spark tasks)",
                        choices=("local", "spark"))
    learningRate: float = param(2.5e-4, "optimizer step size", gt=0.0)
    gamma: float = param(0.99, "discount", min=0.0, max=1.0)
    maxGradNorm: float = param(0.5, "gradient clipping norm", gt=0.0)
    hidden: int = param(64, "hidden units per layer of the policy/value MLPs", min=1)
    queueSize: int = param(8, "payloads waiting at the learner before actors block (back-pressure)", min=1)
    actorNice: int = param(0, "niceness added to the actor loops of a Spark run (their thread only); on a box "
                              "whose cores the driver's learner shares with the actors, the learner then runs first",
                           min=0, max=19)
    checkpointDir: str | None = param(None, "directory of checkpoint.pt; a run finding one there resumes from it",
                                      optional=True)
    checkpointEvery: int = param(0, "env steps between checkpoints (0: only at the end)", min=0)
    maxActorRestarts: int = param(3, "times a failed actor stage is relaunched before the run fails", min=0)
    timeout: float = param(3600.0, "seconds before a Spark run is cancelled", gt=0.0)
    logEvery: float = param(5.0, "seconds between progress log lines", gt=0.0)
    memoryLimitMB: int = param(0, "ceiling on the RSS of the driver + actor processes in MB (0: none); the config's "
                                  "replay and queue bounds are checked against it before start, and the run fails "
                                  "with an error once the processes pass it", min=0)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def annealed_lr(optimizer, learning_rate: float, done: float, total: float) -> float:
    """Set every param group of ``optimizer`` to ``learning_rate`` decayed linearly to 0 at ``done == total`` (the
    PPO and IMPALA papers' schedule, behind each algorithm's ``annealLr``); returns the step size set."""
    lr = learning_rate * max(0.0, 1.0 - done / total)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def config_fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def make_config(cls: type, params: dict) -> RLConfig:
    """``cls(**params)`` with unknown names reported as a ``ValueError`` listing the known ones."""
    known = config_fields(cls)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return cls(**params)


def validate(config: RLConfig) -> None:
    """Check every field's type and rule; raises ``ValueError`` naming the field."""
    for name, f in config_fields(type(config)).items():
        value = getattr(config, name)
        meta = f.metadata
        if value is None:
            if meta.get("optional"):
                continue
            raise ValueError(f"{name} must be set")
        expected = type(f.default) if f.default is not None else None
        if expected in (int, float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"{name} must be a number, got {value!r}")
        if expected is int and not float(value).is_integer():
            raise ValueError(f"{name} must be an integer, got {value!r}")
        if expected is str and not isinstance(value, str):
            raise ValueError(f"{name} must be a string, got {value!r}")
        if "min" in meta and value < meta["min"]:
            raise ValueError(f"{name} must be >= {meta['min']}, got {value!r}")
        if "max" in meta and value > meta["max"]:
            raise ValueError(f"{name} must be <= {meta['max']}, got {value!r}")
        if "gt" in meta and not value > meta["gt"]:
            raise ValueError(f"{name} must be > {meta['gt']}, got {value!r}")
        if "choices" in meta and value not in meta["choices"]:
            raise ValueError(f"{name} must be one of {meta['choices']}, got {value!r}")
