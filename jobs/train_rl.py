"""spark-submit entry: train a distributed RL agent (see sparkml_dist/rl/jobs.py).

    spark-submit --master spark://127.0.0.1:7077 jobs/train_rl.py --config conf/jobs/rl_impala.yaml --output out/rl
"""

from sparkml_dist.runner import script_main

if __name__ == "__main__":
    script_main("rl")
