# Databricks notebook source
# MAGIC %md
# MAGIC # sparkml_dist: distributed reinforcement learning
# MAGIC One algorithm of `sparkml_dist.rl` (IMPALA by default; DPPO, A3C, Ape-X, GORILA, SEED) on a gymnasium
# MAGIC environment, its actors as long-lived Spark tasks (`runner = spark`), then a greedy evaluation against a
# MAGIC random policy on the same episodes, and the policy saved. Uses the notebook's session (never sets a master:
# MAGIC Spark Connect clusters refuse it). Set the widgets, then *Run all*; the last cell returns the metrics as JSON.

# COMMAND ----------

# MAGIC %pip install sparkml_dist

# COMMAND ----------

# DBTITLE 1,Parameters
# ruff: noqa: E402, F821  (imports sit in the cells that use them; dbutils and display are Databricks globals)
dbutils.widgets.dropdown("algorithm", "impala", ["impala", "dppo", "a3c", "apex", "gorila", "seed"], "algorithm")
dbutils.widgets.text("env", "CartPole-v1", "gymnasium environment id")
dbutils.widgets.text("total_steps", "100000", "environment steps (all actors together)")
dbutils.widgets.text("actors", "2", "actors (Spark tasks)")
dbutils.widgets.text("envs_per_actor", "8", "environments per actor")
dbutils.widgets.dropdown("runner", "spark", ["spark", "local"], "spark: actors are Spark tasks; local: one process")
dbutils.widgets.text("params", "", "the algorithm's other parameters, JSON, camelCase (empty: CartPole defaults)")
dbutils.widgets.text("eval_episodes", "10", "greedy evaluation episodes")
dbutils.widgets.text("seed", "0", "seed")
dbutils.widgets.text("output", "", "where to save the policy (empty: not saved)")
dbutils.widgets.dropdown("overwrite", "false", ["true", "false"], "replace an existing output")

# COMMAND ----------

# DBTITLE 1,Session and checked parameters
import json

from sparkml_dist.notebook import as_bool, check_output, config_error, json_object, widget
from sparkml_dist.rl.jobs import build
from sparkml_dist.runtime import get_spark
from sparkml_dist.runtime.barrier import available_slots

spark = get_spark("databricks")  # the notebook's own session: no master is ever set
algorithm = widget(dbutils, "algorithm", choices=("impala", "dppo", "a3c", "apex", "gorila", "seed"))
env_id = widget(dbutils, "env")
total_steps = widget(dbutils, "total_steps", int, minimum=1)
actors = widget(dbutils, "actors", int, minimum=1)
envs_per_actor = widget(dbutils, "envs_per_actor", int, minimum=1)
runner = widget(dbutils, "runner", choices=("spark", "local"))
#: small-budget CartPole settings (those of conf/jobs/rl_<algorithm>.yaml) used when the params widget is empty
CARTPOLE = {"impala": {"unrollLength": 16, "batchUnrolls": 1, "learningRate": 2e-3},
            "seed": {"unrollLength": 16, "batchUnrolls": 1, "learningRate": 2e-3},
            "dppo": {"numSteps": 32, "updateEpochs": 8, "learningRate": 1e-3, "gaeLambda": 0.8, "gamma": 0.98,
                     "entropyCoef": 0.0},
            "apex": {"learningStarts": 1000}}
extra = widget(dbutils, "params", json_object) or CARTPOLE.get(algorithm, {})
eval_episodes = widget(dbutils, "eval_episodes", int, minimum=1)
seed = widget(dbutils, "seed", int, minimum=0)
overwrite = widget(dbutils, "overwrite", as_bool)
output = check_output(spark, widget(dbutils, "output"), overwrite)  # refused now, not after training
params = {**extra, "env": env_id, "totalSteps": total_steps, "numActors": actors, "envsPerActor": envs_per_actor,
          "runner": runner, "seed": seed}
try:  # every check of the algorithm (names, ranges, env id, budget) runs here, before any actor starts
    algo = build({"algorithm": algorithm, "params": params})
except (TypeError, ValueError) as exc:
    raise config_error(exc, {"env": ("env", env_id), "totalSteps": ("total_steps", total_steps),
                             "numActors": ("actors", actors), "envsPerActor": ("envs_per_actor", envs_per_actor)},
                       fallback="params") from exc
if runner == "spark" and actors > available_slots(spark):
    raise ValueError(f"widget 'actors' = {actors}: the cluster has {available_slots(spark)} free task slots")

# COMMAND ----------

# DBTITLE 1,Train
result = algo.train(spark=spark if runner == "spark" else None)
stats = result.stats
print(f"{algorithm} ({runner}): {stats['env_steps']} env steps in {stats['seconds']:.1f} s "
      f"({stats['env_steps_per_s']:.0f}/s), {stats['updates']} updates, training return {stats['final_return']:.1f}")
display(spark.createDataFrame([(int(h["env_steps"]), float(h["return"]), float(h.get("loss", float("nan"))))
                               for h in result.history], "env_steps long, return double, loss double"))

# COMMAND ----------

# DBTITLE 1,Greedy evaluation against a random policy on the same episodes
from sparkml_dist.rl import random_policy_return

greedy_return = result.evaluate(episodes=eval_episodes, seed=10_000)
random_return = random_policy_return(env_id, episodes=eval_episodes, seed=10_000)
print(f"greedy return {greedy_return:.1f} over {eval_episodes} episodes (random policy: {random_return:.1f})")

# COMMAND ----------

# DBTITLE 1,Save and return
from sparkml_dist.notebook import save_models

metrics = {"algorithm": algorithm, "runner": runner, "env": env_id, "greedy_return": greedy_return,
           "random_return": random_return, "eval_episodes": eval_episodes,
           "stats": {k: v for k, v in stats.items() if isinstance(v, (int, float, str, bool))},
           "history": result.history}
save_models(spark, output, {"policy": result}, overwrite)  # policy/policy.pt + policy/run.json
dbutils.notebook.exit(json.dumps(metrics, default=float))
