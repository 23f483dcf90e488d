"""spark-submit job of tests/test_engine_faults.py: an undisturbed fit (k-means or AdaBoost), then the same fit while
the test kills an executor or a whole worker (it is told when through a file), then both models as JSON.

    spark-submit --master spark://... fit_under_fault.py ALGORITHM ENGINE OUT_JSON GO_FILE KILLED_FILE
"""

import json
import os
import sys
import threading
import time

from pyspark.sql import SparkSession


def _signal_when_in_the_middle(sc, engine: str, go_file: str) -> None:
    """Write ``go_file`` once the fit is under way: 8 Spark jobs into a MapReduce fit, or 1 s into the barrier
    stage with both ranks running (loading or iterating: either way the whole stage attempt is lost)."""
    tracker = sc.statusTracker()
    first = max(tracker.getActiveJobsIds() or [0])
    running_since = None
    while True:
        active = tracker.getActiveJobsIds()
        if engine == "mapreduce" and active and max(active) >= first + 8:
            break
        if engine == "bsp":
            stages = [tracker.getStageInfo(s) for s in tracker.getActiveStageIds()]
            busy = any(s is not None and s.numActiveTasks >= 2 for s in stages)
            running_since = (running_since or time.monotonic()) if busy else None
            if running_since and time.monotonic() - running_since > 1.0:
                break
        time.sleep(0.02)
    with open(go_file, "w") as fh:
        fh.write(str(time.time()))


def _kmeans(spark, engine: str):
    from sparkml_dist.clustering import KMeans
    from sparkml_dist.data.generators import make_blobs

    rows = 200_000 if engine == "mapreduce" else 400_000
    # Spark-native rows (a range, numpy per partition): the lineage has no shuffle, so a partition recomputed on
    # another executor has the same rows in the same order (a shuffle read's row order depends on fetch timing)
    df = make_blobs(spark, rows, 16, centers=8, cluster_std=6.0, seed=3, num_partitions=2)
    params = dict(k=8, seed=5, maxIter=40, tol=0.0, engine=engine)

    def fit() -> dict:
        model = KMeans(**params).fit(df)
        return {"centers": model.centers.tolist(), "cost": model.summary.trainingCost,
                "iterations": model.summary.numIter}

    return fit


def _adaboost(spark, engine: str):
    from sparkml_dist.classification import AdaBoostClassifier
    from sparkml_dist.data.generators import make_hastie_10_2

    df = make_hastie_10_2(spark, 200_000, seed=3, num_partitions=2)  # Spark-native rows, as for k-means
    params = dict(maxIter=30, maxBins=64, engine=engine, seed=0)

    def fit() -> dict:
        model = AdaBoostClassifier(**params).fit(df)
        return {"stumps": model.stumps, "alpha": model.estimatorWeights.tolist(),
                "error": model.estimatorErrors.tolist(), "iterations": len(model.stumps)}

    return fit


FITS = {"kmeans": _kmeans, "adaboost": _adaboost}


def main() -> None:
    algorithm, engine, out, go_file, killed_file = sys.argv[1:6]
    spark = SparkSession.builder.getOrCreate()
    sc = spark.sparkContext
    deadline = time.monotonic() + 120
    while sc._jsc.sc().getExecutorMemoryStatus().size() < 3 and time.monotonic() < deadline:  # driver + 2
        time.sleep(0.2)
    fit = FITS[algorithm](spark, engine)
    reference = fit()
    watcher = threading.Thread(target=_signal_when_in_the_middle, args=(sc, engine, go_file), daemon=True)
    watcher.start()
    start = time.monotonic()
    disturbed = fit()
    report = {
        "reference": reference, "disturbed": disturbed,
        "go_sent": os.path.exists(go_file), "killed_during_fit": os.path.exists(killed_file),
        "fit_seconds": time.monotonic() - start,
        "executors_at_end": sc._jsc.sc().getExecutorMemoryStatus().size() - 1,
    }
    with open(out, "w") as fh:
        json.dump(report, fh)
    spark.stop()


if __name__ == "__main__":
    main()
