"""Where data comes from: bundled real datasets by name, or Parquet / CSV / LibSVM paths.

Every source returns a DataFrame with a ``features`` vector column and a numeric ``label`` column.
The bundled datasets are the real ones scikit-learn ships inside its wheel (no download):

=================  ======  ========  =======  ==============================================
name               rows    features  classes  source
=================  ======  ========  =======  ==============================================
``iris``           150     4         3        Fisher 1936 (UCI)
``wine``           178     13        3        Forina et al. (UCI)
``breast_cancer``  569     30        2        Wisconsin Diagnostic Breast Cancer (UCI)
``digits``         1797    64        10       UCI optical recognition of handwritten digits
``diabetes``       442     10        (real)   Efron et al. 2004 (regression target)
=================  ======  ========  =======  ==============================================
"""

from __future__ import annotations

import os

import numpy as np

BUNDLED = {
    "iris": ("load_iris", "classes"),
    "wine": ("load_wine", "classes"),
    "breast_cancer": ("load_breast_cancer", "classes"),
    "digits": ("load_digits", "classes"),
    "diabetes": ("load_diabetes", "real"),
}


def bundled_arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` of a bundled dataset as numpy arrays (the same data :func:`load` returns)."""
    import sklearn.datasets

    if name not in BUNDLED:
        raise ValueError(f"unknown dataset {name!r}; bundled: {', '.join(sorted(BUNDLED))}")
    X, y = getattr(sklearn.datasets, BUNDLED[name][0])(return_X_y=True)
    return np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)


def from_numpy(spark, X: np.ndarray, y: np.ndarray | None = None, num_partitions: int | None = None,
               extra: dict[str, np.ndarray] | None = None):
    """A ``features``/``label`` DataFrame from in-memory arrays (through Arrow, no per-row objects)."""
    import pyarrow as pa
    from pyspark.ml.functions import array_to_vector

    X = np.ascontiguousarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got shape {X.shape}")
    n, d = X.shape
    cols = {"x": pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), d)}
    if y is not None:
        if len(y) != n:
            raise ValueError(f"y has {len(y)} rows but X has {n}")
        cols["label"] = pa.array(np.asarray(y, dtype=np.float64))
    for key, arr in (extra or {}).items():
        cols[key] = pa.array(np.asarray(arr))
    table = pa.table(cols)
    # FixedSizeList -> list for Spark's Arrow reader
    table = table.set_column(0, "x", table.column("x").cast(pa.list_(pa.float64())))
    df = spark.createDataFrame(table)  # straight from Arrow: NaN stays NaN (a pandas round trip makes it null)
    if num_partitions:
        df = df.repartition(num_partitions) if num_partitions != df.rdd.getNumPartitions() else df
    out = df.select(array_to_vector(df["x"]).alias("features"), *[c for c in df.columns if c != "x"])
    return out


def _assemble(df, labelCol: str):
    from pyspark.ml.feature import VectorAssembler
    from pyspark.sql.types import NumericType

    if labelCol not in df.columns:
        raise ValueError(f"labelCol={labelCol!r}: no such column (columns: {', '.join(df.columns)})")
    numeric = [f.name for f in df.schema.fields if isinstance(f.dataType, NumericType) and f.name != labelCol]
    skipped = [c for c in df.columns if c not in numeric and c != labelCol]
    if not numeric:
        raise ValueError("no numeric feature columns besides the label")
    assembler = VectorAssembler(inputCols=numeric, outputCol="features", handleInvalid="keep")
    out = assembler.transform(df).select("features", df[labelCol].cast("double").alias("label"))
    if skipped:
        import logging

        logging.getLogger(__name__).warning("non-numeric columns left out of features: %s", ", ".join(skipped))
    return out


def load(spark, name_or_path: str, labelCol: str = "label", fmt: str | None = None,
         num_partitions: int | None = None):
    """Load a bundled dataset by name, or a Parquet / CSV (with header) / LibSVM path.

    Parquet and CSV files whose features are separate numeric columns are assembled into ``features``; a Parquet file
    that already has a ``features`` vector column is returned as it is.
    """
    if name_or_path in BUNDLED:
        X, y = bundled_arrays(name_or_path)
        return from_numpy(spark, X, y, num_partitions=num_partitions)
    path = name_or_path
    if "://" not in path and not os.path.exists(path):
        raise FileNotFoundError(f"{path!r} is neither a bundled dataset ({', '.join(sorted(BUNDLED))}) nor an "
                                "existing path")
    if fmt is None:
        lower = path.lower().rstrip("/")
        if lower.endswith(".csv"):
            fmt = "csv"
        elif lower.endswith((".libsvm", ".svm", ".svmlight", ".txt")):
            fmt = "libsvm"
        else:
            fmt = "parquet"
    if fmt == "csv":
        df = _assemble(spark.read.csv(path, header=True, inferSchema=True), labelCol)
    elif fmt == "libsvm":
        df = spark.read.format("libsvm").load(path)
        df = df.select("features", df["label"].alias("label"))
    elif fmt == "parquet":
        raw = spark.read.parquet(path)
        if "features" in raw.columns:
            if labelCol not in raw.columns:
                raise ValueError(f"labelCol={labelCol!r}: no such column in {path}")
            df = raw.select("features", raw[labelCol].cast("double").alias("label"))
        else:
            df = _assemble(raw, labelCol)
    else:
        raise ValueError(f"unknown format {fmt!r}: expected parquet, csv or libsvm")
    if num_partitions:
        df = df.repartition(num_partitions)
    return df
