"""Benchmark (not a test): distributed AdaBoost and CascadeSVC against MLlib and single-node scikit-learn.

    .venv/bin/python -m sparkml_dist.bench.classification --out out/bench/classification.json

* AdaBoost, ``make_hastie_10_2`` (binary): our ``exact`` histogram AdaBoost (both engines) vs MLlib
  ``GBTClassifier(maxIter=R, maxDepth=1)`` (same number of rounds) and scikit-learn
  ``AdaBoostClassifier(n_estimators=R)`` on the collected arrays: fit seconds, seconds per round, test accuracy, ratios.
* CascadeSVC at several sizes (4+ partitions): ``cascade`` and ``mrsmo``, both engines, vs one scikit-learn ``SVC``
  (same C, gamma='scale', cache_size=1000): fit seconds, test accuracy, dual objectives, ratios. The data is
  ``make_classification`` (10 features, 4 informative); the default ``class_sep=1`` is noisy (20% of rows end as
  SVs), where a kernel SVM is expensive enough to distribute -- with ``class_sep=2`` SVC needs only 8 s at 100k rows.

Our figures are medians of ``repeats`` runs, the baselines' of ``baseline_repeats`` (default 1: they are the slow
part), all in the same Spark session on this machine; the JSON records the
machine (cores) and the Spark master, so figures from other machines are not mixed up.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

logger = logging.getLogger("sparkml_dist.bench.classification")  # not __main__ under -m


def _median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any, list[float]]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result, times


def _collect(df) -> tuple[np.ndarray, np.ndarray]:
    from pyspark.ml.functions import vector_to_array

    pdf = df.select(vector_to_array("features").alias("x"), "label").toPandas()
    return np.stack(pdf["x"].to_numpy()), pdf["label"].to_numpy()


def _accuracy(model, X: np.ndarray, y: np.ndarray) -> float:
    return float((model.predict_numpy(X)[2] == y).mean())


def _svc_objective(svc, y: np.ndarray) -> float:
    """scikit-learn SVC's dual objective, computed as ours (:func:`kernel_svm.dual_objective`)."""
    from sparkml_dist.classification.kernel_svm import KernelSpec, SVCSolution, dual_objective

    sol = SVCSolution(svc.classes_.astype(np.int64), svc.support_, svc.support_vectors_,
                      y[svc.support_].astype(np.int64), svc.dual_coef_, svc.intercept_, svc.n_support_)
    return dual_objective(sol, KernelSpec(svc.kernel, svc._gamma, svc.degree, svc.coef0))


