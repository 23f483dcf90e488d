"""Benchmark (not a test): distributed KMeans, both engines, against scikit-learn's Lloyd and MLlib -- one run, same
data, same cores.

    .venv/bin/python -m sparkml_dist.bench.clustering --rows 1000000 --dims 32 --k 16 --repeats 3 --out bench.json

What is measured on generated blobs (``make_blobs``, overlapping so that Lloyd does not converge early):

* **per-iteration time from the same initial centres** (``iters`` Lloyd steps, ``tol=0``): our MapReduce and BSP
  engines (median of ``summary.iterationTimes``), scikit-learn ``KMeans(init=C0, n_init=1, algorithm="lloyd")`` on
  the same rows in one process, and MLlib ``pyspark.mllib.clustering.KMeans.train(..., initialModel=C0)``. For the
  last two, per-iteration time is ``(T(iters) - T(1)) / (iters - 1)``, which removes their set-up (input conversion,
  caching) the same way our numbers exclude ``to_blocks``;
* the **final cost** of each from those centres (they run the same algorithm, so it must agree);
* **end to end with each one's own k-means||**: our ``KMeans()`` against MLlib ``pyspark.ml.clustering.KMeans()``
  (both MLlib defaults: maxIter=20, tol=1e-4), wall time and ``trainingCost``.

Every figure is the median over ``repeats``; ratios are logged and written with them to ``--out``.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from typing import Any

import numpy as np

logger = logging.getLogger("sparkml_dist.bench.clustering")  # not __name__: it is "__main__" under -m

#: per-dimension spread of the blobs: overlapping clusters keep Lloyd moving for the fixed iteration count
CLUSTER_STD = 5.0


def numpy_blobs(rows: int, dims: int, k: int, seed: int, parts: int) -> np.ndarray:
    """The exact rows :func:`sparkml_dist.data.generators.make_blobs` generates, built in this process.

    Same generator, same seeds, same chunks (partition ``p`` draws from ``default_rng([seed, p])``), so scikit-learn
    sees the very data the Spark side sees, without collecting it through the driver.
    """
    from sparkml_dist.data.generators import _CHUNK, _split

    centers = np.random.default_rng(seed).uniform(-10.0, 10.0, size=(k, dims))
    out = np.empty((rows, dims))
    pos = 0
    for p in range(min(parts, rows)):
        start, end = _split(rows, min(parts, rows), p)
        r = np.random.default_rng([seed, p])
        for lo in range(start, end, _CHUNK):
            n = min(_CHUNK, end - lo)
            y = r.integers(0, k, size=n)
            out[pos:pos + n] = centers[y] + r.standard_normal((n, dims)) * CLUSTER_STD
            pos += n
    return out


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def _ours(df, k: int, C0: np.ndarray, iters: int, engine: str) -> dict:
    from sparkml_dist.clustering import KMeans

    start = time.perf_counter()
    model = KMeans(k=k, maxIter=iters, tol=0.0, initialCenters=C0.tolist(), engine=engine).fit(df)
    s = model.summary
    return {"fit_seconds": time.perf_counter() - start, "load_seconds": s.loadTime, "init_seconds": s.initTime,
            "iteration_seconds": _median(s.iterationTimes),
            "iterations": s.numIter, "cost": s.inertia, "bytes": s.bytesCommunicated}


def _sklearn(X: np.ndarray, C0: np.ndarray, iters: int) -> dict:
    """Per-iteration time of scikit-learn's Lloyd: ``(T(iters) - T(1)) / (n_iter_ - 1)``, each ``T`` the faster of
    two fits after a warm-up fit (thread pools, page faults), so its fixed costs (input checks, centring copy, the
    final assignment) cancel out."""
    from sklearn.cluster import KMeans as SkKMeans

    def fit(n: int):
        start = time.perf_counter()
        km = SkKMeans(n_clusters=len(C0), init=C0, n_init=1, algorithm="lloyd", max_iter=n, tol=0).fit(X)
        return time.perf_counter() - start, km

    fit(1)
    t1 = min(fit(1)[0] for _ in range(2))
    (tn, km), (tn2, _) = fit(iters), fit(iters)
    tn = min(tn, tn2)
    return {"fit_seconds": tn, "iteration_seconds": (tn - t1) / max(1, km.n_iter_ - 1),
            "iterations": int(km.n_iter_), "cost": float(km.inertia_)}


def _mllib_rdd(df):
    from pyspark.mllib.util import MLUtils

    rdd = MLUtils.convertVectorColumnsFromML(df, "features").rdd.map(lambda r: r.features).cache()
    rdd.count()
    return rdd


def _mllib_same_init(rdd, C0: np.ndarray, iters: int) -> dict:
    from pyspark.mllib.clustering import KMeans as MllibKMeans
    from pyspark.mllib.clustering import KMeansModel as MllibModel

    times = {}
    model = None
    for n in (1, 1, iters):  # the first call warms the JVM up (JIT, netlib loading) and is not counted
        start = time.perf_counter()
        model = MllibKMeans.train(rdd, len(C0), maxIterations=n, initialModel=MllibModel([c for c in C0]),
                                  epsilon=0.0)
        times[n] = time.perf_counter() - start
    return {"fit_seconds": times[iters], "iteration_seconds": (times[iters] - times[1]) / (iters - 1),
            "cost": float(model.computeCost(rdd))}


def _own_init(df, k: int, seed: int) -> dict:
    """Each with its own k-means|| and MLlib's defaults (maxIter=20, tol=1e-4)."""
    from pyspark.ml.clustering import KMeans as MlKMeans

    from sparkml_dist.clustering import KMeans

    out = {}
    for name, est in (("ours_bsp", KMeans(k=k, seed=seed, engine="bsp")),
                      ("ours_mapreduce", KMeans(k=k, seed=seed)),
                      ("mllib_ml", MlKMeans(k=k, seed=seed))):
        start = time.perf_counter()
        model = est.fit(df)
        out[name] = {"fit_seconds": time.perf_counter() - start, "cost": float(model.summary.trainingCost),
                     "iterations": int(model.summary.numIter)}
    return out


