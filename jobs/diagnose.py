"""spark-submit entry: which executor JVMs run the work, how many task slots, and a barrier allreduce across them.

    spark-submit --master spark://127.0.0.1:7077 jobs/diagnose.py --output out/diagnose
"""

from sparkml_dist.runner import script_main

if __name__ == "__main__":
    script_main("diagnose")
