"""Framework-free RL cores shared by every algorithm and both runners (numpy / torch, no Spark)."""

from sparkml_dist.rl.core.envs import VectorEnv, check_env_id, make_env_fn
from sparkml_dist.rl.core.epsilon import apex_epsilons, linear_schedule
from sparkml_dist.rl.core.gae import gae
from sparkml_dist.rl.core.nets import ActorCritic, QNetwork, get_flat, set_flat
from sparkml_dist.rl.core.nstep import nstep_targets
from sparkml_dist.rl.core.replay import PrioritizedReplay, SumTree
from sparkml_dist.rl.core.vtrace import vtrace

__all__ = ["VectorEnv", "check_env_id", "make_env_fn", "apex_epsilons", "linear_schedule", "gae", "ActorCritic",
           "QNetwork", "get_flat", "set_flat", "nstep_targets", "PrioritizedReplay", "SumTree", "vtrace"]
