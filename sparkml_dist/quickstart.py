"""The end-to-end jobs of the foundation: ``generate`` (a synthetic dataset to Parquet), ``quickstart`` and
``diagnose``.

``quickstart`` is the README's main job: it generates Gaussian blobs inside Spark, materialises them as resident
numpy blocks, checks the two distributed engines against each other on a real statistic (per-feature mean and
variance through the MapReduce ``treeReduce`` and through a barrier-stage allreduce), trains k-means on both engines
from the same seed and **fails unless the two models agree** (:func:`check_kmeans_agree`: final cost and centres
within a tight tolerance), then trains AdaBoost on a bundled real dataset, and writes models and metrics atomically.
"""

from __future__ import annotations

import importlib.util
import logging
import time

import numpy as np

from sparkml_dist.runner import JobResult, load_input, register_job

logger = logging.getLogger(__name__)


@register_job("generate")
def generate(spark, cfg: dict) -> JobResult:
    """Generate ``cfg['input']`` and hand it back to be written as Parquet (``output/data``)."""
    df = load_input(spark, cfg.get("input"))
    return JobResult(metrics={"rows": df.count()}, frames={"data": df})


def _moments_mapreduce(blocks) -> tuple[np.ndarray, np.ndarray]:
    n, s, ss = blocks.aggregate(lambda b: (b.n_rows, np.asarray(b.X.sum(axis=0)),
                                           np.asarray((b.X * b.X).sum(axis=0))))
    mean = s / n
    return mean, ss / n - mean ** 2


def _moments_bsp(spark, df, num_tasks: int) -> tuple[np.ndarray, np.ndarray, dict]:
    from sparkml_dist.data.blocks import arrow_to_block, select_for_arrow
    from sparkml_dist.data.validation import ColumnSpec
    from sparkml_dist.runtime.barrier import run_barrier

    spec = ColumnSpec("features", None, None, None)

    def fn(ctx):
        block, _ = arrow_to_block(ctx.batches(), spec)
        d = ctx.allreduce(np.array([block.n_features]), op="max")[0]
        X = block.X if block.n_rows else np.zeros((0, d))
        total = ctx.allreduce(np.concatenate([[X.shape[0]], X.sum(axis=0), (X * X).sum(axis=0)]))
        return total

    results = run_barrier(fn, num_tasks, spark=spark, df=select_for_arrow(df, spec))
    total = results[0]
    d = (len(total) - 1) // 2
    n = total[0]
    mean = total[1:1 + d] / n
    return mean, total[1 + d:] / n - mean ** 2, {"bytes_sent": sum(s["bytes_sent"] for s in results.stats)}


class EnginesDisagreeError(RuntimeError):
    """The MapReduce and BSP engines trained different models from the same data, parameters and seed."""


def check_kmeans_agree(first, second, rtol: float = 1e-6) -> dict[str, float]:
    """Compare two fitted k-means models (e.g. the MapReduce and the BSP engine's); raise if they differ.

    The costs must agree to ``rtol`` (relative) and every centre of one model must have a centre of the other within
    ``rtol`` times the data's scale (the largest centre coordinate); centres are matched one to one (Hungarian), so
    an engine that lists the same centres in another order still agrees. Both engines run the same k-means|| and
    Lloyd steps from the same seed over the same partitions, so anything beyond rounding is a bug.

    Returns
    -------
    dict
        ``cost_relative_difference`` and ``centre_max_abs_difference``.
    """
    from scipy.optimize import linear_sum_assignment

    a, b = np.asarray(first.centers, dtype=np.float64), np.asarray(second.centers, dtype=np.float64)
    cost_a, cost_b = float(first.summary.trainingCost), float(second.summary.trainingCost)
    if a.shape != b.shape:
        raise EnginesDisagreeError(f"the engines found different numbers of centres: {a.shape[0]} and {b.shape[0]}")
    cost_gap = abs(cost_a - cost_b) / max(abs(cost_a), abs(cost_b), 1e-300)
    distance = np.abs(a[:, None, :] - b[None, :, :]).max(axis=2)
    rows, cols = linear_sum_assignment(distance)
    centre_gap = float(distance[rows, cols].max()) if len(rows) else 0.0
    scale = max(1.0, float(np.abs(a).max(initial=0.0)))
    if cost_gap > rtol or centre_gap > rtol * scale:
        raise EnginesDisagreeError(
            f"MapReduce and BSP k-means disagree: costs {cost_a:.6g} and {cost_b:.6g} (relative difference "
            f"{cost_gap:.2e}), centres up to {centre_gap:.3g} apart (tolerance {rtol:g} x {scale:.3g})")
    return {"cost_relative_difference": cost_gap, "centre_max_abs_difference": centre_gap}


