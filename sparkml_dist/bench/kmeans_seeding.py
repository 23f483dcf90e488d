"""Benchmark (not a test): k-means|| seeding quality against MLlib, on ``bench.clustering``'s data.

    .venv/bin/python -m sparkml_dist.bench.kmeans_seeding --rows 1000000 --dims 32 --k 16 --seeds 5 --out seed.json

For each seed: our k-means|| candidates (``initSteps=2``, one set per seed) reclustered two ways -- MLlib's procedure
(one plain weighted k-means++ + 30 local Lloyd steps) and ours (greedy k-means++, best of
:data:`~sparkml_dist.clustering.initialization.LOCAL_RESTARTS`) -- each followed by Lloyd with MLlib's defaults
(``maxIter=20, tol=1e-4``), against MLlib ``pyspark.ml.clustering.KMeans(k, seed)``. Reported: every
``trainingCost`` (MLlib's meaning) and the medians over seeds. One resident block set serves all our fits.
"""

from __future__ import annotations

import argparse
import logging
import statistics
from typing import Any

logger = logging.getLogger("sparkml_dist.bench.kmeans_seeding")


def _ours(data, k: int, seeds: list[int]) -> dict[str, list[float]]:
    from sparkml_dist.clustering.initialization import centers_from_candidates, parallel_candidates
    from sparkml_dist.clustering.lloyd import KMeansConfig, fit_kmeans

    out: dict[str, list[float]] = {"mllib_reclustering": [], "ours": []}
    for seed in seeds:
        cands, weights = parallel_candidates(data, k, 2, seed, False)
        for name, kwargs in (("mllib_reclustering", {"restarts": 1, "greedy": False}), ("ours", {})):
            C0 = centers_from_candidates(cands, weights, k, seed, False, **kwargs)
            fit = fit_kmeans(data, KMeansConfig(k=k, max_iter=20, tol=1e-4, initial_centers=C0))
            out[name].append(fit.training_cost)
        logger.info("seed %d: %d candidates; ours %.6g, MLlib-style reclustering %.6g", seed, len(cands),
                    out["ours"][-1], out["mllib_reclustering"][-1])
    return out


def run(spark, rows: int, dims: int, k: int, seeds: int) -> dict[str, Any]:
    from pyspark.ml.clustering import KMeans as MlKMeans

    from sparkml_dist.bench.clustering import CLUSTER_STD
    from sparkml_dist.data.generators import make_blobs
    from sparkml_dist.engine import launch, spec_for
    from sparkml_dist.runtime.barrier import available_slots

    df = make_blobs(spark, rows, dims, centers=k, cluster_std=CLUSTER_STD, seed=0,
                    num_partitions=available_slots(spark)).cache()
    df.count()
    seed_list = list(range(seeds))
    costs = launch("mapreduce", df, spec_for("features"), _ours, (k, seed_list)).result
    costs["mllib"] = []
    for seed in seed_list:
        costs["mllib"].append(float(MlKMeans(k=k, seed=seed, maxIter=20, tol=1e-4).fit(df).summary.trainingCost))
        logger.info("seed %d: MLlib %.6g", seed, costs["mllib"][-1])
    df.unpersist()
    medians = {name: float(statistics.median(v)) for name, v in costs.items()}
    ratios = {"ours_vs_mllib": medians["ours"] / medians["mllib"],
              "mllib_reclustering_vs_mllib": medians["mllib_reclustering"] / medians["mllib"]}
    for name, value in ratios.items():
        logger.info("median ratio %-30s %.4f", name, value)
    return {"settings": {"rows": rows, "dims": dims, "k": k, "seeds": seeds, "master": spark.sparkContext.master},
            "costs": costs, "medians": medians, "ratios": ratios}


def main(argv: list[str] | None = None) -> dict:
    from sparkml_dist.runtime import get_spark, setup_logging

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dims", type=int, default=32)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--driver-memory", default="6g")
    parser.add_argument("--out", default=None, help="write the JSON report here")
    args = parser.parse_args(argv)
    setup_logging()
    spark = get_spark("local", master=args.master, app_name="sparkml-dist-bench-seeding",
                      spark_driver_memory=args.driver_memory)
    try:
        report = run(spark, args.rows, args.dims, args.k, args.seeds)
    finally:
        spark.stop()
    if args.out:
        from sparkml_dist.data.io import write_json

        write_json(args.out, report)
    return report


if __name__ == "__main__":
    main()
