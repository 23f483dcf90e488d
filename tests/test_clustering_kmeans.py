"""KMeans against scikit-learn / numpy references, both engines, persistence, Pipeline/CrossValidator, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from sparkml_dist.clustering import KMeans, KMeansModel
from sparkml_dist.data.sources import bundled_arrays, from_numpy
from sparkml_dist.data.validation import DataValidationError

ENGINES = ["mapreduce", "bsp"]


@pytest.fixture(scope="module")
def digits(spark):
    X, y = bundled_arrays("digits")
    df = from_numpy(spark, X, y, num_partitions=2).cache()
    df.count()
    return X, df


@pytest.fixture(scope="module")
def blobs(spark):
    from sklearn.datasets import make_blobs

    X, y = make_blobs(n_samples=3000, n_features=8, centers=6, cluster_std=2.5, random_state=7)
    w = np.random.default_rng(7).integers(1, 4, size=len(X)).astype(float)
    df = from_numpy(spark, X, y, num_partitions=2, extra={"w": w}).cache()
    df.count()
    return X, w, df


def _jittered_rows(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Data rows plus a little noise: integer-valued rows (digits) make exact distance ties, which GEMM round-off
    would break differently in two implementations."""
    rng = np.random.default_rng(seed)
    return X[rng.choice(len(X), k, replace=False)] + rng.normal(0, 0.01, (k, X.shape[1]))


def _sklearn(X, C0, n_iter, w=None):
    from sklearn.cluster import KMeans as SkKMeans

    return SkKMeans(n_clusters=len(C0), init=C0, n_init=1, algorithm="lloyd", max_iter=n_iter, tol=0).fit(
        X, sample_weight=w)


@pytest.mark.parametrize("engine", ENGINES)
def test_digits_equals_sklearn_from_same_centres(digits, engine):
    X, df = digits
    C0 = _jittered_rows(X, 10, 0)
    ref = _sklearn(X, C0, 8)
    model = KMeans(k=10, maxIter=8, tol=0.0, initialCenters=C0.tolist(), engine=engine).fit(df)
    np.testing.assert_allclose(model.centers, ref.cluster_centers_, rtol=1e-6, atol=1e-9)
    assert model.summary.inertia == pytest.approx(ref.inertia_, rel=1e-6)
    assert model.summary.numIter == ref.n_iter_ == 8
    # MLlib's trainingCost is the last assignment's cost, measured before the final update: never below inertia
    assert model.summary.trainingCost >= model.summary.inertia
    assert model.summary.costHistory[-1] == model.summary.trainingCost
    assert len(model.summary.iterationTimes) == 8 and model.summary.bytesCommunicated > 0
    np.testing.assert_allclose(sum(model.summary.clusterSizes), len(X))


def test_weighted_blobs_equal_sklearn_and_engines_agree(blobs):
    X, w, df = blobs
    C0 = _jittered_rows(X, 6, 1)
    ref = _sklearn(X, C0, 5, w)
    fits = [KMeans(k=6, maxIter=5, tol=0.0, initialCenters=C0.tolist(), weightCol="w", engine=e).fit(df)
            for e in ENGINES]
    for model in fits:
        np.testing.assert_allclose(model.centers, ref.cluster_centers_, rtol=1e-6, atol=1e-9)
        assert model.summary.inertia == pytest.approx(ref.inertia_, rel=1e-6)
        np.testing.assert_allclose(sum(model.summary.clusterSizes), w.sum())
    mr, bsp = fits
    np.testing.assert_allclose(mr.centers, bsp.centers, rtol=1e-12)
    np.testing.assert_allclose(mr.summary.costHistory, bsp.summary.costHistory, rtol=1e-12)


@pytest.mark.parametrize("init_mode", ["k-means||", "k-means++", "random"])
def test_init_modes_same_on_both_engines_and_good(blobs, init_mode):
    from sklearn.cluster import KMeans as SkKMeans

    X, _, df = blobs
    fits = [KMeans(k=6, seed=5, initMode=init_mode, engine=e).fit(df) for e in ENGINES]
    np.testing.assert_allclose(fits[0].centers, fits[1].centers, rtol=1e-10)
    best = SkKMeans(6, n_init=10, random_state=0).fit(X).inertia_
    # random init can end in a poor local optimum; the k-means++ family should be near the best of 10 restarts
    slack = 1.5 if init_mode == "random" else 1.05
    assert fits[0].summary.inertia <= slack * best
    assert len(fits[0].clusterCenters()) == 6


def _cosine_reference(X, C0, n_iter):
    """MLlib's cosine k-means in numpy: unit rows, argmax cosine, centre = normalised mean of unit rows."""
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    C = C0 / np.linalg.norm(C0, axis=1, keepdims=True)
    cost = None
    for _ in range(n_iter):
        sim = Xn @ C.T
        labels = sim.argmax(1)
        cost = float((1 - sim.max(1)).sum())
        new = np.array([Xn[labels == j].mean(0) if np.any(labels == j) else C[j] for j in range(len(C))])
        C = new / np.linalg.norm(new, axis=1, keepdims=True)
    return C, cost, float((1 - (Xn @ C.T).max(1)).sum())


