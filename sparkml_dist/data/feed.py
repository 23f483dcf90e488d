"""DataFrame -> torch feed, streamed per partition: each rank turns its own partition's Arrow batches into tensors.

Two halves:

* on the driver, :func:`feed_frame` checks the columns (before any Spark job: missing or non-numeric columns raise
  :class:`~sparkml_dist.data.validation.DataValidationError` naming the column) and selects them in an Arrow-friendly
  layout: ML vectors become ``array<float>`` through ``vector_to_array`` (a JVM expression, so no Python UDF) and
  ``double`` becomes ``float`` unless ``dtype="float64"`` -- the same defaults as petastorm's converter;
* on each rank, :func:`arrow_arrays` turns the partition's ``RecordBatch`` es into one numpy array per column
  (scalar columns -> ``(n,)``, fixed-size and equal-length arrays -> ``(n, d)``; a single batch is converted without a
  copy, several are concatenated once), and :class:`TensorFeed` cuts those arrays into batches.

Equal batches per rank. DDP hangs when one rank runs out of batches before the others (petastorm's users' top
complaint), and partitions are rarely equal. :func:`equal_steps` agrees on one step count through the rank group:
``equalize="max"`` (default) uses the largest rank's count and lets smaller ranks wrap around their own shuffled
order (every row is seen each epoch, a few twice), ``"min"`` uses the smallest count and leaves the rest of the
larger ranks' rows for later epochs (the shuffle changes which). Every batch has exactly ``batch_size`` rows.

Shuffling is a seeded permutation per (seed, epoch, rank), so a run is reproducible and a resumed run sees the same
order as an undisturbed one. A rank that hosts a partition keeps it: rows never move between ranks.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from sparkml_dist.data.validation import DataValidationError

EQUALIZE = ("max", "min")
DTYPES = ("float32", "float64")


# --- driver side -------------------------------------------------------------------------------------------------
def _type_name(dtype) -> str:
    return dtype.simpleString() if hasattr(dtype, "simpleString") else str(dtype)


def check_feed_columns(df, columns: Sequence[str], roles: dict[str, str] | None = None) -> None:
    """Schema-only check (no Spark job): each column exists and is numeric, an array of numbers or an ML vector.

    ``roles`` maps a column to the parameter that named it (``{"x": "featuresCol"}``) for the error message.
    """
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql.types import ArrayType, NumericType

    roles = roles or {}
    fields = {f.name: f.dataType for f in df.schema.fields}
    for name in columns:
        role = roles.get(name, "column")
        if name not in fields:
            raise DataValidationError(
                f"{role}={name!r}: no such column (the DataFrame has: {', '.join(fields) or 'no columns'})")
        dtype = fields[name]
        ok = isinstance(dtype, (NumericType, VectorUDT)) or (
            isinstance(dtype, ArrayType) and isinstance(dtype.elementType, NumericType))
        if not ok:
            raise DataValidationError(
                f"{role}={name!r} has type {_type_name(dtype)}; expected a number, an array of numbers or an ML "
                "vector (assemble numeric columns with pyspark.ml.feature.VectorAssembler)")


def feed_frame(df, columns: Sequence[str], dtype: str = "float32", roles: dict[str, str] | None = None,
               check_types: bool = True):
    """``df`` reduced to ``columns`` in a layout the rank-side conversion reads without Python per row.

    Vectors become ``array<float>`` (or ``array<double>`` with ``dtype="float64"``), ``double`` columns and arrays
    become ``float`` ones when ``dtype="float32"``; integer columns keep their type (class labels stay integers).
    With ``check_types=False`` other columns (strings, binary) pass through unchanged.
    """
    from pyspark.ml.functions import vector_to_array
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, DoubleType, FloatType

    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}: expected one of {DTYPES}")
    if check_types:
        check_feed_columns(df, columns, roles)
    fields = {f.name: f.dataType for f in df.schema.fields}
    target = "float" if dtype == "float32" else "double"
    exprs = []
    for name in columns:
        t = fields[name]
        col = F.col(f"`{name}`")
        if isinstance(t, VectorUDT):
            col = vector_to_array(col, "float32" if dtype == "float32" else "float64")
        elif isinstance(t, ArrayType) and isinstance(t.elementType, (DoubleType, FloatType)):
            col = col.cast(f"array<{target}>")
        elif isinstance(t, (DoubleType, FloatType)):
            col = col.cast(target)
        exprs.append(col.alias(name))
    return df.select(*exprs)


# --- rank side ---------------------------------------------------------------------------------------------------
def column_to_numpy(column, name: str = "column") -> np.ndarray:
    """One Arrow column (Array or ChunkedArray) as a numpy array: ``(n,)`` for scalars, ``(n, d)`` for arrays.

    Without nulls and in one chunk, scalar and fixed-size-list columns are converted without a copy.
    """
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if column.null_count:
        raise DataValidationError(f"column {name!r} has {column.null_count} null rows")
    t = column.type
    if pa.types.is_fixed_size_list(t):
        values = column.flatten()
        width = t.list_size
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        offsets = np.asarray(column.offsets)
        widths = np.diff(offsets)
        if len(widths) and (widths != widths[0]).any():
            raise DataValidationError(f"column {name!r}: rows hold arrays of different lengths "
                                      f"({int(widths.min())} to {int(widths.max())})")
        width = int(widths[0]) if len(widths) else 0
        values = column.flatten()
    else:
        return column.to_numpy(zero_copy_only=False)
    if values.null_count:
        raise DataValidationError(f"column {name!r} has {values.null_count} null array elements")
    return values.to_numpy(zero_copy_only=False).reshape(len(column), width)


def arrow_arrays(batches: Iterable, columns: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """The Arrow ``RecordBatch`` es of one partition as ``{column: numpy array}`` (one concatenation at most)."""
    import pyarrow as pa

    batches = list(batches)
    if not batches:
        return {name: np.empty(0, np.float32) for name in (columns or ())}
    table = pa.Table.from_batches(batches)
    names = list(columns) if columns is not None else table.column_names
    return {name: column_to_numpy(table.column(name), name) for name in names}


def equal_steps(local_rows: int, batch_size: int, equalize: str = "max",
                allreduce: Callable[[np.ndarray, str], np.ndarray] | None = None) -> int:
    """The number of batches every rank runs per epoch, agreed through ``allreduce(array, op)`` (``None``: one rank)."""
    if equalize not in EQUALIZE:
        raise ValueError(f"equalize={equalize!r}: expected one of {EQUALIZE}")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be >= 1")
    mine = math.ceil(local_rows / batch_size) if equalize == "max" else local_rows // batch_size
    counts = np.array([mine, local_rows], dtype=np.int64)
    lowest = counts.copy()
    if allreduce is not None:
        lowest = allreduce(counts, "min")
        counts = allreduce(counts, equalize)
    if lowest[1] == 0:
        raise DataValidationError("a rank's partition has no rows: every rank needs data (repartition the input or "
                                  "lower numWorkers)")
    if counts[0] == 0:
        raise DataValidationError(f"batch_size={batch_size} is larger than the smallest partition "
                                  f"({int(lowest[1])} rows) with equalize='min'")
    return int(counts[0])


class TensorFeed:
    """Batches of one rank's rows as torch tensors, the same number on every rank.

    Parameters
    ----------
    arrays : dict of str -> ndarray
        This rank's rows (equal first dimension), e.g. from :func:`arrow_arrays`.
    batch_size : int
        Rows per batch on this rank (the global batch is ``batch_size * world_size``).
    steps : int
        Batches per epoch (from :func:`equal_steps`, so equal on every rank).
    shuffle : bool
        A seeded permutation per epoch; without it rows come in partition order (batches are zero-copy views).
    seed, rank : int
        The permutation of epoch ``e`` is drawn from ``(seed, e, rank)``.
    device : str or torch.device
        Where batches go (``"cpu"`` or a CUDA device).
    """

    def __init__(self, arrays: dict[str, np.ndarray], batch_size: int, steps: int, *, shuffle: bool = True,
                 seed: int = 0, rank: int = 0, device: Any = "cpu"):
        lengths = {len(a) for a in arrays.values()}
        if len(lengths) > 1:
            raise ValueError(f"feed columns have different row counts: {sorted(lengths)}")
        self.arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        self.rows = lengths.pop() if lengths else 0
        self.batch_size = int(batch_size)
        self.steps = int(steps)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.rank = int(rank)
        self.device = device
        self.epoch = 0
        self.position = (0, 0)
        """(epoch, step) of the next batch to hand out: the shuffle position a checkpoint saves"""

    def __len__(self) -> int:
        return self.steps

    def state_dict(self) -> dict:
        """The shuffle position (seed, epoch and step of the next batch) and the shape it applies to."""
        epoch, step = self.position
        if step >= self.steps:
            epoch, step = epoch + 1, 0
        return {"seed": self.seed, "rank": self.rank, "epoch": epoch, "step": step, "rows": self.rows,
                "batch_size": self.batch_size, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a saved position; the feed must have the rows and batches it was saved with."""
        mine = {"rows": self.rows, "batch_size": self.batch_size, "steps": self.steps}
        saved = {k: state[k] for k in mine}
        if saved != mine:
            raise ValueError(f"feed state was saved for {saved}, this feed has {mine}")
        self.seed = int(state["seed"])
        self.position = (int(state["epoch"]), int(state["step"]))
        self.epoch = self.position[0]

    def order(self, epoch: int) -> np.ndarray:
        """Row indices of ``epoch``: ``steps * batch_size`` of them, wrapping around this rank's rows if needed."""
        need = self.steps * self.batch_size
        if self.shuffle:
            rng = np.random.default_rng([self.seed, epoch, self.rank])
            base = rng.permutation(self.rows)
        else:
            base = np.arange(self.rows)
        if need <= self.rows:
            return base[:need]
        return np.resize(base, need)  # wraps around (equalize="max" on a smaller partition)

    def batches(self, epoch: int | None = None, start_step: int = 0) -> Iterator[dict]:
        """The batches of one epoch (``epoch`` defaults to the next), from ``start_step`` on (resuming mid-epoch)."""
        import torch

        if epoch is None:
            epoch = self.epoch
        self.epoch = epoch + 1
        idx = self.order(epoch)
        contiguous = not self.shuffle and len(idx) <= self.rows
        bs = self.batch_size
        for step in range(start_step, self.steps):
            if contiguous:  # partition order: slices, no copy
                batch = {k: v[step * bs:(step + 1) * bs] for k, v in self.arrays.items()}
            else:
                sel = idx[step * bs:(step + 1) * bs]
                batch = {k: v.take(sel, axis=0) for k, v in self.arrays.items()}
            with warnings.catch_warnings():  # partition-order slices are read-only views of the Arrow buffers
                warnings.simplefilter("ignore", UserWarning)
                out = {k: torch.from_numpy(v) for k, v in batch.items()}
            if str(self.device) != "cpu":
                out = {k: t.to(self.device, non_blocking=True) for k, t in out.items()}
            self.position = (epoch, step + 1)
            yield out

    def __iter__(self) -> Iterator[dict]:
        return self.batches()
