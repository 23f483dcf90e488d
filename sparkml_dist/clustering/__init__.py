"""Distributed clustering as ``pyspark.ml`` estimators: k-means, fuzzy c-means (+ Xie-Beni), consensus clustering.

Two engines run the same algorithms (``engine="mapreduce"`` or ``"bsp"``, one launch path in
:mod:`sparkml_dist.engine`); the per-partition numerics live in :mod:`.kernels`.
"""

from sparkml_dist.clustering.consensus import ConsensusClustering, ConsensusClusteringModel
from sparkml_dist.clustering.fuzzy import FuzzyCMeans, FuzzyCMeansModel, FuzzyCMeansSummary
from sparkml_dist.clustering.kmeans import KMeans, KMeansModel, KMeansSummary

__all__ = ["ConsensusClustering", "ConsensusClusteringModel", "FuzzyCMeans", "FuzzyCMeansModel", "FuzzyCMeansSummary",
           "KMeans", "KMeansModel", "KMeansSummary"]
