"""Bad Params and bad schemas fail before any Spark job; bad values fail in the one validating pass, before training.

Jobs are counted by bracketing the call between two probe jobs: Spark numbers jobs sequentially per context, so the
gap between the probes' ids counts every job in between, whatever its job group -- barrier stages included (they run
in a job group of their own, which a count by the caller's group would miss).
"""

from __future__ import annotations

import uuid

import pytest

from sparkml_dist.classification import AdaBoostClassifier, CascadeSVC
from sparkml_dist.clustering import ConsensusClustering, FuzzyCMeans
from sparkml_dist.data.sources import bundled_arrays, from_numpy
from sparkml_dist.data.validation import DataValidationError

ENGINES = ["mapreduce", "bsp"]


def jobs_started(spark, fn) -> int:
    """How many Spark jobs ``fn()`` started (see the module docstring)."""
    sc = spark.sparkContext

    def probe() -> int:
        group = f"probe-{uuid.uuid4().hex}"
        sc.setJobGroup(group, "job counter probe")
        try:
            sc.parallelize([0], 1).count()
        finally:
            sc.setLocalProperty("spark.jobGroup.id", None)
        return max(sc.statusTracker().getJobIdsForGroup(group))

    before = probe()
    fn()
    return probe() - before - 1


def raises(exc, match, fit):
    def run():
        with pytest.raises(exc, match=match):
            fit()
    return run


@pytest.fixture(scope="module")
def iris(spark):
    X, y = bundled_arrays("iris")
    df = from_numpy(spark, X, y, num_partitions=2).cache()
    df.count()
    return X, y, df


def test_the_counter_sees_barrier_jobs(spark):
    from sparkml_dist.runtime.barrier import run_barrier

    assert jobs_started(spark, lambda: run_barrier(lambda ctx: ctx.rank, 2, spark=spark)) >= 1
    assert jobs_started(spark, lambda: None) == 0


@pytest.mark.parametrize("engine", ENGINES)
def test_bad_params_and_schemas_start_no_job(spark, iris, engine):
    _, _, df = iris
    cases = [
        (ValueError, "algorithm='boost' is not supported",
         lambda: AdaBoostClassifier(algorithm="boost", engine=engine)),
        (ValueError, "learningRate=0.0: learningRate must be > 0",
         lambda: AdaBoostClassifier(learningRate=0.0, engine=engine)),
        (ValueError, "maxBins=1", lambda: AdaBoostClassifier(maxBins=1, engine=engine)),
        (DataValidationError, "featuresCol='nope': no such column",
         lambda: AdaBoostClassifier(featuresCol="nope", engine=engine)),
        (DataValidationError, "weightCol='w': no such column",
         lambda: AdaBoostClassifier(weightCol="w", engine=engine)),
        (ValueError, "C=0.0: C must be > 0", lambda: CascadeSVC(C=0.0, engine=engine)),
        (ValueError, "kernel='sigmoid' is not supported", lambda: CascadeSVC(kernel="sigmoid", engine=engine)),
        (ValueError, "engine='spmd' is not supported", lambda: CascadeSVC(engine="spmd")),
        (DataValidationError, "labelCol='y': no such column", lambda: CascadeSVC(labelCol="y", engine=engine)),
        (ValueError, r"m=1.0: the fuzzifier must be > 1", lambda: FuzzyCMeans(m=1.0, engine=engine)),
        (ValueError, r"kRange=\[5, 3\]", lambda: FuzzyCMeans(kRange=[5, 3], engine=engine)),
        (DataValidationError, "featuresCol='x': no such column", lambda: FuzzyCMeans(featuresCol="x", engine=engine)),
        (ValueError, r"localKRange=\[1, 3\]", lambda: ConsensusClustering(localKRange=[1, 3], engine=engine)),
        (DataValidationError, "featuresCol='x': no such column",
         lambda: ConsensusClustering(featuresCol="x", engine=engine)),
    ]
    counts = [jobs_started(spark, raises(exc, match, lambda make=make: make().fit(df))) for exc, match, make in cases]
    assert counts == [0] * len(cases)


@pytest.mark.parametrize("engine", ENGINES)
def test_bad_values_fail_in_the_validating_pass(spark, iris, engine):
    """NaN features, a single class, labels that are not 0..K-1: found by the one pass that loads and validates the
    data (MapReduce: the blocks' pass, their clean-up; BSP: the barrier stage's load, before any training)."""
    from test_adaboost import with_nan  # pytest puts tests/ on sys.path

    X, y, _ = iris
    nan_df = with_nan(spark, X, y).repartition(2)
    one_class = from_numpy(spark, X[:50], y[:50], num_partitions=2)
    shifted = from_numpy(spark, X, y + 1, num_partitions=2)
    cases = [
        (raises(DataValidationError, "1 NaN", lambda: AdaBoostClassifier(engine=engine).fit(nan_df))),
        (raises(DataValidationError, "single class", lambda: AdaBoostClassifier(engine=engine).fit(one_class))),
        (raises(DataValidationError, "0..K-1", lambda: CascadeSVC(engine=engine).fit(shifted))),
        (raises(DataValidationError, "single class", lambda: CascadeSVC(engine=engine).fit(one_class))),
        (raises(DataValidationError, "1 NaN", lambda: FuzzyCMeans(k=3, engine=engine).fit(nan_df))),
        (raises(DataValidationError, "1 NaN", lambda: ConsensusClustering(engine=engine).fit(nan_df))),
    ]
    counts = [jobs_started(spark, case) for case in cases]
    # at most: the input's own shuffle, the validating pass and the blocks' clean-up -- never a training pass
    assert all(c <= 3 for c in counts), counts
    assert all(c >= 1 for c in counts), counts  # the values were looked at by a job (barrier jobs are counted)


def test_a_fit_is_counted(spark, iris):
    """The positive control: a BSP fit's barrier stage is seen, and a MapReduce fit's training passes."""
    _, _, df = iris
    assert jobs_started(spark, lambda: AdaBoostClassifier(engine="bsp", maxIter=3).fit(df)) >= 1
    assert jobs_started(spark, lambda: AdaBoostClassifier(maxIter=3, maxBins=8).fit(df)) >= 4
