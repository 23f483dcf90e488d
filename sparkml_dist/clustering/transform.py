"""Vectorised ``Model.transform``: nearest-centre assignment as an Arrow UDF (no Python object per row).

The feature column (``Vector`` or ``array<numeric>``) is turned into ``array<double>`` by Spark
(``vector_to_array``), arrives in the UDF as an Arrow ``ListArray``, and becomes one ``n x d`` numpy view by
flattening its values buffer; the assignment is one chunked GEMM (:func:`~sparkml_dist.clustering.kernels.predict`).
Null feature rows get a null prediction.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa  # module level: the Arrow UDFs' type hints are resolved against this module's globals


def _as_double_array(df, featuresCol: str):
    from pyspark.ml.functions import vector_to_array
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, DoubleType

    from sparkml_dist.data.validation import ColumnSpec, check_columns
    from sparkml_dist.runtime.session import row_based_arrow_input

    check_columns(df, ColumnSpec(featuresCol=featuresCol, labelKind=None))
    row_based_arrow_input(df.sparkSession)  # Parquet input: Spark's columnar Arrow path cannot carry the Vector
    dtype = df.schema[featuresCol].dataType
    if isinstance(dtype, VectorUDT):
        return vector_to_array(F.col(featuresCol), "float64")
    return F.col(featuresCol).cast(ArrayType(DoubleType()))


def _to_matrix(arr, d: int, featuresCol: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Arrow list array -> (valid rows as n x d float64, validity mask or None)."""
    import pyarrow.compute as pc

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    valid = None
    if arr.null_count:
        valid = arr.is_valid().to_numpy(zero_copy_only=False)
        arr = arr.filter(pc.is_valid(arr))
    lengths = arr.value_lengths().to_numpy(zero_copy_only=False)
    if len(lengths) and (lengths.min() != d or lengths.max() != d):
        bad = int(lengths[lengths != d][0])
        raise ValueError(f"featuresCol={featuresCol!r}: a row has {bad} features but the model has {d}")
    flat = arr.flatten().to_numpy(zero_copy_only=False)
    return np.asarray(flat, dtype=np.float64).reshape(len(arr), d), valid


def _expand(values: np.ndarray, valid: np.ndarray | None, pa_type):
    if valid is None:
        return pa.array(values, type=pa_type)
    full = np.zeros((len(valid),) + values.shape[1:], dtype=values.dtype)
    full[valid] = values
    return pa.array(full, type=pa_type, mask=~valid)


def with_assignments(df, featuresCol: str, predictionCol: str, centers: np.ndarray, cosine: bool = False):
    """``df`` plus an ``int`` column ``predictionCol``: the index of the closest centre (ties: lowest index)."""
    from pyspark.sql.functions import arrow_udf

    from sparkml_dist.clustering import kernels

    C = np.ascontiguousarray(centers, dtype=np.float64)
    C = kernels.unit_rows(C) if cosine else C
    d = C.shape[1]

    @arrow_udf("int")
    def assign(arr: pa.Array) -> pa.Array:
        X, valid = _to_matrix(arr, d, featuresCol)
        return _expand(kernels.predict(X, C, cosine).astype(np.int32), valid, pa.int32())

    return df.withColumn(predictionCol, assign(_as_double_array(df, featuresCol)))


def with_memberships(df, featuresCol: str, membershipCol: str, centers: np.ndarray, m: float):
    """``df`` plus an ``array<double>`` column of fuzzy c-means memberships to each centre."""
    from pyspark.sql.functions import arrow_udf

    from sparkml_dist.clustering import kernels

    V = np.ascontiguousarray(centers, dtype=np.float64)
    d, c = V.shape[1], V.shape[0]

    @arrow_udf("array<double>")
    def member(arr: pa.Array) -> pa.Array:
        X, valid = _to_matrix(arr, d, featuresCol)
        U = kernels.memberships(kernels.sq_distances(X, np.einsum("ij,ij->i", X, X), V), m)
        if valid is not None:
            full = np.zeros((len(valid), c))
            full[valid] = U
            U = full
        offsets = pa.array(np.arange(0, (len(U) + 1) * c, c, dtype=np.int32))
        out = pa.ListArray.from_arrays(offsets, pa.array(U.ravel()))
        if valid is not None:
            out = pa.ListArray.from_arrays(offsets, pa.array(U.ravel()), mask=pa.array(~valid))
        return out

    return df.withColumn(membershipCol, member(_as_double_array(df, featuresCol)))
