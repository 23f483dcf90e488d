"""DataFrame -> resident numpy blocks: conversion, validation, residency (no re-shipping), per-partition state."""

import os

import numpy as np
import pytest
from pyspark.ml.linalg import Vectors, VectorUDT
from pyspark.sql.types import DoubleType, StructField, StructType

from sparkml_dist.data import DataValidationError, to_blocks, validate_dataframe
from sparkml_dist.data.sources import from_numpy

SCHEMA = StructType([StructField("features", VectorUDT()), StructField("label", DoubleType())])


def _gather(blocks):
    parts = sorted(blocks.map(lambda b: (b.partition, np.asarray(b.X.toarray() if hasattr(b.X, "toarray") else b.X),
                                         None if b.y is None else np.asarray(b.y),
                                         None if b.w is None else np.asarray(b.w))), key=lambda p: p[0])
    X = np.vstack([p[1] for p in parts if p[1].size])
    y = np.concatenate([p[2] for p in parts]) if parts[0][2] is not None else None
    w = np.concatenate([p[3] for p in parts]) if parts[0][3] is not None else None
    return X, y, w


def test_dense_vectors_match_topandas(spark):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1000, 7))
    y = rng.integers(0, 3, 1000).astype(float)
    df = from_numpy(spark, X, y, num_partitions=3, extra={"w": rng.uniform(0.5, 2, 1000)})
    ref = df.toPandas()
    with to_blocks(df, "features", "label", "w") as blocks:
        assert (blocks.num_rows, blocks.n_features, blocks.num_partitions, blocks.num_classes) == (1000, 7, 3, 3)
        Xb, yb, wb = _gather(blocks)
    np.testing.assert_array_equal(Xb, np.stack(ref["features"].map(lambda v: v.toArray())))
    np.testing.assert_array_equal(yb, ref["label"].to_numpy())
    np.testing.assert_array_equal(wb, ref["w"].to_numpy())


def test_sparse_and_mixed_vectors(spark):
    rows = [(Vectors.sparse(5, [0, 3], [1.5, -2.0]), 0.0), (Vectors.dense([1, 2, 3, 4, 5]), 1.0),
            (Vectors.sparse(5, [], []), 1.0), (Vectors.sparse(5, [4], [9.0]), 0.0)]
    df = spark.createDataFrame(rows, ["features", "label"]).coalesce(1)
    expected = np.array([r[0].toArray() for r in rows])
    with to_blocks(df, "features", "label") as blocks:
        X, y, _ = _gather(blocks)
        np.testing.assert_array_equal(X, expected)
    with to_blocks(df, "features", "label", sparse=True) as blocks:
        kinds = blocks.map(lambda b: type(b.X).__name__)
        assert kinds == ["csr_matrix"]
        X, _, _ = _gather(blocks)
        np.testing.assert_array_equal(X, expected)


