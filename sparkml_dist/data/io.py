"""Atomic outputs: write to a temporary sibling path, rename on success, delete on failure.

A failed job therefore leaves nothing half-written at the final path. Local paths use ``os``; URIs with a scheme
(``hdfs://``, ``s3a://``, ``file://``, ``dbfs:/``) go through Hadoop's ``FileSystem`` of the running Spark.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from typing import Any, Iterator


def _has_scheme(path: str) -> bool:
    return "://" in path or path.startswith("dbfs:")


def _hadoop_fs(spark, path: str):
    jvm = spark.sparkContext._jvm
    jpath = jvm.org.apache.hadoop.fs.Path(path)
    return jpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), jpath


def path_exists(path: str, spark=None) -> bool:
    if _has_scheme(path) and spark is not None:
        fs, jpath = _hadoop_fs(spark, path)
        return bool(fs.exists(jpath))
    return os.path.exists(path)


def remove_path(path: str, spark=None) -> None:
    if _has_scheme(path) and spark is not None:
        fs, jpath = _hadoop_fs(spark, path)
        fs.delete(jpath, True)
    elif os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
        os.remove(path)


@contextlib.contextmanager
def atomic_path(path: str, spark=None, overwrite: bool = True) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path`` (replacing it if
    ``overwrite``), on an exception it is removed and ``path`` is left as it was."""
    path = path.rstrip("/")
    if path_exists(path, spark) and not overwrite:
        raise FileExistsError(f"output path {path} exists (pass overwrite=True to replace it)")
    parent = os.path.dirname(path)
    if parent and not _has_scheme(path):
        os.makedirs(parent, exist_ok=True)
    tmp = f"{path}._tmp-{uuid.uuid4().hex[:10]}"
    try:
        yield tmp
    except BaseException:
        remove_path(tmp, spark)
        raise
    if _has_scheme(path) and spark is not None:
        fs, jtmp = _hadoop_fs(spark, tmp)
        _, jfinal = _hadoop_fs(spark, path)
        if fs.exists(jfinal):
            fs.delete(jfinal, True)
        if not fs.rename(jtmp, jfinal):
            raise OSError(f"could not rename {tmp} to {path}")
    else:
        if os.path.exists(path):
            old = f"{path}._old-{uuid.uuid4().hex[:10]}"
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)  # the body wrote nothing (or the rename failed): the old output stays
                raise
            remove_path(old)
        else:
            os.replace(tmp, path)


def write_json(path: str, obj: Any, spark=None) -> None:
    """Write ``obj`` as indented JSON atomically (local paths)."""
    with atomic_path(path, spark) as tmp:
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=2, sort_keys=True, default=json_default)


def json_default(o):
    """``json.dump`` default for numpy scalars and arrays; anything else is written as its ``str``."""
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def write_dataframe(df, path: str, fmt: str = "parquet", mode: str = "overwrite") -> None:
    """``df.write`` into a temporary path, then rename: readers never see a partial dataset."""
    with atomic_path(path, df.sparkSession) as tmp:
        df.write.format(fmt).mode(mode).save(tmp)