@pytest.mark.parametrize("engine", ENGINES)
def test_cosine_matches_numpy_reference(digits, engine):
    X, df = digits
    C0 = _jittered_rows(X, 10, 2)
    C_ref, last_cost, inertia = _cosine_reference(X, C0, 6)
    model = KMeans(k=10, maxIter=6, tol=0.0, initialCenters=C0.tolist(), distanceMeasure="cosine",
                   engine=engine).fit(df)
    np.testing.assert_allclose(model.centers, C_ref, rtol=1e-6, atol=1e-9)
    assert model.summary.trainingCost == pytest.approx(last_cost, rel=1e-6)
    assert model.summary.inertia == pytest.approx(inertia, rel=1e-6)
    pred = np.array([r[0] for r in model.transform(df).select("prediction").collect()])
    np.testing.assert_array_equal(pred, ((X / np.linalg.norm(X, axis=1, keepdims=True)) @ C_ref.T).argmax(1))


def test_transform_predict_and_convergence(digits):
    X, df = digits
    model = KMeans(k=10, seed=3, maxIter=100, tol=1e-4, engine="bsp").fit(df)
    assert model.summary.converged and model.summary.numIter < 100
    out = model.transform(df)
    assert dict(out.dtypes)["prediction"] == "int"
    pred = np.array([r[0] for r in out.select("prediction").collect()])
    d2 = ((X[:, None, :] - model.centers[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(pred, d2.argmin(1))
    assert model.predict(X[0]) == pred[0]


def test_fewer_distinct_points_than_k(spark):
    X = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0], [9.0, 0.0]]), 20, axis=0)
    df = from_numpy(spark, X, num_partitions=2)
    # k-means||: like MLlib, only the 3 distinct points become centres
    model = KMeans(k=5, seed=1, engine="bsp").fit(df)
    assert model.summary.k == 3 and model.summary.inertia == pytest.approx(0.0, abs=1e-9)
    # random init draws 5 rows, so duplicates: their clusters stay empty and keep the centre (MLlib)
    model = KMeans(k=5, seed=1, initMode="random", engine="bsp").fit(df)
    assert model.summary.k == 5 and model.summary.inertia == pytest.approx(0.0, abs=1e-9)
    assert sorted(model.summary.clusterSizes).count(0.0) == 2


def test_save_load_round_trip(digits, tmp_path):
    _, df = digits
    model = KMeans(k=4, seed=2, maxIter=5, predictionCol="cluster", engine="bsp").fit(df)
    model.write().overwrite().save(str(tmp_path / "km"))
    loaded = KMeansModel.load(str(tmp_path / "km"))
    np.testing.assert_array_equal(loaded.centers, model.centers)
    assert loaded.getPredictionCol() == "cluster" and loaded.uid == model.uid
    assert loaded.summary.trainingCost == model.summary.trainingCost
    a = [r[0] for r in model.transform(df).select("cluster").collect()]
    b = [r[0] for r in loaded.transform(df).select("cluster").collect()]
    assert a == b
    est = KMeans(k=7, engine="bsp", distanceMeasure="cosine")
    est.write().overwrite().save(str(tmp_path / "est"))
    again = KMeans.load(str(tmp_path / "est"))
    assert (again.getK(), again.getEngine(), again.getDistanceMeasure()) == (7, "bsp", "cosine")


def test_pipeline_with_vector_assembler_and_cross_validator(spark, tmp_path):
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.ml.evaluation import ClusteringEvaluator
    from pyspark.ml.feature import VectorAssembler
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder

    X, _ = bundled_arrays("iris")
    raw = spark.createDataFrame([tuple(map(float, r)) for r in X], ["a", "b", "c", "d"]).repartition(2)
    assembler = VectorAssembler(inputCols=["a", "b", "c", "d"], outputCol="features")
    km = KMeans(k=3, seed=1, engine="bsp")  # the BSP engine: one Spark job per fit keeps the CV quick
    model = Pipeline(stages=[assembler, km]).fit(raw)
    model.write().overwrite().save(str(tmp_path / "pipe"))
    loaded = PipelineModel.load(str(tmp_path / "pipe"))
    a = model.transform(raw).select("prediction").collect()
    assert a == loaded.transform(raw).select("prediction").collect()
    assert len({r[0] for r in a}) == 3

    grid = ParamGridBuilder().addGrid(km.k, [2, 3]).build()
    cv = CrossValidator(estimator=km, estimatorParamMaps=grid, evaluator=ClusteringEvaluator(), numFolds=2, seed=1)
    cv_model = cv.fit(assembler.transform(raw))
    assert len(cv_model.avgMetrics) == 2 and isinstance(cv_model.bestModel, KMeansModel)


