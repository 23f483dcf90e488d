"""Distributed deep RL on Spark executors: DPPO, A3C, IMPALA (V-trace), Ape-X, GORILA and SEED-style inference.

Every algorithm runs through the same two runners (``runner="local"``: one process; ``runner="spark"``: actors are
long-lived Spark tasks of one barrier stage). See :mod:`sparkml_dist.rl.algorithm` for the actor/learner contract.
"""

from sparkml_dist.rl.a3c import A3C
from sparkml_dist.rl.apex import ApeX
from sparkml_dist.rl.dppo import DPPO
from sparkml_dist.rl.gorila import GORILA
from sparkml_dist.rl.impala import IMPALA
from sparkml_dist.rl.result import RLResult, evaluate_policy, random_policy_return
from sparkml_dist.rl.seed import SEED

ALGORITHMS = {"a3c": A3C, "apex": ApeX, "dppo": DPPO, "gorila": GORILA, "impala": IMPALA, "seed": SEED}

__all__ = ["A3C", "ApeX", "DPPO", "GORILA", "IMPALA", "SEED", "RLResult", "evaluate_policy", "random_policy_return",
           "ALGORITHMS"]