@register_job("quickstart")
def quickstart(spark, cfg: dict) -> JobResult:
    from sparkml_dist.data import to_blocks
    from sparkml_dist.runtime.barrier import available_slots

    metrics: dict = {}
    models: dict = {}
    df = load_input(spark, cfg.get("input", {"generator": "blobs", "n_rows": 200_000, "n_features": 16,
                                              "centers": 8, "seed": 0})).cache()
    t = time.perf_counter()
    with to_blocks(df, "features", labelCol="label") as blocks:
        metrics["to_blocks_seconds"] = time.perf_counter() - t
        metrics["rows"] = blocks.num_rows
        metrics["features"] = blocks.n_features
        metrics["partitions"] = blocks.num_partitions
        mean_mr, var_mr = _moments_mapreduce(blocks)
    slots = available_slots(spark)
    mean_bsp, var_bsp, comm = _moments_bsp(spark, df, slots)
    gap = float(max(np.max(np.abs(mean_mr - mean_bsp)), np.max(np.abs(var_mr - var_bsp))))
    metrics["engines_max_abs_difference"] = gap
    metrics["barrier_bytes_sent"] = comm["bytes_sent"]
    if gap > 1e-8 * max(1.0, float(np.max(np.abs(var_mr)))):
        raise RuntimeError(f"MapReduce and BSP engines disagree on the feature moments by {gap}")
    logger.info("engines agree on %d-feature moments (max |diff| %.2e)", metrics["features"], gap)

    params = cfg.get("params", {})
    if importlib.util.find_spec("sparkml_dist.clustering") is not None:
        from sparkml_dist.clustering import KMeans

        k = int(params.get("k", 8))
        for engine in ("mapreduce", "bsp"):
            t = time.perf_counter()
            model = KMeans(k=k, maxIter=int(params.get("maxIter", 10)), seed=1, engine=engine).fit(df)
            metrics[f"kmeans_{engine}_seconds"] = time.perf_counter() - t
            metrics[f"kmeans_{engine}_cost"] = float(model.summary.trainingCost)
            models[f"kmeans_{engine}"] = model
        agreement = check_kmeans_agree(models["kmeans_mapreduce"], models["kmeans_bsp"])
        metrics.update({f"kmeans_engines_{key}": value for key, value in agreement.items()})
        logger.info("engines agree on the k-means model (cost relative difference %.1e)",
                    agreement["cost_relative_difference"])
    if importlib.util.find_spec("sparkml_dist.classification") is not None:
        from pyspark.ml.evaluation import MulticlassClassificationEvaluator

        from sparkml_dist.classification import AdaBoostClassifier
        from sparkml_dist.data.sources import load

        bc = load(spark, "breast_cancer")
        train, test = bc.randomSplit([0.8, 0.2], seed=7)
        t = time.perf_counter()
        ada = AdaBoostClassifier(maxIter=int(params.get("adaboostRounds", 30))).fit(train)
        metrics["adaboost_seconds"] = time.perf_counter() - t
        metrics["adaboost_test_accuracy"] = MulticlassClassificationEvaluator(metricName="accuracy").evaluate(
            ada.transform(test))
        models["adaboost_breast_cancer"] = ada
    df.unpersist()
    return JobResult(metrics=metrics, models=models)


