"""spark-submit entry: train the consensus job (consensus clustering; see sparkml_dist/clustering/jobs.py).

    spark-submit --master spark://127.0.0.1:7077 jobs/train_consensus.py \
        --config conf/jobs/consensus.yaml --output out/consensus
"""

from sparkml_dist.runner import script_main

if __name__ == "__main__":
    script_main("consensus")
