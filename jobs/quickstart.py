"""spark-submit entry: the end-to-end quickstart job (see sparkml_dist/quickstart.py).

    spark-submit --master spark://127.0.0.1:7077 jobs/quickstart.py --config conf/jobs/quickstart.yaml
"""

from sparkml_dist.runner import script_main

if __name__ == "__main__":
    script_main("quickstart")
