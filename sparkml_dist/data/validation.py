"""Checks that run before any work: columns, types, emptiness, NaN/inf, labels, weights.

Schema checks (:func:`check_columns`) need no Spark job. Value checks (NaN/inf counts, label values, negative weights,
empty input) are folded into the single Arrow pass that :func:`sparkml_dist.data.blocks.to_blocks` makes anyway, so
validating costs no extra pass; :func:`validate_dataframe` runs that pass alone for callers that want only the check.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class DataValidationError(ValueError):
    """Input data that an algorithm cannot use; the message names the column (or parameter) and what is wrong."""

    #: the same input fails every attempt the same way: a barrier stage stops at once instead of being retried
    retryable = False


@dataclass
class ColumnSpec:
    """Which columns a job reads and what they must hold."""

    featuresCol: str = "features"
    labelCol: str | None = None
    weightCol: str | None = None
    #: "classes" (integers 0..K-1), "real" (any finite number) or None
    labelKind: str | None = "classes"

    def columns(self) -> list[str]:
        return [c for c in (self.featuresCol, self.labelCol, self.weightCol) if c]


def _type_name(dtype) -> str:
    return dtype.typeName() if hasattr(dtype, "typeName") else str(dtype)


def check_columns(df, spec: ColumnSpec) -> None:
    """Schema-only checks (no Spark job): every column exists and has a usable type."""
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql.types import ArrayType, NumericType

    fields = {f.name: f.dataType for f in df.schema.fields}
    for role, name in (("featuresCol", spec.featuresCol), ("labelCol", spec.labelCol),
                       ("weightCol", spec.weightCol)):
        if not name:
            continue
        if name not in fields:
            raise DataValidationError(
                f"{role}={name!r}: no such column (the DataFrame has: {', '.join(fields) or 'no columns'})")
        dtype = fields[name]
        if role == "featuresCol":
            ok = isinstance(dtype, VectorUDT) or (isinstance(dtype, ArrayType)
                                                  and isinstance(dtype.elementType, NumericType))
            if not ok:
                raise DataValidationError(
                    f"featuresCol={name!r} has type {_type_name(dtype)}; expected a Vector or array<double> "
                    "(assemble numeric columns with pyspark.ml.feature.VectorAssembler)")
        elif not isinstance(dtype, NumericType):
            raise DataValidationError(f"{role}={name!r} has type {_type_name(dtype)}; expected a numeric column")


@dataclass
class ScanStats:
    """What one pass over a partition learned; merged over partitions on the driver."""

    rows: int = 0
    n_features: int | None = None
    feature_nonfinite: int = 0
    feature_nulls: int = 0
    width_mismatch: int = 0
    label_nonfinite: int = 0
    label_nonint: int = 0
    label_negative: int = 0
    label_counts: dict = field(default_factory=dict)
    weight_nonfinite: int = 0
    weight_negative: int = 0
    weight_sum: float = 0.0

    def merge(self, other: ScanStats) -> ScanStats:
        out = ScanStats()
        for name in ("rows", "feature_nonfinite", "feature_nulls", "width_mismatch", "label_nonfinite",
                     "label_nonint", "label_negative", "weight_nonfinite", "weight_negative", "weight_sum"):
            setattr(out, name, getattr(self, name) + getattr(other, name))
        widths = {w for w in (self.n_features, other.n_features) if w is not None}
        out.width_mismatch += 1 if len(widths) > 1 else 0
        out.n_features = max(widths) if widths else None
        out.label_counts = dict(self.label_counts)
        for k, v in other.label_counts.items():
            out.label_counts[k] = out.label_counts.get(k, 0) + v
        return out


def scan_arrays(X, y, w, stats: ScanStats) -> None:
    """Accumulate the value checks of one block into ``stats`` (vectorised)."""
    stats.rows += X.shape[0]
    if X.shape[0]:
        data = X.data if hasattr(X, "tocsr") else X
        stats.feature_nonfinite += int(np.count_nonzero(~np.isfinite(data)))
    if y is not None and len(y):
        finite = np.isfinite(y)
        stats.label_nonfinite += int(np.count_nonzero(~finite))
        yf = y[finite]
        nonint = yf != np.round(yf)
        stats.label_nonint += int(np.count_nonzero(nonint))
        stats.label_negative += int(np.count_nonzero(yf < 0))
        values, counts = np.unique(yf[~nonint], return_counts=True)
        for v, c in zip(values.tolist(), counts.tolist(), strict=False):
            stats.label_counts[v] = stats.label_counts.get(v, 0) + c
    if w is not None and len(w):
        finite = np.isfinite(w)
        stats.weight_nonfinite += int(np.count_nonzero(~finite))
        stats.weight_negative += int(np.count_nonzero(w[finite] < 0))
        stats.weight_sum += float(w[finite].sum())


def raise_for_stats(stats: ScanStats, spec: ColumnSpec) -> None:
    """Turn merged :class:`ScanStats` into the first clear error, or return if the data is usable."""
    if stats.rows == 0:
        raise DataValidationError("the DataFrame is empty: no rows to train on")
    if stats.feature_nulls:
        raise DataValidationError(f"featuresCol={spec.featuresCol!r} has {stats.feature_nulls} null rows")
    if stats.width_mismatch:
        raise DataValidationError(
            f"featuresCol={spec.featuresCol!r}: rows have different numbers of features ({stats.width_mismatch} "
            "mismatching rows or partitions)")
    if stats.feature_nonfinite:
        raise DataValidationError(
            f"featuresCol={spec.featuresCol!r} has {stats.feature_nonfinite} NaN or infinite values")
    if spec.labelCol:
        if stats.label_nonfinite:
            raise DataValidationError(
                f"labelCol={spec.labelCol!r} has {stats.label_nonfinite} null, NaN or infinite values")
        if spec.labelKind == "classes":
            if stats.label_nonint or stats.label_negative:
                raise DataValidationError(
                    f"labelCol={spec.labelCol!r} must hold class indices 0..K-1: {stats.label_nonint} non-integer and "
                    f"{stats.label_negative} negative values (index string labels with StringIndexer)")
            present = sorted(int(k) for k in stats.label_counts)
            missing = sorted(set(range(present[-1] + 1)) - set(present)) if present else []
            if missing:
                raise DataValidationError(
                    f"labelCol={spec.labelCol!r} must hold class indices 0..K-1 with every class present; "
                    f"classes {missing[:10]} have no rows (labels seen: {present[:10]})")
    if spec.weightCol:
        if stats.weight_nonfinite:
            raise DataValidationError(
                f"weightCol={spec.weightCol!r} has {stats.weight_nonfinite} null, NaN or infinite values")
        if stats.weight_negative:
            raise DataValidationError(f"weightCol={spec.weightCol!r} has {stats.weight_negative} negative weights")
        if stats.weight_sum <= 0:
            raise DataValidationError(f"weightCol={spec.weightCol!r}: the weights sum to zero")
