"""Deep-learning benchmark: launch, feed, DDP scaling and the estimator, each as a ratio against a baseline measured
in the same run (medians of ``repeats``).

* launch: a trivial 2-rank job through :func:`sparkml_dist.deep.run` vs ``TorchDistributor(local_mode=False)``;
* feed: rows/s of shuffled batches of 256 rows (784 float32 features + label) from our per-rank
  :class:`~sparkml_dist.data.feed.TensorFeed` and from the converter's loader, vs TorchDistributor's private
  partition loader over the same rows (an Arrow IPC file) and a plain numpy gather-copy of the same batches;
* calibration: CPU-bound torch work in one process vs two in parallel (what 2 ranks can gain at most here);
* DDP: samples/s of a compute-bound LeNet-5 (28x28) on 2 ranks vs 1;
* estimator: ``TorchEstimator`` on digits end to end vs the same training in one plain torch process.

Run: ``python -m sparkml_dist.bench.deep --repeats 3`` (or through ``sparkml-dist bench``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import multiprocessing as mp
import os
import statistics
import tempfile
import time

import numpy as np

logger = logging.getLogger("sparkml_dist.bench.deep")  # also when run as __main__

FEATURES = 784
BATCH = 256


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# --- launch -------------------------------------------------------------------------------------------------------
def _trivial():
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return dist.get_rank()


def bench_launch(spark, repeats: int) -> dict:
    from pyspark.ml.torch.distributor import TorchDistributor

    from sparkml_dist.deep import run

    run(_trivial, numWorkers=2)  # warm the Python workers, as a user's second call would be
    ours = _median_seconds(lambda: run(_trivial, numWorkers=2), repeats)
    td = TorchDistributor(num_processes=2, local_mode=False, use_gpu=False)
    theirs = _median_seconds(lambda: td.run(_trivial), repeats)
    return {"run_seconds": ours, "torchdistributor_seconds": theirs, "ratio": ours / theirs}


# --- feed ---------------------------------------------------------------------------------------------------------
def _rows(n: int, seed: int = 0):
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    x = rng.random((n, FEATURES), dtype=np.float32)
    y = rng.integers(0, 10, n).astype(np.int64)
    table = pa.table({"features": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), FEATURES),
                      "label": pa.array(y)})
    return x, y, table


def _rows_per_s(iterator, rows: int) -> float:
    t0 = time.perf_counter()
    seen = 0
    for batch in iterator:
        seen += len(batch[0] if isinstance(batch, (list, tuple)) else next(iter(batch.values())))
    return seen / (time.perf_counter() - t0) if rows else 0.0


def bench_feed(spark, rows: int, repeats: int) -> dict:
    import pyarrow as pa
    import torch
    from pyspark.ml.torch.data import _SparkPartitionTorchDataset
    from pyspark.sql.types import ArrayType, FloatType, LongType, StructField, StructType

    from sparkml_dist.data.converter import make_spark_converter
    from sparkml_dist.data.feed import TensorFeed, arrow_arrays

    torch.set_num_threads(1)
    x, y, table = _rows(rows)

    def numpy_copy():
        order = np.random.default_rng(0).permutation(rows)
        for i in range(0, rows - BATCH + 1, BATCH):
            sel = order[i:i + BATCH]
            yield torch.from_numpy(x.take(sel, axis=0)), torch.from_numpy(y.take(sel))

    def ours():
        arrays = arrow_arrays(table.to_batches(max_chunksize=10_000))
        return TensorFeed(arrays, BATCH, rows // BATCH, shuffle=True, seed=0).batches(0)

    figures = {"rows": rows,
               "numpy_copy_rows_per_s": statistics.median(_rows_per_s(numpy_copy(), rows) for _ in range(repeats)),
               "feed_rows_per_s": statistics.median(_rows_per_s(ours(), rows) for _ in range(repeats))}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "part.arrow")
        # TorchDistributor's tasks write vectors as arrays: the same schema its loader converts row by row
        td_table = pa.table({"features": pa.array(list(x[: min(rows, 50_000)]), pa.list_(pa.float32())),
                             "label": pa.array(y[: min(rows, 50_000)])})
        with pa.ipc.new_stream(path, td_table.schema) as writer:
            writer.write_table(td_table, max_chunksize=10_000)
        schema = StructType([StructField("features", ArrayType(FloatType())), StructField("label", LongType())])
        n_td = td_table.num_rows
        loader = torch.utils.data.DataLoader(_SparkPartitionTorchDataset(path, schema, n_td), batch_size=BATCH)
        figures["torchdistributor_loader_rows_per_s"] = _rows_per_s(loader, n_td)

        spark.conf.set("petastorm.spark.converter.parentCacheDirUrl", f"file://{tmp}")
        df = spark.read.parquet(_write_parquet(table, tmp))
        conv = make_spark_converter(df)
        # the loader streams: every pass decodes the Parquet again through a 10,000-row shuffling buffer
        with conv.make_torch_dataloader(batch_size=BATCH, num_epochs=1, shuffling_queue_capacity=10_000) as dl:
            figures["converter_rows_per_s"] = statistics.median(_rows_per_s(iter(dl), rows) for _ in range(repeats))
        # inmemory_cache_all: the first epoch streams and keeps the rows, later ones are permutations in memory
        with conv.make_torch_dataloader(batch_size=BATCH, num_epochs=1 + repeats, shuffling_queue_capacity=10_000,
                                        inmemory_cache_all=True) as dl:
            it, n = iter(dl), dl.batches_per_epoch
            passes = [_rows_per_s(itertools.islice(it, n), rows) for _ in range(1 + repeats)]
        figures["converter_cached_rows_per_s"] = statistics.median(passes[1:])
        conv.delete()
        spark.conf.unset("petastorm.spark.converter.parentCacheDirUrl")
    figures["feed_vs_numpy"] = figures["feed_rows_per_s"] / figures["numpy_copy_rows_per_s"]
    figures["feed_vs_torchdistributor"] = figures["feed_rows_per_s"] / figures["torchdistributor_loader_rows_per_s"]
    figures["feed_vs_petastorm_29k"] = figures["feed_rows_per_s"] / 29_000  # petastorm's best figure (issue 10)
    figures["converter_vs_numpy"] = figures["converter_rows_per_s"] / figures["numpy_copy_rows_per_s"]
    figures["converter_cached_vs_numpy"] = figures["converter_cached_rows_per_s"] / figures["numpy_copy_rows_per_s"]
    return figures


def _write_parquet(table, tmp: str) -> str:
    import pyarrow.parquet as pq

    path = os.path.join(tmp, "src.parquet")
    pq.write_table(table, path)
    return path


# --- calibration and DDP scaling ----------------------------------------------------------------------------------
def _burn(seconds_box, steps: int = 30) -> None:
    import torch

    torch.set_num_threads(1)
    a = torch.randn(256, 256)
    t0 = time.perf_counter()
    for _ in range(steps * 20):
        a = torch.tanh(a @ a * 1e-2)
    seconds_box.put(time.perf_counter() - t0)


def calibrate(steps: int = 30) -> dict:
    """Speed of two CPU-bound processes in parallel relative to one alone (2.0 = perfect, 1.0 = none)."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_burn, args=(q, steps))
    p.start()
    one = q.get()
    p.join()
    procs = [ctx.Process(target=_burn, args=(q, steps)) for _ in range(2)]
    for p in procs:
        p.start()
    two = [q.get(), q.get()]
    for p in procs:
        p.join()
    return {"one_seconds": one, "two_seconds": max(two), "parallel_speedup": 2 * one / max(two)}