def bench_adaboost(spark, rows: int, rounds: int, repeats: int, partitions: int, baselines: bool,
                   baseline_repeats: int = 1) -> dict:
    from pyspark.ml.classification import GBTClassifier
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from sklearn.ensemble import AdaBoostClassifier as SkAdaBoost

    from sparkml_dist.classification import AdaBoostClassifier
    from sparkml_dist.data.generators import make_hastie_10_2

    train = make_hastie_10_2(spark, n_rows=rows, seed=1, num_partitions=partitions).cache()
    test = make_hastie_10_2(spark, n_rows=max(rows // 10, 10_000), seed=2, num_partitions=partitions).cache()
    train.count(), test.count()
    Xte, yte = _collect(test)
    out: dict[str, Any] = {"rows": rows, "rounds": rounds, "partitions": partitions}
    for engine in ("bsp", "mapreduce"):
        est = AdaBoostClassifier(maxIter=rounds, maxBins=256, seed=0, engine=engine)
        t, model, times = _median_time(lambda est=est: est.fit(train), repeats)
        history = model.trainingHistory  # per-round seconds, measured on the driver (mapreduce) or rank 0 (bsp)
        per_round = statistics.median(h["seconds"] for h in history) if history else t / rounds
        out[f"ours_{engine}"] = {"fit_seconds": t, "seconds_per_round": per_round, "runs": times,
                                 "test_accuracy": _accuracy(model, Xte, yte),
                                 "rounds_made": int(len(model.estimatorWeights))}
        logger.info("adaboost %s: %.2fs (%d rows, %d rounds), accuracy %.4f", engine, t, rows, rounds,
                    out[f"ours_{engine}"]["test_accuracy"])
    if baselines:
        gbt = GBTClassifier(maxIter=rounds, maxDepth=1, seed=0)
        t, gmodel, times = _median_time(lambda: gbt.fit(train), baseline_repeats)
        acc = MulticlassClassificationEvaluator(metricName="accuracy").evaluate(gmodel.transform(test))
        out["mllib_gbt"] = {"fit_seconds": t, "seconds_per_round": t / rounds, "runs": times, "test_accuracy": acc}
        logger.info("MLlib GBT(maxDepth=1): %.2fs, accuracy %.4f", t, acc)
        Xtr, ytr = _collect(train)
        t, sk, times = _median_time(lambda: SkAdaBoost(n_estimators=rounds, random_state=0).fit(Xtr, ytr),
                                    baseline_repeats)
        out["sklearn"] = {"fit_seconds": t, "seconds_per_round": t / rounds, "runs": times,
                          "test_accuracy": float(sk.score(Xte, yte))}
        logger.info("sklearn AdaBoost: %.2fs, accuracy %.4f", t, out["sklearn"]["test_accuracy"])
        for engine in ("bsp", "mapreduce"):
            ours = out[f"ours_{engine}"]["fit_seconds"]
            out[f"speedup_{engine}_vs_mllib_gbt"] = out["mllib_gbt"]["fit_seconds"] / ours
            out[f"speedup_{engine}_vs_sklearn"] = out["sklearn"]["fit_seconds"] / ours
            logger.info("adaboost %s: %.2fx MLlib GBT, %.2fx sklearn", engine,
                        out[f"speedup_{engine}_vs_mllib_gbt"], out[f"speedup_{engine}_vs_sklearn"])
    train.unpersist(), test.unpersist()
    return out


#: (figure key, mode, engine) of the CascadeSVC runs
SVM_VARIANTS = (("cascade", "cascade", "mapreduce"), ("mrsmo", "mrsmo", "mapreduce"),
                ("cascade_bsp", "cascade", "bsp"), ("mrsmo_bsp", "mrsmo", "bsp"), ("dpsvm", "dpsvm", "mapreduce"))

#: plot labels of the SVM curves
SVM_LABELS = {"sklearn_svc": "scikit-learn SVC (1 core)", "cascade": "cascade (mapreduce)",
              "mrsmo": "mrsmo (mapreduce)", "cascade_bsp": "cascade (bsp)", "mrsmo_bsp": "mrsmo (bsp)",
              "dpsvm": "dpsvm (ring, mapreduce)"}


def svm_variants(keys: str | list[str] | tuple[str, ...] | None) -> tuple[tuple[str, str, str], ...]:
    """The ``SVM_VARIANTS`` named by ``keys`` (comma-separated or a list; None or empty: all)."""
    if not keys:
        return SVM_VARIANTS
    wanted = [k.strip() for k in (keys.split(",") if isinstance(keys, str) else keys) if k.strip()]
    known = {v[0]: v for v in SVM_VARIANTS}
    unknown = [k for k in wanted if k not in known]
    if unknown:
        raise ValueError(f"--svm-variants: unknown {unknown}; known: {', '.join(known)}")
    return tuple(known[k] for k in wanted)


def bench_svm(spark, sizes: list[int], repeats: int, partitions: int, class_sep: float, baselines: bool,
              baseline_repeats: int = 1, variants: tuple[tuple[str, str, str], ...] = SVM_VARIANTS) -> dict:
    from sklearn.datasets import make_classification
    from sklearn.svm import SVC

    from sparkml_dist.classification import CascadeSVC
    from sparkml_dist.data.sources import from_numpy

    out: dict[str, Any] = {"partitions": partitions, "class_sep": class_sep, "sizes": {}}
    for n in sizes:
        X, y = make_classification(n_samples=n + 10_000, n_features=10, n_informative=4, n_redundant=2,
                                   class_sep=class_sep, flip_y=0.0, random_state=0)
        Xtr, ytr, Xte, yte = X[:n], y[:n].astype(float), X[n:], y[n:].astype(float)
        df = from_numpy(spark, Xtr, ytr, num_partitions=partitions).cache()
        df.count()
        row: dict[str, Any] = {}
        for key, mode, engine in variants:
            t, model, times = _median_time(lambda m=mode, e=engine, d=df: CascadeSVC(mode=m, engine=e).fit(d),
                                           repeats)
            row[key] = {"fit_seconds": t, "runs": times, "test_accuracy": _accuracy(model, Xte, yte),
                        "passes": model.passes, "n_sv": int(len(model.supportIds)),
                        "dual_objective": model.dualObjective}
            logger.info("svm %s n=%d: %.2fs, accuracy %.4f, %d passes", key, n, t, row[key]["test_accuracy"],
                        model.passes)
        if baselines:
            # SVC's best setting here: cache_size 1000 MB (100k rows, class_sep=1: 200 MB 60.5 s, 1000 MB 58.4 s,
            # 4000 MB 66.0 s); everything else is scikit-learn's default, as ours
            t, svc, times = _median_time(lambda X=Xtr, y=ytr: SVC(cache_size=1000).fit(X, y), baseline_repeats)
            row["sklearn_svc"] = {"fit_seconds": t, "runs": times, "test_accuracy": float(svc.score(Xte, yte)),
                                  "n_sv": int(svc.n_support_.sum()), "cache_size_mb": 1000,
                                  "dual_objective": _svc_objective(svc, ytr)}
            for key, _, _ in variants:
                row[f"speedup_{key}_vs_svc"] = t / row[key]["fit_seconds"]
                gap = row[key]["test_accuracy"] - row["sklearn_svc"]["test_accuracy"]
                row[f"accuracy_gap_{key}_pp"] = 100 * gap
            logger.info("SVC n=%d: %.2fs, accuracy %.4f; %s", n, t, row["sklearn_svc"]["test_accuracy"],
                        ", ".join(f"{key} {row[f'speedup_{key}_vs_svc']:.2f}x" for key, _, _ in variants))
        out["sizes"][str(n)] = row
        df.unpersist()
    return out


def run(spark, adaboost_rows: int = 1_000_000, rounds: int = 50, svm_sizes: tuple[int, ...] = (20_000, 50_000,
        100_000), repeats: int = 3, partitions: int | None = None, class_sep: float = 1.0,
        baselines: bool = True, baseline_repeats: int = 1, svm_variants_: str | None = None) -> dict:
    """Run both suites in ``spark`` and return the results (also what the JSON holds).

    Our estimators run ``repeats`` times (median reported); the slower baselines ``baseline_repeats`` times;
    ``svm_variants_`` picks CascadeSVC runs by key (comma-separated, default all of ``SVM_VARIANTS``).
    """
    variants = svm_variants(svm_variants_)
    partitions = partitions or max(2, spark.sparkContext.defaultParallelism)
    result: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "master": spark.sparkContext.master,
                    "spark": spark.version},
        "repeats": repeats,
    }
    if adaboost_rows:
        result["adaboost"] = bench_adaboost(spark, adaboost_rows, rounds, repeats, partitions, baselines,
                                            baseline_repeats)
    if svm_sizes:
        result["svm"] = bench_svm(spark, list(svm_sizes), repeats, max(4, partitions), class_sep, baselines,
                                  baseline_repeats, variants)
    return result


