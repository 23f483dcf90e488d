"""spark-submit entry: train the deep_torch job (see sparkml_dist/deep/jobs.py).

    spark-submit --master spark://127.0.0.1:7077 jobs/train_torch.py \
        --config conf/jobs/deep_torch.yaml --output out/deep_torch params.epochs=10
"""

from sparkml_dist.runner import script_main

if __name__ == "__main__":
    script_main("deep_torch")
