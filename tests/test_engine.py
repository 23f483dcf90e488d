"""The shared engine: layout, whole-partition placement, both engines equal on 6 partitions x 2 slots, state rebuilt
after loss, one error protocol."""

from __future__ import annotations

import logging
import os
import sys

import numpy as np
import pytest
from pyspark import cloudpickle

from sparkml_dist.clustering import ConsensusClustering, FuzzyCMeans, KMeans
from sparkml_dist.data.blocks import Block, to_blocks
from sparkml_dist.data.sources import from_numpy
from sparkml_dist.data.validation import DataValidationError
from sparkml_dist.engine import (
    Layout,
    LocalData,
    MapReduceData,
    RebuildableState,
    StateLostError,
    launch,
    require_state,
    spec_for,
)
from sparkml_dist.runtime.layout import spark_hash_int

ENGINES = ["mapreduce", "bsp"]
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # executors cannot import this test module


# --- layout ------------------------------------------------------------------------------------------------------
def test_layout_plans_balanced_contiguous_groups_and_refuses_bad_ones():
    lay = Layout.plan(6, 2)
    assert (lay.world_size, lay.groups, lay.needs_exchange) == (2, ((0, 1, 2), (3, 4, 5)), True)
    assert Layout.plan(7, 3).groups == ((0, 1, 2), (3, 4), (5, 6))
    assert Layout.plan(2, 8).groups == ((0,), (1,)) and not Layout.plan(2, 8).needs_exchange
    assert [Layout.plan(7, 3).rank_of(p) for p in range(7)] == [0, 0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="needs more than the 2 free task slots"):
        Layout.plan(6, 2, world_size=3)
    with pytest.raises(ValueError, match="3 partitions cannot fill 4 ranks"):
        Layout.plan(3, 8, world_size=4)
    with pytest.raises(ValueError, match="each partition exactly once"):
        Layout(4, 2, 2, ((0, 2), (1, 3)))
    with pytest.raises(ValueError, match="it needs at least 1"):
        Layout.plan(0, 2)
    with pytest.raises(Exception, match=r"received rows of partitions \[3\]"):
        lay.check_received(0, [0, 3])


def test_routing_keys_land_on_their_rank_under_sparks_own_hash(spark):
    """Independent reference: Spark SQL's hash() and the pmod the hash partitioner applies."""
    from pyspark.sql import functions as F

    values = list(range(-5, 40)) + [2**31 - 1, -(2**31)]
    rows = spark.createDataFrame([(v,) for v in values], "v int").select("v", F.hash("v").alias("h")).collect()
    assert {r.v: r.h for r in rows} == {v: spark_hash_int(v) for v in values}
    lay = Layout.plan(11, 4)
    keys = lay.routing_keys()
    assert [spark_hash_int(k) % 4 for k in keys] == [lay.rank_of(p) for p in range(11)]


# --- whole partitions on fewer slots -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def six_parts(spark):
    from sklearn.datasets import make_blobs

    X, y = make_blobs(n_samples=1800, n_features=5, centers=5, cluster_std=2.0, random_state=11)
    w = np.random.default_rng(11).uniform(0.5, 2.0, len(X))
    df = from_numpy(spark, X, y, num_partitions=6, extra={"w": w}).cache()
    df.count()
    return X, w, df


def test_barrier_ranks_host_whole_partitions(spark, six_parts):
    """6 partitions on 2 slots: rank r holds exactly partitions 3r..3r+2, each with its own rows in its own order."""
    from pyspark.sql import functions as F

    from sparkml_dist.runtime.barrier import run_barrier

    _, _, df = six_parts
    ref: dict[int, list[float]] = {}
    for row in df.select(F.spark_partition_id().alias("p"), "label").collect():
        ref.setdefault(row.p, []).append(row.label)

    def fn(ctx):
        return {p: t.column("label").to_pylist() for p, t in ctx.partition_tables().items()}, ctx.partitions

    results = run_barrier(fn, spark=spark, df=df.select("label"))
    assert results.layout.groups == ((0, 1, 2), (3, 4, 5))
    assert [r[1] for r in results] == [(0, 1, 2), (3, 4, 5)]
    got = {p: labels for tables, _ in results for p, labels in tables.items()}
    assert got == ref


def _kmeans_pair(df, **params):
    return [KMeans(engine=e, **params).fit(df) for e in ENGINES]


