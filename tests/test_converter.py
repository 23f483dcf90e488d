"""petastorm-compatible make_spark_converter on Parquet + pyarrow.dataset."""

import os

import numpy as np
import pytest

from sparkml_dist.data.converter import READ_ROWS, SparkDatasetConverter, make_spark_converter


@pytest.fixture
def cache_conf(spark, tmp_path):
    spark.conf.set(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF, f"file://{tmp_path}")
    yield tmp_path
    spark.conf.unset(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF)


def _frame(spark, rows=500, parts=3):
    from pyspark.ml.functions import array_to_vector

    return spark.range(0, rows, 1, parts).selectExpr(
        "id", "cast(id * 0.5 as double) x", "array(cast(id as double), cast(-id as double)) a") \
        .withColumn("v", array_to_vector("a"))


def test_converter_yields_exactly_the_rows_as_float32(spark, cache_conf):
    df = _frame(spark)
    conv = make_spark_converter(df)
    assert len(conv) == 500 and conv.cache_dir_url.startswith(f"file://{cache_conf}")
    with conv.make_torch_dataloader(batch_size=64, num_epochs=1) as loader:
        batches = list(loader)
    assert set(batches[0]) == {"id", "x", "a", "v"}
    assert batches[0]["x"].dtype.is_floating_point and str(batches[0]["x"].dtype) == "torch.float32"
    assert tuple(batches[0]["v"].shape) == (64, 2)
    ids = np.concatenate([b["id"].numpy() for b in batches])
    x = np.concatenate([b["x"].numpy() for b in batches])
    v = np.concatenate([b["v"].numpy() for b in batches])
    # checksum against the DataFrame itself
    expected = df.selectExpr("sum(id) s", "sum(x) sx").first()
    assert len(ids) == 500 and ids.sum() == expected["s"] and np.sort(ids).tolist() == list(range(500))
    assert x.sum() == pytest.approx(expected["sx"])
    np.testing.assert_array_equal(v[:, 0], ids) and np.testing.assert_array_equal(v[:, 1], -ids)
    conv.delete()


def test_shards_get_equal_batches_on_skewed_files(spark, cache_conf):
    # two Parquet files of 10 and 2,000 rows (petastorm would hand one shard a single row group)
    from test_feed import _skewed

    df = _skewed(spark).selectExpr("id", "cast(id as float) x")
    conv = make_spark_converter(df, parquet_row_group_size_bytes=4096)
    counts, seen = [], []
    for shard in range(2):
        with conv.make_torch_dataloader(batch_size=100, num_epochs=1, cur_shard=shard, shard_count=2,
                                        shuffling_queue_capacity=1000, seed=0) as loader:
            ids = [b["id"].numpy() for b in loader]
        counts.append([len(b) for b in ids])
        seen.append(np.concatenate(ids))
    assert counts[0] == counts[1] and sum(counts[0]) == 1005
    assert len(np.intersect1d(seen[0], seen[1])) == 0  # disjoint shards, together every row
    assert sorted(np.concatenate(seen).tolist()) == list(range(2010))
    conv.delete()


def test_num_epochs_none_repeats_and_shuffle_changes_per_epoch(spark, cache_conf):
    conv = make_spark_converter(_frame(spark, rows=100, parts=2))
    with conv.make_torch_dataloader(batch_size=50, num_epochs=None, shuffling_queue_capacity=100, seed=1) as loader:
        it = iter(loader)
        epochs = [np.concatenate([next(it)["id"].numpy() for _ in range(2)]) for _ in range(3)]
    for e in epochs:
        assert sorted(e.tolist()) == list(range(100))
    assert not np.array_equal(epochs[0], epochs[1])
    conv.delete()


def test_same_plan_reuses_the_cache_without_a_spark_job(spark, cache_conf):
    sc = spark.sparkContext
    conv = make_spark_converter(_frame(spark, rows=200))
    sc.setJobGroup("converter-reuse", "second converter")
    try:
        again = make_spark_converter(_frame(spark, rows=200))  # a new DataFrame object with the same plan
        assert len(again) == 200
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
    assert again is conv
    assert list(sc.statusTracker().getJobIdsForGroup("converter-reuse")) == []
    other = make_spark_converter(_frame(spark, rows=201))
    assert other is not conv
    path = conv.cache_dir_url[len("file://"):]
    assert os.path.isdir(path)
    conv.delete()
    other.delete()
    assert not os.path.exists(path)
    assert make_spark_converter(_frame(spark, rows=200)) is not conv  # deleted: written afresh


def test_missing_cache_dir_conf_is_a_clear_error(spark):
    with pytest.raises(ValueError, match="petastorm.spark.converter.parentCacheDirUrl"):
        make_spark_converter(spark.range(3))


