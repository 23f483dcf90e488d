"""Vectorised ``transform`` for the classifiers: one Arrow UDF per batch, no Python object per row.

The features column (a Spark ``Vector``, dense or sparse, or ``array<double>``) arrives as an Arrow array and becomes
one ``(n, d)`` numpy matrix through :func:`sparkml_dist.data.blocks.arrow_to_block`; the model's numpy ``predict`` fills
the output arrays; ``rawPrediction`` / ``probability`` leave the UDF as ``array<double>`` and become ``Vector`` columns
with ``array_to_vector`` on the JVM side (Arrow UDFs cannot return ``VectorUDT``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

#: ``predict(X) -> (raw (n, r), probability (n, k) or None, prediction (n,))``
PredictFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None, np.ndarray]]


def _list_array(matrix: np.ndarray):
    import pyarrow as pa

    n, width = matrix.shape
    offsets = pa.array(np.arange(0, (n + 1) * width, width, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(matrix, dtype=np.float64).ravel()))


def add_prediction_columns(df, predict: PredictFn, featuresCol: str, predictionCol: str,
                           rawPredictionCol: str = "", probabilityCol: str = "", dtype=np.float64):
    """``df`` plus the requested output columns (an empty column name skips that column, as in pyspark.ml)."""
    import pyarrow as pa
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F
    from pyspark.sql.functions import ArrowUDFType, arrow_udf

    from sparkml_dist.data.blocks import arrow_to_block
    from sparkml_dist.data.validation import ColumnSpec, DataValidationError, check_columns
    from sparkml_dist.runtime.session import row_based_arrow_input

    spec = ColumnSpec(featuresCol, None, None, None)
    check_columns(df, spec)
    row_based_arrow_input(df.sparkSession)  # Parquet input: Spark's columnar Arrow path cannot carry the Vector
    np_dtype = np.dtype(dtype)

    def _predict(features):
        batch = pa.RecordBatch.from_arrays([features], names=[featuresCol])
        block, stats = arrow_to_block([batch], spec, np_dtype)
        if stats.feature_nulls:
            raise DataValidationError(f"featuresCol={featuresCol!r} has {stats.feature_nulls} null rows")
        raw, prob, pred = predict(block.X)
        n = len(pred)
        prob_arr = _list_array(prob) if prob is not None else pa.nulls(n, pa.list_(pa.float64()))
        return pa.StructArray.from_arrays([_list_array(raw), prob_arr, pa.array(pred.astype(np.float64))],
                                          names=["raw", "probability", "prediction"])

    # explicit UDF type: postponed (string) annotations cannot be inspected; silence pyspark's nudge about it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        udf = arrow_udf(_predict, "struct<raw: array<double>, probability: array<double>, prediction: double>",
                        ArrowUDFType.SCALAR)

    tmp = "__sparkml_dist_prediction"
    out = df.withColumn(tmp, udf(F.col(featuresCol)))
    if rawPredictionCol:
        out = out.withColumn(rawPredictionCol, array_to_vector(F.col(f"{tmp}.raw")))
    if probabilityCol:
        out = out.withColumn(probabilityCol, array_to_vector(F.col(f"{tmp}.probability")))
    if predictionCol:
        out = out.withColumn(predictionCol, F.col(f"{tmp}.prediction"))
    return out.drop(tmp)