def test_kmeans_parallel_same_model_on_both_engines_six_partitions(six_parts):
    X, _, df = six_parts
    mr, bsp = _kmeans_pair(df, k=5, seed=3, maxIter=10, weightCol="w")
    np.testing.assert_allclose(mr.centers, bsp.centers, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(mr.summary.costHistory, bsp.summary.costHistory, rtol=1e-10)
    assert mr.summary.numIter == bsp.summary.numIter
    # and the model is the one k-means|| should find here (5 well-separated blobs)
    from sklearn.cluster import KMeans as SkKMeans

    best = SkKMeans(5, n_init=10, random_state=0).fit(X, sample_weight=six_parts[1]).inertia_
    assert mr.summary.inertia <= 1.02 * best


def test_fuzzy_sweep_same_on_both_engines_six_partitions(six_parts):
    _, _, df = six_parts
    fits = [FuzzyCMeans(kRange=[3, 5], seed=2, maxIter=12, weightCol="w", engine=e).fit(df) for e in ENGINES]
    np.testing.assert_allclose(fits[0].centers, fits[1].centers, rtol=1e-9, atol=1e-9)
    assert fits[0].xieBeniCurve().keys() == fits[1].xieBeniCurve().keys()
    np.testing.assert_allclose(list(fits[0].xieBeniCurve().values()), list(fits[1].xieBeniCurve().values()),
                               rtol=1e-9)


def test_consensus_sites_stay_sites_on_both_engines(spark):
    """Six sites, each holding 2 of 6 clusters; on 2 slots the BSP ranks host 3 sites each, and every site's local
    prototypes must be those of an FCM run on exactly that site's rows (a mixed site would find other clusters)."""
    from pyspark.sql import functions as F

    from sparkml_dist.clustering.consensus import _site_fit
    from sparkml_dist.clustering.dfcm import FuzzyConfig

    rng = np.random.default_rng(5)
    centers = rng.uniform(-20, 20, (6, 3))
    site = np.repeat(np.arange(6), 120)
    label = np.where(rng.random(len(site)) < 0.5, site, (site + 1) % 6)
    X = centers[label] + rng.normal(0, 0.6, (len(site), 3))
    df = from_numpy(spark, X, label, extra={"site": site}).repartitionByRange(6, "site").cache()
    rows = df.select(F.spark_partition_id().alias("p"), "site", "features").collect()
    assert sorted({(r.p, r.site) for r in rows}) == [(i, i) for i in range(6)]
    site_rows = {p: np.array([r.features.toArray() for r in rows if r.p == p]) for p in range(6)}
    fits = [ConsensusClustering(kRange=[2, 8], localKRange=[2, 4], seed=3, engine=e).fit(df) for e in ENGINES]
    cfg = FuzzyConfig(ks=[2], m=2.0, max_iter=100, tol=1e-4, init_mode="k-means||", init_steps=2,
                      seed=fits[0].getSeed())
    for p in range(6):  # the independent per-site reference: the same site FCM on that site's rows only
        expected = _site_fit(Block(site_rows[p], None, None, p), [2, 3, 4], cfg).centers
        for fit in fits:
            np.testing.assert_allclose(fit.localCenters()[p], expected, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(fits[0].centers, fits[1].centers, rtol=1e-8, atol=1e-8)


# --- state that survives executor loss -----------------------------------------------------------------------------
def _init(block):
    return np.zeros(block.n_rows)


def _update(block, value, record):
    value += record * np.asarray(block.X)[:, 0]
    return value


def _total(block, state):
    return float(state.get(block).sum())


def _lose_state(block):
    """What an executor loss does to the state files beside a block."""
    for name in os.listdir(block.path):
        if name.startswith("state_"):
            os.remove(os.path.join(block.path, name))
    return block.partition


def test_rebuildable_state_is_replayed_after_loss(spark, caplog):
    X = np.arange(40, dtype=float).reshape(20, 2)
    df = from_numpy(spark, X, num_partitions=2)
    state = RebuildableState("t_state", _init, _update)
    with to_blocks(df, "features", labelKind=None) as blocks:
        data = MapReduceData(blocks)
        totals = []
        for r in (1.0, 2.0, 0.5, 3.0):
            state = state.then(r)
            totals.append(data.sum(_total, state))
        blocks.map(_lose_state)
        again = data.sum(_total, state)
    assert totals[-1] == again == pytest.approx(X[:, 0].sum() * 6.5)
    # in memory: versions are written once, the one before is kept for a retried task, older ones dropped
    block = Block(X, partition=0)
    for v in range(1, 5):
        RebuildableState("m", _init, _update, state.records[:v]).get(block)
    assert sorted(block._state) == ["m@3", "m@4"]
    block._state.clear()
    with caplog.at_level(logging.WARNING, logger="sparkml_dist.engine.state"):
        np.testing.assert_allclose(RebuildableState("m", _init, _update, state.records).get(block), X[:, 0] * 6.5)
    assert "rebuilt from its rows and 4 driver records" in caplog.text
    # without a recipe: a clear error naming the partition
    block = Block(np.zeros((3, 1)), partition=4)
    with pytest.raises(StateLostError, match="state 'w' of partition 4 is gone"):
        require_state(block, "w")


class _ForgetfulData(MapReduceData):
    """MapReduce data that loses every partition's state files after each pass (an executor loss per pass)."""

    def sum(self, fn, *args):
        out = super().sum(fn, *args)
        self.blocks.map(_lose_state)
        return out

    def gather(self, fn, *args):
        out = super().gather(fn, *args)
        self.blocks.map(_lose_state)
        return out


# k-means++ runs one pass per centre: the same lost-state path as k-means|| (default suite), more passes (`-m slow`)
@pytest.mark.parametrize("init_mode", ["k-means||", pytest.param("k-means++", marks=pytest.mark.slow)])
def test_seeding_is_unbiased_when_state_is_lost_every_pass(spark, six_parts, init_mode):
    from sparkml_dist.clustering.initialization import initial_centers

    _, _, df = six_parts
    with to_blocks(df, "features", weightCol="w", labelKind=None) as blocks:
        steady = initial_centers(MapReduceData(blocks), 5, init_mode, 2, 9, False)
        lossy = initial_centers(_ForgetfulData(blocks), 5, init_mode, 2, 9, False)
    np.testing.assert_array_equal(steady, lossy)


# --- the data interface beyond sum/gather ------------------------------------------------------------------------
def _col_max(block):
    return np.asarray(block.X).max(axis=0) if block.n_rows else np.full(block.n_features, -np.inf)


def _rows(block):
    return [float(v) for v in np.asarray(block.X)[:, 0]]


def _merge_sorted(a, b):
    return sorted(a + b)


def _root_draw(seed):
    return float(np.random.default_rng(seed).random())


def _interface_body(data):
    return (data.reduce(_col_max, op="max"), data.merge_tree(_rows, _merge_sorted), data.on_root(_root_draw, 4),
            data.reduce(_rows, op=lambda a, b: a + b), data.num_partitions)


@pytest.mark.parametrize("engine", ENGINES)
def test_reduce_merge_tree_and_on_root(six_parts, engine):
    X, _, df = six_parts
    run = launch(engine, df, spec_for("features"), _interface_body)
    col_max, merged, draw, concatenated, parts = run.result
    np.testing.assert_array_equal(col_max, X.max(axis=0))
    assert merged == sorted(X[:, 0].tolist())
    assert draw == _root_draw(4)
    assert sorted(concatenated) == sorted(X[:, 0].tolist()) and parts == 6
    assert run.load_seconds > 0 and run.bytes_communicated > 0
    assert (run.layout is not None) == (engine == "bsp")
    local = _interface_body(LocalData(X))
    np.testing.assert_array_equal(local[0], col_max)
    assert sorted(local[1]) == merged  # one leaf: nothing to merge


# --- one error protocol ------------------------------------------------------------------------------------------
def _validation_fails(data, marker):
    with open(os.path.join(marker, f"{os.getpid()}-{np.random.default_rng().integers(1 << 40)}"), "w"):
        pass
    raise DataValidationError("featuresCol='features': made-up problem found by the body")


def test_input_errors_cross_the_barrier_as_themselves_without_a_retry(six_parts, tmp_path):
    _, _, df = six_parts
    with pytest.raises(DataValidationError, match="made-up problem found by the body") as info:
        launch("bsp", df, spec_for("features"), _validation_fails, (str(tmp_path),))
    assert any("raised on barrier rank" in note for note in getattr(info.value, "__notes__", []))
    assert len(os.listdir(tmp_path)) == 2  # one stage attempt (2 ranks), although retries are on


def test_bsp_input_validation_names_the_column_on_six_partitions(spark):
    X = np.ones((60, 2))
    X[7, 1] = np.inf
    df = from_numpy(spark, X, num_partitions=6)
    with pytest.raises(DataValidationError, match=r"featuresCol='features' has 1 NaN or infinite values"):
        launch("bsp", df, spec_for("features"), _interface_body)
