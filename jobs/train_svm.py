"""spark-submit entry: train the svm job (see sparkml_dist/classification/jobs.py).

    spark-submit --master spark://127.0.0.1:7077 jobs/train_svm.py --config conf/jobs/svm.yaml --output out/svm
"""

from sparkml_dist.runner import script_main

if __name__ == "__main__":
    script_main("svm")