def _no_job(spark, fn):
    """Run ``fn`` in a fresh job group and return how many Spark jobs it started."""
    sc = spark.sparkContext
    group = f"check-{np.random.default_rng().integers(1 << 30)}"
    sc.setJobGroup(group, "validation check")
    try:
        fn()
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
    return len(sc.statusTracker().getJobIdsForGroup(group))


@pytest.mark.parametrize("engine", ENGINES)
def test_bad_inputs(spark, digits, engine):
    _, df = digits
    jobs = []

    def expect(exc, match, fn):
        def run():
            with pytest.raises(exc, match=match):
                fn()
        jobs.append(_no_job(spark, run))

    # parameter and schema errors: no Spark job at all
    expect(ValueError, r"k=1: the number of clusters must be >= 2", lambda: KMeans(k=1, engine=engine).fit(df))
    expect(DataValidationError, r"featuresCol='nope': no such column",
           lambda: KMeans(featuresCol="nope", engine=engine).fit(df))
    expect(DataValidationError, r"weightCol='w': no such column",
           lambda: KMeans(weightCol="w", engine=engine).fit(df))
    expect(ValueError, r"initialCenters: expected k=3 rows", lambda: KMeans(
        k=3, initialCenters=[[0.0] * 64] * 2, engine=engine).fit(df))
    expect(ValueError, r"distanceMeasure='manhattan'", lambda: KMeans(distanceMeasure="manhattan").fit(df))
    assert jobs == [0, 0, 0, 0, 0]
    jobs.clear()

    # value errors: found by the single validating pass, before any training pass
    from pyspark.ml.linalg import Vectors

    # (from_numpy would turn NaN into null through pandas; build the vectors directly)
    bad = spark.createDataFrame([(Vectors.dense([0.0, 1.0]),), (Vectors.dense([float("nan"), 2.0]),),
                                 (Vectors.dense([3.0, 4.0]),), (Vectors.dense([5.0, 6.0]),)], ["features"])
    expect(DataValidationError, r"featuresCol='features' has 1 NaN or infinite values",
           lambda: KMeans(k=2, engine=engine).fit(bad.repartition(2)))
    ok = np.arange(8.0).reshape(4, 2)
    expect(DataValidationError, r"k=5 is larger than the number of rows \(4\)",
           lambda: KMeans(k=5, engine=engine).fit(from_numpy(spark, ok, num_partitions=2)))
    expect(DataValidationError, r"the DataFrame is empty",
           lambda: KMeans(k=2, engine=engine).fit(from_numpy(spark, ok, num_partitions=2).limit(0)))
    neg = from_numpy(spark, ok, num_partitions=2, extra={"w": np.array([1.0, -1.0, 2.0, 1.0])})
    expect(DataValidationError, r"weightCol='w' has 1 negative weights",
           lambda: KMeans(k=2, weightCol="w", engine=engine).fit(neg))
    zero = from_numpy(spark, np.array([[0.0, 0.0], [1.0, 2.0], [3.0, 1.0]]), num_partitions=1)
    expect(DataValidationError, r"1 zero vectors; cosine distance is undefined",
           lambda: KMeans(k=2, distanceMeasure="cosine", engine=engine).fit(zero))
    # at most: the input's own job, the one validating pass, the resident blocks' clean-up (and for cosine the
    # zero-vector pass) -- no initialisation or Lloyd pass
    assert all(j <= 4 for j in jobs), jobs


@pytest.mark.parametrize("engine", ENGINES)
def test_equals_mllib_from_the_same_initial_model(spark, digits, engine):
    """MLlib's own Lloyd (pyspark.mllib KMeans.train with initialModel) on the same rows from the same centres."""
    from pyspark.mllib.clustering import KMeans as MllibKMeans
    from pyspark.mllib.clustering import KMeansModel as MllibModel
    from pyspark.mllib.linalg import Vectors as MllibVectors

    X, df = digits
    C0 = _jittered_rows(X, 8, 4)
    rdd = df.rdd.map(lambda r: MllibVectors.dense(r.features.toArray())).cache()
    ref = MllibKMeans.train(rdd, 8, maxIterations=6, initialModel=MllibModel([c for c in C0]), epsilon=0.0)
    ref_centers = np.array([np.asarray(c) for c in ref.clusterCenters])
    model = KMeans(k=8, maxIter=6, tol=0.0, initialCenters=C0.tolist(), engine=engine).fit(df)
    np.testing.assert_allclose(model.centers, ref_centers, rtol=1e-6, atol=1e-8)
    assert model.summary.inertia == pytest.approx(ref.computeCost(rdd), rel=1e-6)
    rdd.unpersist()
