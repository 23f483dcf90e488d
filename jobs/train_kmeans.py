"""spark-submit entry: train the kmeans job (k-means; see sparkml_dist/clustering/jobs.py).

    spark-submit --master spark://127.0.0.1:7077 jobs/train_kmeans.py --config conf/jobs/kmeans.yaml --output out/kmeans
"""

from sparkml_dist.runner import script_main

if __name__ == "__main__":
    script_main("kmeans")