def run(spark, rows: int = 1_000_000, dims: int = 32, k: int = 16, repeats: int = 3, iters: int = 10,
        seed: int = 0, mllib: bool = True) -> dict[str, Any]:
    """Run the benchmark on ``spark`` and return medians, ratios and the settings (JSON-able)."""
    from sparkml_dist.data.generators import make_blobs
    from sparkml_dist.runtime.barrier import available_slots

    parts = available_slots(spark)
    df = make_blobs(spark, rows, dims, centers=k, cluster_std=CLUSTER_STD, seed=seed, num_partitions=parts)
    X = numpy_blobs(rows, dims, k, seed, parts)
    C0 = X[np.random.default_rng(seed + 1).choice(rows, k, replace=False)]
    rdd = _mllib_rdd(df) if mllib else None
    runs: dict[str, list[dict]] = {}
    for rep in range(repeats):
        logger.info("repeat %d/%d", rep + 1, repeats)
        results = {"mapreduce": _ours(df, k, C0, iters, "mapreduce"), "bsp": _ours(df, k, C0, iters, "bsp"),
                   "sklearn": _sklearn(X, C0, iters)}
        if mllib:
            results["mllib_same_init"] = _mllib_same_init(rdd, C0, iters)
            for name, value in _own_init(df, k, seed + rep).items():
                results[f"own_init_{name}"] = value
        for name, value in results.items():
            runs.setdefault(name, []).append(value)
            logger.info("  %-24s %s", name, {key: round(v, 4) if isinstance(v, float) else v
                                             for key, v in value.items()})
    if rdd is not None:
        rdd.unpersist()
    medians = {name: {key: _median([r[key] for r in values]) for key in values[0]} for name, values in runs.items()}
    per_iter = {name: m["iteration_seconds"] for name, m in medians.items() if "iteration_seconds" in m}
    ratios = {
        "mapreduce_vs_sklearn_per_iteration": per_iter["mapreduce"] / per_iter["sklearn"],
        "bsp_vs_sklearn_per_iteration": per_iter["bsp"] / per_iter["sklearn"],
        "cost_rel_diff_vs_sklearn": abs(medians["bsp"]["cost"] - medians["sklearn"]["cost"]) / medians["sklearn"][
            "cost"],
    }
    if mllib:
        ratios.update({
            "mllib_vs_mapreduce_per_iteration": per_iter["mllib_same_init"] / per_iter["mapreduce"],
            "mllib_vs_bsp_per_iteration": per_iter["mllib_same_init"] / per_iter["bsp"],
            "cost_rel_diff_vs_mllib_same_init": abs(medians["bsp"]["cost"] - medians["mllib_same_init"]["cost"])
            / medians["mllib_same_init"]["cost"],
            "mllib_vs_bsp_end_to_end_own_init": medians["own_init_mllib_ml"]["fit_seconds"]
            / medians["own_init_ours_bsp"]["fit_seconds"],
            "mllib_vs_mapreduce_end_to_end_own_init": medians["own_init_mllib_ml"]["fit_seconds"]
            / medians["own_init_ours_mapreduce"]["fit_seconds"],
            "cost_ratio_own_init_ours_vs_mllib": medians["own_init_ours_bsp"]["cost"]
            / medians["own_init_mllib_ml"]["cost"],
        })
    for name, value in ratios.items():
        logger.info("ratio %-42s %.4g", name, value)
    return {"settings": {"rows": rows, "dims": dims, "k": k, "repeats": repeats, "iters": iters, "seed": seed,
                         "partitions": parts, "cluster_std": CLUSTER_STD, "master": spark.sparkContext.master},
            "medians": medians, "ratios": ratios, "runs": runs}


