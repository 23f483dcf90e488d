"""The issue's RL targets on ``local[2]`` (minutes each; skipped unless ``-m rl_full`` or SPARKML_DIST_RL_FULL=1).

Run: ``pytest -m rl_full tests/test_rl_full.py``. Speed is judged against a one-process PPO measured in the same run.
"""

from __future__ import annotations

import logging

import pytest

from sparkml_dist.bench import rl as bench

pytestmark = pytest.mark.rl_full
logger = logging.getLogger("sparkml_dist.bench.rl")  # the figures of each target, passed or not (-o log_cli=true)


@pytest.mark.parametrize("name, budget_s", [("dppo", 60.0), ("impala", 120.0), ("apex", None)])
def test_cartpole_target(spark, name, budget_s):
    spec = bench.TARGETS[(name, "CartPole-v1")]
    out = bench.targets(spark, seeds=3, names=(name,))
    logger.info("target %s: %s", name, out)
    mine, base = out[name], out["ppo_one_process"]
    assert mine["solved"] == 3, out
    assert mine["worst_steps"] <= spec["budget"]
    if budget_s is not None:
        assert mine["median_seconds"] <= budget_s, out
    assert mine["median_seconds"] <= 1.5 * base["median_seconds"], out


@pytest.mark.parametrize("name, env_id", [("dppo", "Acrobot-v1"), ("impala", "Acrobot-v1"), ("apex", "Acrobot-v1"),
                                          ("dppo", "Pendulum-v1")])
def test_other_targets(spark, name, env_id):
    result = bench.solve(spark, name, env_id, seed=0)
    logger.info("target %s %s: %s", name, env_id, result)
    assert result["solved"], result


def test_rollout_throughput(spark):
    # 500k steps: a stage of ~8 s at this speed (Spark's cost is fixed, ~0.3 s per stage; an actor stage of a run
    # lasts the whole run, so a shorter stage would overstate its share)
    out = bench.throughput(spark, steps=500_000)
    logger.info("throughput: %s", out)
    assert out["batched8_x1"]["per_core_steps_per_s"] >= 30_000, out
    assert out["batched8_x1"]["spark_share"] <= 0.10, out
    assert out["scaling_2_over_1"] >= 1.7, out


def test_seed_beats_batch1_actors(spark):
    out = bench.seed_vs_batch1(spark)
    logger.info("seed vs batch-1: %s", out)
    assert out["ratio"] >= 2.0, out
