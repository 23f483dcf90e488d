"""Bundled datasets, file sources, Spark-native generators and atomic outputs."""

import os

import numpy as np
import pytest
import sklearn.datasets

from sparkml_dist.data.generators import make_blobs, make_classification, make_hastie_10_2
from sparkml_dist.data.io import atomic_path, write_dataframe, write_json
from sparkml_dist.data.sources import BUNDLED, bundled_arrays, load

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _xy(df):
    pdf = df.toPandas()
    return np.stack(pdf["features"].map(lambda v: v.toArray())), pdf["label"].to_numpy()


@pytest.mark.parametrize("name", ["iris", "wine", "breast_cancer", "digits"])
def test_bundled_datasets_are_scikit_learns(spark, name):
    X, y = _xy(load(spark, name))
    Xr, yr = getattr(sklearn.datasets, BUNDLED[name][0])(return_X_y=True)
    np.testing.assert_array_equal(X, Xr)
    np.testing.assert_array_equal(y, yr)


def test_csv_libsvm_and_parquet_paths(spark, tmp_path):
    X, y = _xy(load(spark, os.path.join(REPO, "data", "iris.csv")))
    Xr, yr = bundled_arrays("iris")
    np.testing.assert_allclose(X, Xr)
    np.testing.assert_array_equal(y, yr)

    sv = load(spark, os.path.join(REPO, "data", "sample.libsvm"))
    rows = sv.collect()
    assert len(rows) == 6 and rows[0].features.size == 5 and rows[0].label in (0.0, 1.0)

    out = str(tmp_path / "iris.parquet")
    write_dataframe(load(spark, "iris"), out)
    X2, y2 = _xy(load(spark, out))
    order = lambda X: X[np.lexsort(X.T[::-1])]  # noqa: E731 - Parquet part files come back in any order
    np.testing.assert_array_equal(order(np.column_stack([X2, y2])), order(np.column_stack([Xr, yr])))


def test_unknown_sources_are_clear_errors(spark):
    with pytest.raises(FileNotFoundError, match="'nosuch' is neither a bundled dataset"):
        load(spark, "nosuch")
    with pytest.raises(ValueError, match="labelCol='y': no such column"):
        load(spark, os.path.join(REPO, "data", "iris.csv"), labelCol="y")


def test_generators_are_deterministic_and_partition_local(spark):
    df, centers = make_blobs(spark, 10_000, 3, centers=4, cluster_std=0.1, seed=5, num_partitions=3,
                             return_centers=True)
    assert df.rdd.getNumPartitions() == 3
    sizes = df.rdd.mapPartitions(lambda it: [sum(1 for _ in it)]).collect()
    assert sizes == [3334, 3333, 3333]
    X, y = _xy(df)
    X2, y2 = _xy(make_blobs(spark, 10_000, 3, centers=4, cluster_std=0.1, seed=5, num_partitions=3))
    np.testing.assert_array_equal(X, X2)
    X3, _ = _xy(make_blobs(spark, 10_000, 3, centers=4, cluster_std=0.1, seed=6, num_partitions=3))
    assert not np.allclose(X, X3)
    # each row lies next to its own blob's centre
    assert np.max(np.linalg.norm(X - centers[y.astype(int)], axis=1)) < 1.0
    assert set(np.unique(y)) == {0, 1, 2, 3}


def test_hastie_and_classification(spark):
    X, y = _xy(make_hastie_10_2(spark, 4000, seed=1, num_partitions=2))
    assert X.shape == (4000, 10)
    np.testing.assert_array_equal(y, ((X ** 2).sum(axis=1) > 9.34).astype(float))
    assert 0.4 < y.mean() < 0.6  # the median of chi2(10) is 9.34
    X, y = _xy(make_classification(spark, 6000, n_features=8, n_informative=3, n_redundant=2, n_classes=3,
                                   seed=2, num_partitions=2))
    assert X.shape == (6000, 8) and set(np.unique(y)) == {0, 1, 2}
    # redundant features are exact linear combinations of the informative ones
    coef, *_ = np.linalg.lstsq(X[:, :3], X[:, 3:5], rcond=None)
    np.testing.assert_allclose(X[:, :3] @ coef, X[:, 3:5], atol=1e-8)


def test_generator_argument_errors(spark):
    with pytest.raises(ValueError, match="n_rows must be >= 1"):
        make_blobs(spark, 0)
    with pytest.raises(ValueError, match=r"centers must have shape \(k, 2\)"):
        make_blobs(spark, 10, 2, centers=np.zeros((3, 5)))


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "result"
    with pytest.raises(RuntimeError, match="job failed"):
        with atomic_path(str(target)) as tmp:
            os.makedirs(tmp)
            open(os.path.join(tmp, "half.txt"), "w").close()
            raise RuntimeError("job failed")
    assert os.listdir(tmp_path) == []
    write_json(str(tmp_path / "m.json"), {"a": np.float64(1.5)})
    write_json(str(tmp_path / "m.json"), {"a": 2})  # replaces atomically
    assert open(tmp_path / "m.json").read().strip().endswith("}")
    assert sorted(os.listdir(tmp_path)) == ["m.json"]
    with pytest.raises(FileExistsError, match="exists"):
        with atomic_path(str(tmp_path / "m.json"), overwrite=False):
            pass
    with pytest.raises(FileNotFoundError):  # the body wrote nothing: the old output is put back, not lost
        with atomic_path(str(tmp_path / "m.json")):
            pass
    assert sorted(os.listdir(tmp_path)) == ["m.json"] and '"a": 2' in open(tmp_path / "m.json").read()