def main(argv: list[str] | None = None) -> dict:
    from sparkml_dist.runtime import get_spark, setup_logging

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dims", type=int, default=32)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10, help="Lloyd iterations of the same-initial-centres runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--driver-memory", default="8g")
    parser.add_argument("--skip-mllib", action="store_true", help="only our engines and scikit-learn")
    parser.add_argument("--out", default=None, help="write the JSON report here")
    args = parser.parse_args(argv)
    setup_logging()
    spark = get_spark("local", master=args.master, app_name="sparkml-dist-bench-clustering",
                      spark_driver_memory=args.driver_memory)
    try:
        report = run(spark, args.rows, args.dims, args.k, args.repeats, args.iters, args.seed, not args.skip_mllib)
    finally:
        spark.stop()
    if args.out:
        from sparkml_dist.data.io import write_json

        write_json(args.out, report)  # atomically
        logger.info("wrote %s", args.out)
    return report


if __name__ == "__main__":
    main()


# -- registered cases of `sparkml-dist bench` ------------------------------------------------------------------------
from sparkml_dist.bench.registry import CaseContext, bench_case  # noqa: E402

#: ``partitions`` is part of the size, never the session's slot count: the data (each partition draws its own rows)
#: is then the same on 1, 2 or 4 workers, so a --workers run compares the same problem
_KMEANS_SIZES = {"quick": {"rows": 4_000, "dims": 8, "k": 4, "iters": 5, "partitions": 4},
                 "standard": {"rows": 200_000, "dims": 16, "k": 8, "iters": 10, "partitions": 8},
                 "full": {"rows": 1_000_000, "dims": 32, "k": 16, "iters": 10, "partitions": 8}}


@bench_case("clustering", "kmeans", variants=("mapreduce", "bsp"), dataset="blobs(std=5)", quality="cost",
            higher_is_better=False, sizes=_KMEANS_SIZES)
