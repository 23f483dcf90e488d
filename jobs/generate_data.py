"""spark-submit entry: generate a synthetic dataset inside Spark and write it atomically as Parquet.

    spark-submit jobs/generate_data.py --config conf/jobs/generate.yaml --output out/blobs input.n_rows=10000000
"""

from sparkml_dist.runner import script_main

if __name__ == "__main__":
    script_main("generate")
