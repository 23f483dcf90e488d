"""Both engines give the same classification model when there are more partitions than task slots: 6 partitions on
``local[2]``, where a BSP rank hosts three whole partitions. The site algorithms (lazarevic, pl: a site per
partition; dpsvm: a network node per partition) see the same sites on both engines -- six of them, not two."""

from __future__ import annotations

import numpy as np
import pytest

from sparkml_dist.classification import AdaBoostClassifier, CascadeSVC
from sparkml_dist.data.sources import bundled_arrays, from_numpy


@pytest.fixture(scope="module")
def six_partitions(spark):
    X, y = bundled_arrays("breast_cancer")
    df = from_numpy(spark, X, y, num_partitions=6).cache()
    assert df.rdd.getNumPartitions() == 6 and spark.sparkContext.defaultParallelism == 2
    return X, df


@pytest.mark.parametrize("algorithm", ["lazarevic", "pl"])
def test_site_boosting_same_on_both_engines(six_partitions, algorithm):
    X, df = six_partitions
    mr, bsp = (AdaBoostClassifier(algorithm=algorithm, maxIter=6, maxBins=32, seed=0, engine=e).fit(df)
               for e in ("mapreduce", "bsp"))
    np.testing.assert_allclose(bsp.estimatorWeights, mr.estimatorWeights, rtol=0, atol=1e-9)
    assert [(s["feature"], s["threshold"], s["hypothesis"]) for s in bsp.stumps] == \
        [(s["feature"], s["threshold"], s["hypothesis"]) for s in mr.stumps]
    assert len(mr.stumps) == 6 * len(mr.estimatorWeights)  # six sites, one stump each per merged hypothesis
    np.testing.assert_array_equal(bsp.predict_numpy(X)[2], mr.predict_numpy(X)[2])


def test_dpsvm_same_on_both_engines(spark):
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=1200, n_features=6, n_informative=3, class_sep=1.0, random_state=2)
    df = from_numpy(spark, X, y.astype(float), num_partitions=6)
    mr, bsp = (CascadeSVC(mode="dpsvm", gamma=0.15, engine=e).fit(df) for e in ("mapreduce", "bsp"))
    assert mr.converged and bsp.converged and bsp.passes == mr.passes
    np.testing.assert_array_equal(np.sort(bsp.supportIds), np.sort(mr.supportIds))
    assert bsp.dualObjective == pytest.approx(mr.dualObjective, rel=1e-9)
    assert mr.trainingHistory[0]["rows_trained"] == 1200  # round 1: every node trains its own partition