def test_array_columns_and_float32(spark):
    df = spark.createDataFrame([([1.0, 2.0], 0), ([3.0, 4.0], 1)], "f array<double>, label int")
    with to_blocks(df, "f", "label", dtype=np.float32) as blocks:
        dtypes = blocks.map(lambda b: str(b.X.dtype))
        X, y, _ = _gather(blocks)
    assert set(dtypes) == {"float32"}
    np.testing.assert_array_equal(X, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(y, [0, 1])


def test_resident_blocks_are_not_reshipped(spark, tmp_path):
    """The source is computed once; every later pass reads the executors' resident blocks."""
    marker = str(tmp_path)

    def source(batches):
        import uuid

        for b in batches:
            open(os.path.join(marker, uuid.uuid4().hex), "w").close()
            yield b

    base = spark.range(0, 20_000, 1, 4).selectExpr("array(cast(id as double), cast(id % 7 as double)) as f")
    df = base.mapInArrow(source, base.schema)
    with to_blocks(df, "f", labelKind=None) as blocks:
        passes = [blocks.aggregate(lambda b: (b.n_rows, np.asarray(b.X).sum(axis=0))) for _ in range(3)]
    assert len(os.listdir(marker)) == 4  # one evaluation of each source partition, not one per pass
    for rows, sums in passes:
        assert rows == 20_000
        np.testing.assert_allclose(sums, [sum(range(20_000)), sum(i % 7 for i in range(20_000))])


def test_per_partition_state_survives_between_jobs(spark):
    df = from_numpy(spark, np.ones((100, 2)), np.zeros(100), num_partitions=2)
    with to_blocks(df, "features", "label", labelKind=None) as blocks:
        blocks.map(lambda b: b.save_state("w", np.full(b.n_rows, 0.5)))
        blocks.map(lambda b: b.save_state("w", b.load_state("w") * 4))
        total = blocks.aggregate(lambda b: float(b.load_state("w").sum()))
        # the token cache lost (evicted, or its executor gone): Spark recomputes the blocks; the state stays
        blocks._rdd.unpersist(blocking=True)
        again = blocks.aggregate(lambda b: float(b.load_state("w").sum()))
    assert total == again == pytest.approx(200.0)


def test_blocks_are_deleted_on_exit(spark):
    df = from_numpy(spark, np.ones((10, 2)), num_partitions=2)
    with to_blocks(df, "features", labelKind=None) as blocks:
        paths = [t[2] for t in blocks.tokens]
        assert all(os.path.isdir(p) for p in paths)
    assert not any(os.path.exists(p) for p in paths)


@pytest.mark.parametrize("case, match", [
    ("missing", r"labelCol='nope': no such column \(the DataFrame has: features, label\)"),
    ("wrong_type", r"featuresCol='label' has type double; expected a Vector or array<double>"),
    ("empty", "the DataFrame is empty"),
    ("nan", r"featuresCol='features' has 2 NaN or infinite values"),
    ("nonint", r"labelCol='label' must hold class indices 0..K-1: 1 non-integer and 1 negative"),
    ("gap", r"classes \[1\] have no rows"),
    ("null_label", r"labelCol='label' has 1 null, NaN or infinite values"),
])
def test_bad_input_is_named(spark, case, match):
    good = [(Vectors.dense([1.0, 2.0]), 0.0), (Vectors.dense([3.0, 4.0]), 1.0)]
    data = {
        "missing": (good, "features", "nope"),
        "wrong_type": (good, "label", "label"),
        "empty": ([], "features", "label"),
        "nan": ([(Vectors.dense([np.nan, np.inf]), 0.0)] + good, "features", "label"),
        "nonint": ([(Vectors.dense([1.0, 2.0]), 0.5), (Vectors.dense([1.0, 2.0]), -1.0)] + good, "features", "label"),
        "gap": ([(Vectors.dense([1.0, 2.0]), 0.0), (Vectors.dense([1.0, 2.0]), 2.0)], "features", "label"),
        "null_label": ([(Vectors.dense([1.0, 2.0]), None)] + good, "features", "label"),
    }[case]
    df = spark.createDataFrame(data[0], SCHEMA)
    with pytest.raises(DataValidationError, match=match):
        to_blocks(df, data[1], data[2])
    with pytest.raises(DataValidationError, match=match):
        validate_dataframe(df, data[1], data[2])


def test_negative_weights_and_width_mismatch(spark):
    df = spark.createDataFrame([(Vectors.dense([1.0]), 0.0, -1.0), (Vectors.dense([2.0]), 1.0, 1.0)],
                               SCHEMA.add("w", DoubleType()))
    with pytest.raises(DataValidationError, match=r"weightCol='w' has 1 negative weights"):
        to_blocks(df, "features", "label", "w")
    ragged = spark.createDataFrame([([1.0], 0), ([1.0, 2.0], 1)], "f array<double>, label int").coalesce(1)
    with pytest.raises(Exception, match="feature arrays of different lengths"):
        to_blocks(ragged, "f", "label")


def test_from_numpy_keeps_nan_for_validation_to_count(spark):
    X = np.ones((50, 3))
    X[[3, 7], 1] = np.nan
    X[9, 2] = np.inf
    df = from_numpy(spark, X, np.zeros(50), num_partitions=2)
    with pytest.raises(DataValidationError, match=r"featuresCol='features' has 3 NaN or infinite values"):
        to_blocks(df, "features", "label")


def test_blocks_live_in_the_executors_block_manager_dirs(spark):
    """Spark deletes its block-manager dirs with the executor and the application: the blocks go with them."""
    df = from_numpy(spark, np.ones((10, 2)), num_partitions=2)
    with to_blocks(df, "features", labelKind=None) as blocks:
        roots = blocks.map(lambda b: os.environ.get("SPARK_LOCAL_DIRS", "").split(",")[0])
        for (_, _, path, *_), root in zip(blocks.tokens, roots, strict=False):
            assert root and os.path.commonpath([path, root]) == root and "blockmgr-" in root


def test_a_task_away_from_its_block_rebuilds_it_from_lineage(spark):
    """A lost block directory (a task scheduled on an executor without the files) no longer ends in
    FileNotFoundError: the driver re-materialises the blocks from lineage and re-runs the pass."""
    import shutil

    X = np.arange(200, dtype=float).reshape(100, 2)
    df = from_numpy(spark, X, num_partitions=2)
    with to_blocks(df, "features", labelKind=None) as blocks:
        before = blocks.aggregate(lambda b: np.asarray(b.X).sum(axis=0))
        lost = blocks.tokens[1][2]
        shutil.rmtree(lost)  # as if partition 1's task now ran where its files are not
        after = blocks.aggregate(lambda b: np.asarray(b.X).sum(axis=0))
        assert blocks.tokens[1][2] != lost and os.path.isdir(blocks.tokens[1][2])
    np.testing.assert_array_equal(before, X.sum(axis=0))
    np.testing.assert_array_equal(after, before)


def test_unpersist_removes_files_and_memory_maps(spark):
    from sparkml_dist.data import blocks as blocks_mod

    df = from_numpy(spark, np.ones((10, 2)), num_partitions=2)
    blocks = to_blocks(df, "features", labelKind=None)
    set_id = blocks.set_id
    blocks.map(lambda b: b.save_state("w", np.ones(b.n_rows)))
    open_before = blocks.map(lambda b: sum(set_id in p for p in blocks_mod._OPEN))
    blocks.unpersist()
    blocks.unpersist()  # idempotent
    assert all(n >= 1 for n in open_before)
    assert not any(os.path.exists(t[2]) for t in blocks.tokens)
    # the Python workers that mapped them dropped their maps (next use of a cache purges deleted paths)
    left = spark.sparkContext.parallelize(range(4), 2).map(
        lambda _: (blocks_mod._release_open(), sum(set_id in p for p in blocks_mod._OPEN))[1]).collect()
    assert left == [0, 0, 0, 0]