def kmeans_case(ctx: CaseContext) -> dict:
    """Lloyd from the same initial centres (``tol=0``) against scikit-learn's Lloyd and MLlib's ``KMeans.train``."""
    from sparkml_dist.clustering import KMeans
    from sparkml_dist.data.generators import make_blobs

    rows, dims, k, iters, parts = (ctx.size[key] for key in ("rows", "dims", "k", "iters", "partitions"))
    df = make_blobs(ctx.spark, rows, dims, centers=k, cluster_std=CLUSTER_STD, seed=ctx.seed,
                    num_partitions=parts).cache()
    df.count()
    try:
        X = numpy_blobs(rows, dims, k, ctx.seed, parts)  # the very rows Spark generated, built in this process
        C0 = X[np.random.default_rng(ctx.seed + 1).choice(rows, k, replace=False)]
        start = time.perf_counter()
        model = KMeans(k=k, maxIter=iters, tol=0.0, initialCenters=C0.tolist(), engine=ctx.variant).fit(df)
        seconds = time.perf_counter() - start
        s = model.summary

        def sklearn_baseline() -> dict:
            from sklearn.cluster import KMeans as SkKMeans

            t = time.perf_counter()
            km = SkKMeans(n_clusters=k, init=C0, n_init=1, algorithm="lloyd", max_iter=iters, tol=0).fit(X)
            return {"seconds": time.perf_counter() - t, "cost": float(km.inertia_)}

        def mllib_baseline() -> dict:
            from pyspark.mllib.clustering import KMeans as MllibKMeans
            from pyspark.mllib.clustering import KMeansModel as MllibModel

            rdd = _mllib_rdd(df)
            try:
                t = time.perf_counter()
                m = MllibKMeans.train(rdd, k, maxIterations=iters, initialModel=MllibModel(list(C0)), epsilon=0.0)
                return {"seconds": time.perf_counter() - t, "cost": float(m.computeCost(rdd))}
            finally:
                rdd.unpersist()

        baselines = {"sklearn": ctx.baseline("sklearn", sklearn_baseline),
                     "mllib": ctx.baseline("mllib", mllib_baseline)}
    finally:
        df.unpersist()
    return {"seconds": seconds, "baselines": baselines, "bytes": s.bytesCommunicated,
            "metrics": {"cost": float(s.inertia), "iterations": s.numIter,
                        "iteration_seconds": _median(list(s.iterationTimes))},
            "curves": {"cost": list(s.costHistory)}}


@bench_case("clustering", "fuzzy_cmeans", variants=("bsp",), dataset="blobs(std=1)", quality="ari",
            sizes={"quick": {"rows": 3_000, "dims": 4, "k": 4, "partitions": 4},
                   "standard": {"rows": 100_000, "dims": 8, "k": 6, "partitions": 8},
                   "full": {"rows": 1_000_000, "dims": 16, "k": 8, "partitions": 8}})
def fuzzy_case(ctx: CaseContext) -> dict:
    """Fuzzy c-means picking k over [2, k+2] by Xie-Beni: ARI against the blobs, beside scikit-learn's KMeans
    told the true k."""
    from sklearn.metrics import adjusted_rand_score

    from sparkml_dist.clustering import FuzzyCMeans
    from sparkml_dist.data.generators import make_blobs

    rows, dims, k = (ctx.size[key] for key in ("rows", "dims", "k"))
    df = make_blobs(ctx.spark, rows, dims, centers=k, cluster_std=1.0, seed=ctx.seed,
                    num_partitions=ctx.size["partitions"]).cache()
    df.count()
    try:
        start = time.perf_counter()
        model = FuzzyCMeans(kRange=[2, k + 2], seed=ctx.seed + 1, engine=ctx.variant).fit(df)
        seconds = time.perf_counter() - start
        pdf = model.transform(df).select("label", "prediction").toPandas()
        X, y = _collect_features(df)
    finally:
        df.unpersist()

    def sklearn_baseline() -> dict:
        from sklearn.cluster import KMeans as SkKMeans

        t = time.perf_counter()
        pred = SkKMeans(n_clusters=k, n_init=1, random_state=ctx.seed).fit_predict(X)
        return {"seconds": time.perf_counter() - t, "ari": float(adjusted_rand_score(y, pred))}

    s = model.summary
    return {"seconds": seconds, "bytes": s.bytesCommunicated,
            "metrics": {"ari": float(adjusted_rand_score(pdf["label"], pdf["prediction"])), "k": model.getK(),
                        "xie_beni": float(s.xieBeni)},
            "baselines": {"sklearn_kmeans_true_k": ctx.baseline("sklearn", sklearn_baseline)},
            "curves": {"objective": list(s.costHistory)}}


def _collect_features(df) -> tuple[np.ndarray, np.ndarray]:
    from pyspark.ml.functions import vector_to_array

    pdf = df.select(vector_to_array("features").alias("x"), "label").toPandas()
    return np.stack(pdf["x"].to_numpy()), pdf["label"].to_numpy()
