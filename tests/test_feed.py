"""The streamed per-partition feed: Arrow -> numpy/tensors, equal batches per rank, seeded shuffles."""

import numpy as np
import pyarrow as pa
import pytest

from sparkml_dist.data.feed import TensorFeed, arrow_arrays, column_to_numpy, equal_steps, feed_frame
from sparkml_dist.data.validation import DataValidationError
from sparkml_dist.deep import get_context, run


def test_column_types_convert_without_python_rows():
    values = np.arange(12, dtype=np.float32)
    fixed = pa.FixedSizeListArray.from_arrays(pa.array(values), 3)
    out = column_to_numpy(fixed)
    assert out.shape == (4, 3) and np.shares_memory(out, np.frombuffer(fixed.values.buffers()[1], np.float32))
    lists = pa.array([[1.0, 2.0], [3.0, 4.0]], pa.list_(pa.float32()))
    np.testing.assert_array_equal(column_to_numpy(lists), [[1, 2], [3, 4]])
    scalar = pa.array(np.arange(5, dtype=np.int64))
    assert column_to_numpy(scalar).dtype == np.int64
    with pytest.raises(DataValidationError, match="different lengths"):
        column_to_numpy(pa.array([[1.0], [2.0, 3.0]]), "x")
    with pytest.raises(DataValidationError, match="null"):
        column_to_numpy(pa.array([1.0, None]), "x")


def test_feed_frame_maps_vectors_and_doubles_and_checks_columns(spark):
    from pyspark.ml.linalg import Vectors

    df = spark.createDataFrame([(Vectors.dense([1.0, 2.0]), 1, 0.5, "a")], ["v", "label", "w", "s"])
    out = feed_frame(df, ["v", "label", "w"])
    assert [f.dataType.simpleString() for f in out.schema.fields] == ["array<float>", "bigint", "float"]
    with pytest.raises(DataValidationError, match="featuresCol='nope': no such column"):
        feed_frame(df, ["nope"], roles={"nope": "featuresCol"})
    with pytest.raises(DataValidationError, match="labelCol='s' has type string"):
        feed_frame(df, ["s"], roles={"s": "labelCol"})


def test_shuffle_is_seeded_per_epoch_and_covers_every_row():
    arrays = {"x": np.arange(100, dtype=np.float32)}
    feed = TensorFeed(arrays, batch_size=10, steps=10, shuffle=True, seed=3, rank=0)
    epoch0 = np.concatenate([b["x"].numpy() for b in feed.batches(0)])
    again = np.concatenate([b["x"].numpy() for b in TensorFeed(arrays, 10, 10, seed=3).batches(0)])
    epoch1 = np.concatenate([b["x"].numpy() for b in feed.batches(1)])
    np.testing.assert_array_equal(epoch0, again)
    assert not np.array_equal(epoch0, epoch1)
    np.testing.assert_array_equal(np.sort(epoch0), arrays["x"])
    # resuming mid-epoch continues the same order
    tail = np.concatenate([b["x"].numpy() for b in feed.batches(1, start_step=4)])
    np.testing.assert_array_equal(tail, epoch1[40:])


def test_equal_steps_on_one_rank():
    assert equal_steps(95, 10, "max") == 10
    assert equal_steps(95, 10, "min") == 9
    with pytest.raises(DataValidationError, match="no rows"):
        equal_steps(0, 10)


def _skewed(spark):
    """Two partitions of 10 and 2,000 rows (``id`` 0..9 and 10..2009)."""
    rdd = spark.sparkContext.parallelize([(int(i >= 10), i) for i in range(2010)], 2).partitionBy(2, lambda k: k)
    df = rdd.toDF("key long, id long").select("id")
    assert df.rdd.glom().map(len).collect() == [10, 2000]
    return df


@pytest.mark.parametrize("equalize", ["max", "min"])
def test_skewed_partitions_give_equal_batches_per_rank(spark, equalize):
    # partition 0 holds 10 rows, partition 1 holds 2,000 (kept as sites: no repartition)
    df = _skewed(spark).selectExpr("cast(id as float) x", "cast(id >= 10 as int) part")
    frame = feed_frame(df, ["x", "part"])

    def fn():
        ctx = get_context()
        feed = ctx.feed(8, shuffle=True, seed=1, equalize=equalize)
        sizes, parts, seen = [], set(), []
        for epoch in range(2):
            for batch in feed.batches(epoch):
                sizes.append(len(batch["x"]))
                parts.update(batch["part"].tolist())
                seen.append(batch["x"].numpy())
        return len(feed), sizes, parts, np.concatenate(seen)

    results = run(fn, numWorkers=2, df=frame, timeout=300)
    (n0, sizes0, parts0, seen0), (n1, sizes1, parts1, seen1) = results
    assert n0 == n1 == (250 if equalize == "max" else 1)
    assert sizes0 == sizes1 and set(sizes0) == {8}
    assert parts0 == {0} and parts1 == {1}  # each rank trains on its own partition only
    if equalize == "max":
        assert set(seen0.tolist()) == set(range(10))  # the small rank wraps around its own rows
        assert set(seen1.tolist()) == set(range(10, 2010))


def test_arrow_arrays_concatenates_batches():
    b1 = pa.record_batch([pa.array([1.0, 2.0], pa.float32())], names=["x"])
    b2 = pa.record_batch([pa.array([3.0], pa.float32())], names=["x"])
    np.testing.assert_array_equal(arrow_arrays([b1, b2])["x"], [1, 2, 3])
