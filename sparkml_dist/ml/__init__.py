"""Shared pyspark.ml plumbing for the estimators of this package (persistence of fitted arrays)."""

from sparkml_dist.ml.persistence import ArrayModelReader, ArrayModelWriter, ArrayPersistable

__all__ = ["ArrayModelReader", "ArrayModelWriter", "ArrayPersistable"]
