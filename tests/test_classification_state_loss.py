"""Per-partition state of the classifiers survives its loss: after every pass the state files beside each block
are deleted (what a lost executor does to them), and the fit must give the model of an undisturbed run.

AdaBoost's bins and sample weights are :class:`~sparkml_dist.engine.RebuildableState` (replayed from the rows and
the rounds the driver booked); the cascade's scan state is a cache recomputed in full from the current top solution.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from pyspark import cloudpickle

from sparkml_dist.classification.boosting import fit_adaboost
from sparkml_dist.classification.cascade import fit_svm
from sparkml_dist.data.blocks import to_blocks
from sparkml_dist.data.sources import bundled_arrays, from_numpy
from sparkml_dist.engine import MapReduceData

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # executors cannot import this test module


def _lose_state(block) -> int:
    lost = 0
    for name in os.listdir(block.path):
        if name.startswith("state_"):
            os.remove(os.path.join(block.path, name))
            lost += 1
    return lost


class LossyData(MapReduceData):
    """MapReduce data whose partitions lose their state files after every pass."""

    lost = 0  # state files deleted so far

    def _lose(self):
        self.lost += sum(self.blocks.map(_lose_state))

    def sum(self, fn, *args):
        out = super().sum(fn, *args)
        self._lose()
        return out

    def reduce(self, fn, *args, op="sum"):
        out = super().reduce(fn, *args, op=op)
        self._lose()
        return out

    def gather(self, fn, *args):
        out = super().gather(fn, *args)
        self._lose()
        return out


@pytest.mark.parametrize("algorithm", ["exact", "lazarevic"])
def test_adaboost_weights_rebuilt_after_state_loss(spark, algorithm):
    X, y = bundled_arrays("breast_cancer")
    df = from_numpy(spark, X, y, num_partitions=3)
    with to_blocks(df, "features", "label", dtype=np.float32) as blocks:
        steady = fit_adaboost(MapReduceData(blocks), algorithm, 4, 1.0, 32, 0)
        lossy_data = LossyData(blocks)
        lossy = fit_adaboost(lossy_data, algorithm, 4, 1.0, 32, 0)
    assert lossy_data.lost >= 3 * 4  # every partition lost its bins and weights after the passes
    assert len(steady.alpha) == 4
    np.testing.assert_array_equal(lossy.alpha, steady.alpha)
    np.testing.assert_array_equal(lossy.feature, steady.feature)
    np.testing.assert_array_equal(lossy.threshold, steady.threshold)


def test_cascade_scan_rebuilt_after_state_loss(spark):
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=2000, n_features=6, n_informative=3, class_sep=1.0, random_state=3)
    df = from_numpy(spark, X, y.astype(float), num_partitions=2)
    kernel = {"kernel": "rbf", "gamma": "scale", "degree": 3, "coef0": 0.0}
    solver = {"C": 1.0, "cache_size": 200.0, "max_iter": -1, "kernel_memory": 512 * 2**20, "leaf_size": 500}
    with to_blocks(df, "features", "label", dtype=np.float64) as blocks:
        steady, _, _ = fit_svm(MapReduceData(blocks), "cascade", kernel, solver, 5, 1e-3, "ring")
        lossy, _, _ = fit_svm(LossyData(blocks), "cascade", kernel, solver, 5, 1e-3, "ring")
    assert steady.passes >= 3  # at least two scans: the second one would have used the stored values
    assert lossy.passes == steady.passes and lossy.converged == steady.converged
    assert lossy.solution.objective == pytest.approx(steady.solution.objective, rel=1e-9)
    np.testing.assert_array_equal(np.sort(lossy.solution.support_ids), np.sort(steady.solution.support_ids))
