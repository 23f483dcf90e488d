"""Benchmark of the classical hot path: DataFrame -> numpy blocks (``to_blocks``) against ``toPandas()``,
and the cost of a pass over resident blocks against re-reading the cached DataFrame.

    python -m sparkml_dist.bench.data --rows 1000000 --dims 32 --repeats 3 --out out/bench/data.json
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

import numpy as np

logger = logging.getLogger(__name__)


def _timed(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def run(spark, rows: int = 1_000_000, dims: int = 32, repeats: int = 3, partitions: int | None = None) -> dict:
    from pyspark import StorageLevel

    from sparkml_dist.data import to_blocks
    from sparkml_dist.data.generators import make_blobs

    parts = partitions or spark.sparkContext.defaultParallelism * 2
    df = make_blobs(spark, rows, dims, centers=8, seed=0, num_partitions=parts).persist(StorageLevel.MEMORY_ONLY)
    df.count()  # generation is not what is measured

    def via_blocks():
        with to_blocks(df, "features", "label") as blocks:
            blocks.aggregate(lambda b: np.asarray(b.X).sum(axis=0))

    def via_pandas():
        pdf = df.toPandas()
        np.stack(pdf["features"].map(lambda v: v.toArray()).to_numpy()).sum(axis=0)

    t_blocks, all_blocks = _timed(via_blocks, repeats)
    t_pandas, all_pandas = _timed(via_pandas, repeats)

    with to_blocks(df, "features", "label") as blocks:
        t_pass, all_pass = _timed(lambda: blocks.aggregate(lambda b: np.asarray(b.X).sum(axis=0)), repeats)
    # the same pass over the cached DataFrame, which re-ships every row from the JVM each time
    from sparkml_dist.data.blocks import arrow_to_block, select_for_arrow
    from sparkml_dist.data.validation import ColumnSpec

    spec = ColumnSpec("features", None, None, None)

    def reship():
        def fn(batches):
            import pyarrow as pa

            block, _ = arrow_to_block(batches, spec)
            yield pa.RecordBatch.from_arrays([pa.array([float(np.asarray(block.X).sum())])], names=["s"])

        select_for_arrow(df, spec).mapInArrow(fn, "s double").collect()

    t_reship, all_reship = _timed(reship, repeats)
    df.unpersist()
    mb = rows * dims * 8 / 1e6
    result = {
        "rows": rows, "dims": dims, "partitions": parts, "repeats": repeats, "megabytes": mb,
        "to_blocks_seconds": t_blocks, "to_pandas_seconds": t_pandas,
        "to_blocks_mb_per_s": mb / t_blocks, "to_pandas_mb_per_s": mb / t_pandas,
        "speedup_vs_to_pandas": t_pandas / t_blocks,
        "resident_pass_seconds": t_pass, "reshipped_pass_seconds": t_reship,
        "resident_vs_reshipped": t_reship / t_pass,
        "samples": {"to_blocks": all_blocks, "to_pandas": all_pandas, "resident": all_pass, "reshipped": all_reship},
    }
    logger.info("to_blocks %.2fs (%.0f MB/s) vs toPandas %.2fs: %.1fx; pass over resident blocks %.3fs vs "
                "re-shipped %.3fs: %.1fx", t_blocks, mb / t_blocks, t_pandas, t_pandas / t_blocks, t_pass,
                t_reship, t_reship / t_pass)
    return result


def main(argv=None) -> None:
    from sparkml_dist.data.io import write_json
    from sparkml_dist.runtime import get_spark, setup_logging

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dims", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="out/bench/data.json")
    args = parser.parse_args(argv)
    setup_logging()
    spark = get_spark("local")
    try:
        write_json(args.out, run(spark, args.rows, args.dims, args.repeats))
    finally:
        spark.stop()


if __name__ == "__main__":
    main()


# -- registered case of `sparkml-dist bench` -------------------------------------------------------------------------
from sparkml_dist.bench.registry import CaseContext, bench_case  # noqa: E402


@bench_case("data", "to_blocks", dataset="blobs", quality="sum_rel_error", higher_is_better=False,
            sizes={"quick": {"rows": 20_000, "dims": 8, "partitions": 4},
                   "standard": {"rows": 500_000, "dims": 32, "partitions": 8},
                   "full": {"rows": 1_000_000, "dims": 32, "partitions": 8}})
def to_blocks_case(ctx: CaseContext) -> dict:
    """DataFrame -> resident numpy blocks plus one pass, against ``toPandas()`` + stacking (same column sums)."""
    from pyspark import StorageLevel

    from sparkml_dist.data import to_blocks
    from sparkml_dist.data.generators import make_blobs
    rows, dims = ctx.size["rows"], ctx.size["dims"]
    parts = ctx.size["partitions"]  # fixed: the same rows on any number of workers
    df = make_blobs(ctx.spark, rows, dims, centers=8, seed=ctx.seed, num_partitions=parts)
    df = df.persist(StorageLevel.MEMORY_ONLY)
    df.count()  # generation is not what is measured
    try:
        start = time.perf_counter()
        with to_blocks(df, "features", "label") as blocks:
            ours = blocks.aggregate(lambda b: np.asarray(b.X).sum(axis=0))
        seconds = time.perf_counter() - start

        def pandas_baseline() -> dict:
            t = time.perf_counter()
            pdf = df.toPandas()
            sums = np.stack(pdf["features"].map(lambda v: v.toArray()).to_numpy()).sum(axis=0)
            return {"seconds": time.perf_counter() - t, "sums": sums}

        base = ctx.baseline("to_pandas", pandas_baseline)
    finally:
        df.unpersist()
    err = float(np.abs(ours - base["sums"]).max() / max(1e-300, np.abs(base["sums"]).max()))
    mb = rows * dims * 8 / 1e6
    return {"seconds": seconds, "metrics": {"sum_rel_error": err, "mb_per_s": mb / seconds, "megabytes": mb},
            "baselines": {"to_pandas": {"seconds": base["seconds"], "sum_rel_error": 0.0}}}