def _ddp_steps(steps: int):
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from sparkml_dist.deep.models import LeNet5

    torch.manual_seed(0)
    model = DDP(LeNet5(28))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(64, 1, 28, 28)
    y = torch.randint(0, 10, (64,))
    for i in range(steps + 3):
        if i == 3:  # after warm-up
            dist.barrier()
            t0 = time.perf_counter()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return steps * 64 / (time.perf_counter() - t0)


def bench_ddp(spark, steps: int) -> dict:
    from sparkml_dist.deep import run

    one = sum(run(_ddp_steps, steps, numWorkers=1))
    two = sum(run(_ddp_steps, steps, numWorkers=2))
    return {"samples_per_s_1": one, "samples_per_s_2": two, "speedup": two / one}


# --- estimator vs plain torch -------------------------------------------------------------------------------------
def bench_estimator(spark, epochs: int) -> dict:
    import torch
    from pyspark.ml.linalg import Vectors
    from sklearn.datasets import load_digits

    from sparkml_dist.deep import TorchEstimator
    from sparkml_dist.deep.models import LeNet5

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    rows = [(Vectors.dense(a.tolist()), int(b)) for a, b in zip(X, y, strict=True)]
    df = spark.createDataFrame(rows, ["features", "label"])
    df.cache().count()
    t0 = time.perf_counter()
    TorchEstimator(model=lambda: LeNet5(8), lr=3e-3, batchSize=64, epochs=epochs, numWorkers=2, seed=0).fit(df)
    ours = time.perf_counter() - t0

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    torch.manual_seed(0)
    model = LeNet5(8)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    for _ in range(epochs):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt) - 63, 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    plain = time.perf_counter() - t0
    df.unpersist()
    return {"estimator_seconds": ours, "plain_torch_seconds": plain, "ratio": ours / plain}


