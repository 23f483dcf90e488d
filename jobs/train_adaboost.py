"""spark-submit entry: train the adaboost job (see sparkml_dist/classification/jobs.py).

    spark-submit --master spark://127.0.0.1:7077 jobs/train_adaboost.py \
        --config conf/jobs/adaboost.yaml --output out/adaboost
"""

from sparkml_dist.runner import script_main

if __name__ == "__main__":
    script_main("adaboost")
