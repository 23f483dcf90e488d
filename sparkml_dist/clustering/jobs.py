"""Jobs ``kmeans``, ``fuzzy_cmeans`` and ``consensus`` for the runner (``sparkml-dist run kmeans`` /
``spark-submit jobs/train_kmeans.py``, ``jobs/train_fuzzy.py``, ``jobs/train_consensus.py``).

Config (``conf/jobs/kmeans.yaml`` etc.)::

    input: {generator: blobs, n_rows: 20000, n_features: 8, centers: 5, seed: 0, num_partitions: 2}
    params: {k: 5, maxIter: 20, engine: mapreduce}     # the estimator's camelCase Params
    output: out/kmeans

Outputs (written atomically by the harness): ``model/`` (the fitted model, ``Model.load``-able),
``predictions/`` (Parquet: ``label`` if the input has one, and ``prediction``) and ``metrics.json`` (the training
summary, plus the adjusted Rand index against ``label`` when the input has labels).
"""

from __future__ import annotations

import logging
import time

from sparkml_dist.runner import JobResult, load_input, register_job

logger = logging.getLogger(__name__)


def _fit_and_report(spark, cfg: dict, estimator) -> JobResult:
    df = load_input(spark, cfg.get("input"))
    start = time.perf_counter()
    model = estimator.fit(df)
    fit_seconds = time.perf_counter() - start
    keep = [c for c in ("label",) if c in df.columns]
    predictions = model.transform(df).select(*keep, model.getPredictionCol())
    summary = model.summary.asDict()
    times = summary.get("iterationTimes") or []
    metrics = {"fit_seconds": fit_seconds, "params": dict(cfg.get("params", {})), "summary": summary,
               "k": summary["k"], "rows": df.count(),
               "median_iteration_seconds": sorted(times)[len(times) // 2] if times else None}
    if keep:
        from sklearn.metrics import adjusted_rand_score

        rows = predictions.collect()
        metrics["adjusted_rand_index"] = float(adjusted_rand_score([r[0] for r in rows], [r[1] for r in rows]))
    logger.info("%s: k=%s, fit %.2fs%s", type(estimator).__name__, summary["k"], fit_seconds,
                f", ARI {metrics['adjusted_rand_index']:.4f}" if keep else "")
    return JobResult(metrics=metrics, models={"model": model}, frames={"predictions": predictions})


@register_job("kmeans")
def run_kmeans(spark, cfg: dict) -> JobResult:
    """Train :class:`~sparkml_dist.clustering.KMeans`; metrics: cost, inertia, iterations, times, bytes."""
    from sparkml_dist.clustering import KMeans

    result = _fit_and_report(spark, cfg, KMeans(**cfg.get("params", {})))
    result.metrics.update(centers=result.models["model"].centers.tolist())
    return result


@register_job("fuzzy_cmeans")
def run_fuzzy_cmeans(spark, cfg: dict) -> JobResult:
    """Train :class:`~sparkml_dist.clustering.FuzzyCMeans`; metrics: chosen k, Xie-Beni curve, objective."""
    from sparkml_dist.clustering import FuzzyCMeans

    result = _fit_and_report(spark, cfg, FuzzyCMeans(**cfg.get("params", {})))
    result.metrics.update(centers=result.models["model"].centers.tolist())
    return result


@register_job("consensus")
def run_consensus(spark, cfg: dict) -> JobResult:
    """Train :class:`~sparkml_dist.clustering.ConsensusClustering`; metrics: site and global k, Xie-Beni curve."""
    from sparkml_dist.clustering import ConsensusClustering

    result = _fit_and_report(spark, cfg, ConsensusClustering(**cfg.get("params", {})))
    model = result.models["model"]
    result.metrics.update(centers=model.centers.tolist(), local_k=model.localK())
    return result
