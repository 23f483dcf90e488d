"""Runners: the same actor and learner objects in one process (``local``) or as Spark tasks (``spark``)."""

from sparkml_dist.rl.runners.local import run_local
from sparkml_dist.rl.runners.spark import run_spark

__all__ = ["run_local", "run_spark"]