def run_suite(spark, repeats: int = 3, rows: int = 100_000, ddp_steps: int = 30, epochs: int = 30) -> dict:
    """Every figure of this module (see the module docstring)."""
    out = {"calibration": calibrate()}
    logger.info("calibration %s", out["calibration"])
    out["launch"] = bench_launch(spark, repeats)
    logger.info("launch %s", out["launch"])
    out["feed"] = bench_feed(spark, rows, repeats)
    logger.info("feed %s", out["feed"])
    out["ddp"] = bench_ddp(spark, ddp_steps)
    out["ddp"]["vs_calibration"] = out["ddp"]["speedup"] / out["calibration"]["parallel_speedup"]
    logger.info("ddp %s", out["ddp"])
    out["estimator"] = bench_estimator(spark, epochs)
    logger.info("estimator %s", out["estimator"])
    out["load_average"] = os.getloadavg()
    return out


def main(argv=None) -> None:
    from sparkml_dist.runtime import get_spark, setup_logging

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--ddp-steps", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    setup_logging("INFO")
    spark = get_spark("local", master="local[2]", app_name="sparkml-dist-bench-deep")
    figures = run_suite(spark, args.repeats, args.rows, args.ddp_steps, args.epochs)
    text = json.dumps(figures, indent=2)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)
    logger.info("%s", text)
    spark.stop()


# -------------------------------------------------------------------------------------------------------------------
# Cases of `sparkml-dist bench` (the one registry); the functions above measure, these only shape the records
# -------------------------------------------------------------------------------------------------------------------
from sparkml_dist.bench.registry import CaseContext, bench_case  # noqa: E402


@bench_case("deep", "launch", variants=("run",), dataset="trivial 2-rank job", quality="seconds", min_slots=2,
            higher_is_better=False, sizes={"quick": {"repeats": 1}, "standard": {"repeats": 3}, "full": {"repeats": 3}})
def launch_case(ctx: CaseContext) -> dict:
    """``sparkml_dist.deep.run`` against ``TorchDistributor(local_mode=False)``, the same trivial 2-rank function."""
    figures = bench_launch(ctx.spark, ctx.size["repeats"])
    return {"seconds": figures["run_seconds"], "metrics": {"seconds": figures["run_seconds"]},
            "baselines": {"torchdistributor": {"seconds": figures["torchdistributor_seconds"]}}}


@bench_case("deep", "feed", variants=("streamed",), dataset="784 float32 + label", quality="rows_per_s",
            sizes={"quick": {"rows": 20_000, "repeats": 1}, "standard": {"rows": 100_000, "repeats": 3},
                   "full": {"rows": 200_000, "repeats": 3}})
def feed_case(ctx: CaseContext) -> dict:
    """Shuffled batches of 256: our feed and converter beside a numpy copy and TorchDistributor's loader."""
    f = bench_feed(ctx.spark, ctx.size["rows"], ctx.size["repeats"])
    rows = f["rows"]

    def as_baseline(rate: float) -> dict:
        return {"seconds": rows / rate, "rows_per_s": rate}

    return {"seconds": rows / f["feed_rows_per_s"],
            "metrics": {"rows_per_s": f["feed_rows_per_s"], "converter_rows_per_s": f["converter_rows_per_s"],
                        "converter_cached_rows_per_s": f["converter_cached_rows_per_s"]},
            "baselines": {"numpy_copy": as_baseline(f["numpy_copy_rows_per_s"]),
                          "torchdistributor_loader": as_baseline(f["torchdistributor_loader_rows_per_s"])}}


@bench_case("deep", "estimator", variants=("ddp",), dataset="digits (LeNet-5)", quality="seconds", min_slots=2,
            higher_is_better=False, sizes={"quick": {"epochs": 2}, "standard": {"epochs": 30}, "full": {"epochs": 30}})
def estimator_case(ctx: CaseContext) -> dict:
    """``TorchEstimator`` (2 ranks, DDP) on digits end to end against the same training in one plain torch process."""
    f = bench_estimator(ctx.spark, ctx.size["epochs"])
    return {"seconds": f["estimator_seconds"], "metrics": {"seconds": f["estimator_seconds"]},
            "baselines": {"plain_torch": {"seconds": f["plain_torch_seconds"]}}}

if __name__ == "__main__":
    main()