def _peak_bytes(fn):
    """Peak memory of ``fn()``: numpy/Python allocations (tracemalloc) plus Arrow's (a proxy pool counting from 0)."""
    import tracemalloc

    import pyarrow as pa

    previous = pa.default_memory_pool()
    pool = pa.proxy_memory_pool(previous)
    pa.set_memory_pool(pool)
    tracemalloc.start()
    try:
        result = fn()
        python_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        pa.set_memory_pool(previous)
    return result, python_peak + pool.max_memory()


def test_loader_streams_with_memory_bounded_by_the_shuffling_buffer(spark, cache_conf):
    rows, width, capacity, batch = 60_000, 32, 2_000, 100
    df = spark.range(0, rows, 1, 2).selectExpr("id", f"array_repeat(cast(id as float), {width}) x")
    conv = make_spark_converter(df, parquet_row_group_size_bytes=256 * 1024)
    dataset_bytes = rows * (width * 4 + 8)  # 7.9 MB
    buffer_bytes = capacity * (width * 4 + 8)  # 0.27 MB

    def one_pass(**kw):
        def go():
            ids, sums, sizes = [], 0.0, []
            with conv.make_torch_dataloader(batch_size=batch, num_epochs=2, workers_count=2, **kw) as loader:
                for b in loader:
                    ids.append(b["id"].numpy().copy())
                    sums += float(b["x"][:, -1].double().sum())
                    sizes.append(len(b["id"]))
            return np.concatenate(ids), sums, sizes
        return _peak_bytes(go)

    (ids, sums, sizes), peak = one_pass(shuffling_queue_capacity=capacity, seed=3)
    # exact rows in each of the two epochs, full batches, and shuffled across row groups
    for epoch in (ids[:rows], ids[rows:]):
        assert np.sort(epoch).tolist() == list(range(rows))
    assert sizes == [batch] * (2 * rows // batch) and sums == pytest.approx(2 * rows * (rows - 1) / 2)
    assert not np.array_equal(ids[:rows], ids[rows:]) and abs(np.corrcoef(ids[:rows], np.arange(rows))[0, 1]) < 0.9
    # the ids collected by the test itself are 2 x 8 B x rows = 0.96 MB; the loader's share is bounded by the buffer
    # and workers_count + 1 record batches (READ_ROWS rows each, 0.56 MB), not by the 7.9 MB dataset
    read_ahead = (2 + 2) * READ_ROWS * (width * 4 + 8)
    assert peak < 2 * rows * 8 + 2 * buffer_bytes + read_ahead, (peak, dataset_bytes)
    assert peak < dataset_bytes / 2
    (ordered, _, _), peak_ordered = one_pass()
    np.testing.assert_array_equal(ordered[:rows], np.arange(rows))  # capacity 0: row order
    assert peak_ordered < dataset_bytes / 2
    conv.delete()


@pytest.mark.parametrize("capacity", [0, 300])
def test_inmemory_cache_all_serves_later_epochs_without_the_files(spark, cache_conf, capacity):
    import shutil

    conv = make_spark_converter(_frame(spark, rows=1000, parts=3), parquet_row_group_size_bytes=4096)
    with conv.make_torch_dataloader(batch_size=128, num_epochs=3, shuffling_queue_capacity=capacity, seed=2,
                                    cur_shard=1, shard_count=2, inmemory_cache_all=True) as loader:
        it = iter(loader)
        epochs = []
        for e in range(3):
            raw = [next(it) for _ in range(loader.batches_per_epoch)]
            epochs.append([{k: t.clone() for k, t in b.items()} for b in raw])
            if e == 0:  # the shard is in memory now: later epochs must not need the Parquet
                shutil.rmtree(conv.cache_dir_url[len("file://"):])
            for b in raw:  # batches changed in place must leave the cache alone
                for t in b.values():
                    t.fill_(-1)
        with pytest.raises(StopIteration):
            next(it)
    ids = [np.concatenate([b["id"].numpy() for b in batches]) for batches in epochs]
    for e, batches in zip(ids, epochs, strict=True):
        assert [len(b["id"]) for b in batches] == [128, 128, 128, 116]  # shard 1 of 1000 rows: 500
        assert sorted(e.tolist()) == list(range(500, 1000))  # exactly the shard's rows each epoch
        x = np.concatenate([b["x"].numpy() for b in batches])
        v = np.concatenate([b["v"].numpy() for b in batches])
        np.testing.assert_array_equal(x, e * 0.5)  # rows stay whole: every column of a row moves together
        np.testing.assert_array_equal(v[:, 1], -e)
    if capacity:
        assert not np.array_equal(ids[1], ids[2]) and not np.array_equal(ids[1], np.sort(ids[1]))
    else:
        assert all(np.array_equal(e, np.arange(500, 1000)) for e in ids)
    # without the cache, a loader over the removed files fails: the epochs above came from memory
    with conv.make_torch_dataloader(batch_size=128, num_epochs=1) as loader, pytest.raises(OSError):
        list(loader)