def plot(figures: dict, directory: str) -> list[str]:
    """PNG plots of the suite's figures into ``directory``; the file names written.

    ``svm_scaling_sep<class_sep>.png``: fit seconds against training rows (log-log) for SVC and every CascadeSVC
    variant run -- SVC's super-linear growth against the cascade's flatter curve, the issue's "show how time grows
    with rows".
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = (figures.get("svm") or {}).get("sizes") or {}
    if len(sizes) < 2:
        return []
    rows = sorted(int(n) for n in sizes)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for key, label in SVM_LABELS.items():
        points = [(n, sizes[str(n)][key]["fit_seconds"]) for n in rows if key in sizes[str(n)]]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training rows")
    ax.set_ylabel("fit seconds (median)")
    ax.set_title(f"kernel SVM, make_classification(class_sep={figures['svm'].get('class_sep')})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = os.path.join(directory, f"svm_scaling_sep{figures['svm'].get('class_sep', 0):g}.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [os.path.basename(path)]


def main(argv: list[str] | None = None) -> dict:
    from sparkml_dist.runtime import get_spark, setup_logging

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="out/bench/classification.json")
    parser.add_argument("--adaboost-rows", type=int, default=1_000_000, help="0 skips AdaBoost")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--svm-sizes", default="20000,50000,100000", help="comma-separated; empty skips SVM")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=None)
    parser.add_argument("--class-sep", type=float, default=1.0)
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--baseline-repeats", type=int, default=1)
    parser.add_argument("--svm-variants", default="", help="comma-separated CascadeSVC runs (default all): "
                        + ", ".join(v[0] for v in SVM_VARIANTS))
    parser.add_argument("--profile", default="local")
    args = parser.parse_args(argv)
    setup_logging()
    spark = get_spark(args.profile, app_name="sparkml-dist-bench-classification")
    sizes = tuple(int(s) for s in args.svm_sizes.split(",") if s.strip())
    result = run(spark, args.adaboost_rows, args.rounds, sizes, args.repeats, args.partitions, args.class_sep,
                 not args.no_baselines, args.baseline_repeats, args.svm_variants)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(result, fh, indent=2, default=float)
    os.replace(tmp, args.out)
    logger.info("wrote %s", args.out)
    for name in plot(result, os.path.dirname(os.path.abspath(args.out))):
        logger.info("wrote %s", os.path.join(os.path.dirname(args.out), name))
    spark.stop()
    return result


if __name__ == "__main__":
    main()


# -- registered cases of `sparkml-dist bench` ------------------------------------------------------------------------
from sparkml_dist.bench.registry import CaseContext, bench_case  # noqa: E402


@bench_case("classification", "adaboost", variants=("bsp", "mapreduce"), dataset="hastie_10_2", quality="accuracy",
            sizes={"quick": {"rows": 4_000, "rounds": 5, "partitions": 4},
                   "standard": {"rows": 200_000, "rounds": 20, "partitions": 8},
                   "full": {"rows": 1_000_000, "rounds": 50, "partitions": 8}})
def adaboost_case(ctx: CaseContext) -> dict:
    """SAMME over histogram stumps (exact, maxBins=256) against scikit-learn's AdaBoost and MLlib's depth-1 GBT."""
    from pyspark.ml.classification import GBTClassifier
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from sklearn.ensemble import AdaBoostClassifier as SkAdaBoost

    from sparkml_dist.classification import AdaBoostClassifier
    from sparkml_dist.data.generators import make_hastie_10_2

    rows, rounds, parts = ctx.size["rows"], ctx.size["rounds"], ctx.size["partitions"]  # fixed: same rows anywhere
    train = make_hastie_10_2(ctx.spark, n_rows=rows, seed=ctx.seed + 1, num_partitions=parts).cache()
    test = make_hastie_10_2(ctx.spark, n_rows=max(rows // 4, 1_000), seed=ctx.seed + 2, num_partitions=parts).cache()
    train.count(), test.count()
    try:
        Xte, yte = _collect(test)
        start = time.perf_counter()
        model = AdaBoostClassifier(maxIter=rounds, maxBins=256, seed=ctx.seed, engine=ctx.variant).fit(train)
        seconds = time.perf_counter() - start

        def sklearn_baseline() -> dict:
            Xtr, ytr = _collect(train)
            t = time.perf_counter()
            sk = SkAdaBoost(n_estimators=rounds, random_state=ctx.seed).fit(Xtr, ytr)
            return {"seconds": time.perf_counter() - t, "accuracy": float(sk.score(Xte, yte))}

        def mllib_baseline() -> dict:
            t = time.perf_counter()
            gbt = GBTClassifier(maxIter=rounds, maxDepth=1, seed=ctx.seed).fit(train)
            seconds = time.perf_counter() - t
            acc = MulticlassClassificationEvaluator(metricName="accuracy").evaluate(gbt.transform(test))
            return {"seconds": seconds, "accuracy": float(acc)}

        baselines = {"sklearn": ctx.baseline("sklearn", sklearn_baseline),
                     "mllib_gbt": ctx.baseline("mllib_gbt", mllib_baseline)}
        history = model.trainingHistory
    finally:
        train.unpersist(), test.unpersist()
    return {"seconds": seconds, "baselines": baselines,
            "metrics": {"accuracy": _accuracy(model, Xte, yte), "rounds_made": len(model.estimatorWeights)},
            "curves": {"weighted_error": [h["error"] for h in history if "error" in h]}}


@bench_case("classification", "cascade_svm", variants=("cascade-bsp", "cascade-mapreduce"),
            dataset="make_classification(sep=1)", quality="accuracy",
            sizes={"quick": {"rows": 2_000, "partitions": 4}, "standard": {"rows": 20_000, "partitions": 4},
                   "full": {"rows": 100_000, "partitions": 4}})
def cascade_svm_case(ctx: CaseContext) -> dict:
    """CascadeSVC (RBF, C=1, gamma='scale') against one scikit-learn ``SVC(cache_size=1000)``: accuracy and the
    dual objective reached."""
    from sklearn.datasets import make_classification
    from sklearn.svm import SVC

    from sparkml_dist.classification import CascadeSVC
    from sparkml_dist.data.sources import from_numpy

    n = ctx.size["rows"]
    mode, engine = ctx.variant.split("-")
    X, y = make_classification(n_samples=n + max(1_000, n // 5), n_features=10, n_informative=4, n_redundant=2,
                               class_sep=1.0, flip_y=0.0, random_state=ctx.seed)
    Xtr, ytr, Xte, yte = X[:n], y[:n].astype(float), X[n:], y[n:].astype(float)
    df = from_numpy(ctx.spark, Xtr, ytr, num_partitions=ctx.size["partitions"]).cache()
    df.count()
    try:
        start = time.perf_counter()
        model = CascadeSVC(mode=mode, engine=engine).fit(df)
        seconds = time.perf_counter() - start
    finally:
        df.unpersist()

    def svc_baseline() -> dict:
        t = time.perf_counter()
        svc = SVC(cache_size=1000).fit(Xtr, ytr)
        return {"seconds": time.perf_counter() - t, "accuracy": float(svc.score(Xte, yte)),
                "dual_objective": _svc_objective(svc, ytr)}

    return {"seconds": seconds, "baselines": {"sklearn_svc": ctx.baseline("svc", svc_baseline)},
            "metrics": {"accuracy": _accuracy(model, Xte, yte), "dual_objective": model.dualObjective,
                        "passes": model.passes, "n_sv": len(model.supportIds)},
            "curves": {"objective": [h["objective"] for h in model.trainingHistory if "objective" in h]}}