def _executor_jvm() -> dict:
    """Inside a task: the pid and id of the JVM that runs it (walks up from the Python worker)."""
    import os

    pid = os.getppid()
    for _ in range(6):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                argv = fh.read().decode(errors="replace").split("\0")
            with open(f"/proc/{pid}/stat") as fh:
                parent = int(fh.read().split(")")[-1].split()[1])
        except OSError:
            break
        if any(a.endswith("CoarseGrainedExecutorBackend") for a in argv):
            executor_id = argv[argv.index("--executor-id") + 1] if "--executor-id" in argv else "?"
            return {"jvm_pid": pid, "executor_id": executor_id, "python_pid": os.getpid()}
        if any(a.endswith("SparkSubmit") for a in argv):
            return {"jvm_pid": pid, "executor_id": "driver", "python_pid": os.getpid()}
        pid = parent
    return {"jvm_pid": None, "executor_id": "unknown", "python_pid": os.getpid()}


def _executor_count(spark) -> int:
    """Executors registered with the driver right now (the driver itself not counted, except in local mode)."""
    status = spark.sparkContext._jsc.sc().getExecutorMemoryStatus()
    n = int(status.size())
    return n if spark.sparkContext.master.startswith("local") else max(0, n - 1)


def expected_executors(spark) -> int:
    """How many executors this application should get: ``spark.executor.instances`` if set, else one per worker
    of the recorded local standalone cluster when that is the master, else 1."""
    conf = spark.sparkContext.getConf()
    if conf.get("spark.executor.instances", None):
        return int(conf.get("spark.executor.instances"))
    master = spark.sparkContext.master
    if master.startswith("spark://"):
        from sparkml_dist.runtime.cluster import LocalStandaloneCluster

        try:
            cluster = LocalStandaloneCluster.attach()
            if cluster.master_url == master and cluster.state is not None:
                return cluster.state.workers
        except (FileNotFoundError, ValueError, TypeError):
            pass
    return 1


def wait_for_executors(spark, expected: int, timeout: float) -> int:
    """Wait until ``expected`` executors have registered (standalone executors come up one by one after the
    application starts); returns how many there are, with a warning if the timeout passed first."""
    deadline = time.monotonic() + timeout
    count = _executor_count(spark)
    while count < expected and time.monotonic() < deadline:
        time.sleep(0.25)
        count = _executor_count(spark)
    if count < expected:
        logger.warning("only %d of %d expected executors registered within %.0f s; measuring with those", count,
                       expected, timeout)
    return count


@register_job("diagnose")
def diagnose(spark, cfg: dict) -> JobResult:
    """Where does the work run? Executor JVMs of a small job, task slots, and a barrier allreduce across them."""
    import os

    from sparkml_dist.runtime.barrier import available_slots, run_barrier

    wait = float(cfg.get("slot_wait", 60))
    expected = int(cfg.get("executors") or expected_executors(spark))
    executors = wait_for_executors(spark, expected, wait)
    slots = available_slots(spark, wait=wait, at_least=int(cfg.get("min_slots", 1)))
    tasks = int(cfg.get("tasks", max(slots * 2, 2)))
    seen = spark.sparkContext.parallelize(range(tasks), tasks).map(lambda _: _executor_jvm()).collect()
    barrier = run_barrier(lambda ctx: (_executor_jvm(), ctx.allreduce(np.array([1.0, ctx.rank])).tolist()),
                          slots, spark=spark)
    metrics = {
        "master": spark.sparkContext.master,
        "spark_version": spark.version,
        "slots": slots,
        "executors": executors,
        "executors_expected": expected,
        "driver_pid": os.getpid(),
        "task_executors": sorted({(s["executor_id"], s["jvm_pid"]) for s in seen}),
        "barrier_executors": sorted({(r[0]["executor_id"], r[0]["jvm_pid"]) for r in barrier}),
        "barrier_allreduce": barrier[0][1],
        "barrier_seconds": barrier.seconds,
    }
    logger.info("diagnose: %s", metrics)
    return JobResult(metrics=metrics)
