"""spark-submit entry: train the fuzzy_cmeans job (fuzzy c-means; see sparkml_dist/clustering/jobs.py).

    spark-submit --master spark://127.0.0.1:7077 jobs/train_fuzzy.py \
        --config conf/jobs/fuzzy_cmeans.yaml --output out/fuzzy_cmeans
"""

from sparkml_dist.runner import script_main

if __name__ == "__main__":
    script_main("fuzzy_cmeans")
