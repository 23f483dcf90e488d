"""Spark-native synthetic datasets: every partition generates its own rows with numpy.

Rows never pass through the driver: a ``spark.range(numPartitions)`` seed DataFrame is mapped with ``mapInArrow`` and
partition ``p`` draws its rows from ``numpy.random.default_rng([seed, p])``, in chunks, so 10M+ rows cost the driver
nothing and the output is deterministic for a given ``(seed, numPartitions)``. Shared structure (cluster centres, the
class-generating hypercube) is drawn once on the driver from the seed and shipped in the closure.

All generators return a DataFrame with a ``features`` vector column and a ``label`` column (class indices 0..K-1),
like :func:`sparkml_dist.data.sources.load`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

_CHUNK = 65536


def _split(n_rows: int, parts: int, p: int) -> tuple[int, int]:
    base, extra = divmod(n_rows, parts)
    start = p * base + min(p, extra)
    return start, start + base + (1 if p < extra else 0)


def _generate(spark, n_rows: int, n_features: int, num_partitions: int | None, seed: int,
              draw: Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]):
    """Run ``draw(rng, n) -> (X, y)`` on every partition and return a ``features``/``label`` DataFrame."""
    from pyspark.ml.functions import array_to_vector

    if n_rows < 1:
        raise ValueError(f"n_rows must be >= 1, got {n_rows}")
    if n_features < 1:
        raise ValueError(f"n_features must be >= 1, got {n_features}")
    parts = int(num_partitions or spark.sparkContext.defaultParallelism)
    if parts < 1:
        raise ValueError(f"num_partitions must be >= 1, got {parts}")
    parts = min(parts, n_rows)

    def gen(batches):
        import pyarrow as pa

        for batch in batches:
            for p in batch.column(0).to_numpy():
                start, end = _split(n_rows, parts, int(p))
                rng = np.random.default_rng([seed, int(p)])
                for lo in range(start, end, _CHUNK):
                    n = min(_CHUNK, end - lo)
                    X, y = draw(rng, n)
                    values = pa.array(np.ascontiguousarray(X, dtype=np.float64).ravel())
                    offsets = pa.array(np.arange(0, (n + 1) * n_features, n_features, dtype=np.int32))
                    yield pa.RecordBatch.from_arrays(
                        [pa.ListArray.from_arrays(offsets, values), pa.array(y.astype(np.int64))],
                        names=["x", "label"])

    seeds = spark.range(0, parts, 1, parts)
    out = seeds.mapInArrow(gen, "x array<double>, label long")
    return out.select(array_to_vector(out["x"]).alias("features"), out["label"].cast("double").alias("label"))


def make_blobs(spark, n_rows: int = 100_000, n_features: int = 2, centers: int | np.ndarray = 3,
               cluster_std: float = 1.0, center_box: tuple[float, float] = (-10.0, 10.0), seed: int = 0,
               num_partitions: int | None = None, return_centers: bool = False):
    """Isotropic Gaussian blobs (scikit-learn's ``make_blobs``); ``label`` is the blob index."""
    rng = np.random.default_rng(seed)
    if isinstance(centers, (int, np.integer)):
        if centers < 1:
            raise ValueError(f"centers must be >= 1, got {centers}")
        C = rng.uniform(center_box[0], center_box[1], size=(int(centers), n_features))
    else:
        C = np.asarray(centers, dtype=np.float64)
        if C.ndim != 2 or C.shape[1] != n_features:
            raise ValueError(f"centers must have shape (k, {n_features}), got {C.shape}")
    k = C.shape[0]

    def draw(r, n):
        y = r.integers(0, k, size=n)
        return C[y] + r.standard_normal((n, n_features)) * cluster_std, y

    df = _generate(spark, n_rows, n_features, num_partitions, seed, draw)
    return (df, C) if return_centers else df


def make_classification(spark, n_rows: int = 100_000, n_features: int = 20, n_informative: int = 2,
                        n_redundant: int = 2, n_classes: int = 2, n_clusters_per_class: int = 2,
                        class_sep: float = 1.0, flip_y: float = 0.01, seed: int = 0,
                        num_partitions: int | None = None):
    """scikit-learn's ``make_classification`` design: Gaussian clusters on hypercube vertices, redundant linear
    combinations, noise features and ``flip_y`` label noise (the structure is drawn on the driver from ``seed``)."""
    if n_informative + n_redundant > n_features:
        raise ValueError("n_informative + n_redundant must be <= n_features")
    if n_classes * n_clusters_per_class > 2 ** n_informative:
        raise ValueError("n_classes * n_clusters_per_class must be <= 2**n_informative")
    rng = np.random.default_rng(seed)
    n_clusters = n_classes * n_clusters_per_class
    vertices = np.array([[(i >> b) & 1 for b in range(n_informative)] for i in
                         rng.permutation(2 ** n_informative)[:n_clusters]], dtype=np.float64)
    centroids = (2 * vertices - 1) * class_sep
    centroids *= 2 * rng.uniform(size=(n_clusters, 1))
    transforms = 2 * rng.uniform(size=(n_clusters, n_informative, n_informative)) - 1
    redundant = 2 * rng.uniform(size=(n_informative, n_redundant)) - 1
    n_noise = n_features - n_informative - n_redundant

    def draw(r, n):
        cluster = r.integers(0, n_clusters, size=n)
        informative = np.einsum("ni,nij->nj", r.standard_normal((n, n_informative)), transforms[cluster])
        informative += centroids[cluster]
        X = np.hstack([informative, informative @ redundant, r.standard_normal((n, n_noise))])
        y = cluster % n_classes
        flip = r.uniform(size=n) < flip_y
        y[flip] = r.integers(0, n_classes, size=int(flip.sum()))
        return X, y

    return _generate(spark, n_rows, n_features, num_partitions, seed, draw)


def make_hastie_10_2(spark, n_rows: int = 100_000, seed: int = 0, num_partitions: int | None = None):
    """Hastie et al. 10.2: ten standard normals, ``label = 1`` iff the sum of squares exceeds 9.34 (else 0)."""

    def draw(r, n):
        X = r.standard_normal((n, 10))
        return X, ((X ** 2).sum(axis=1) > 9.34).astype(np.int64)

    return _generate(spark, n_rows, 10, num_partitions, seed, draw)


GENERATORS = {"blobs": make_blobs, "classification": make_classification, "hastie_10_2": make_hastie_10_2}
