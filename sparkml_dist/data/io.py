"""Atomic outputs on every filesystem: write beside the target, keep the old output until the new one is complete.

:func:`atomic_path` yields a temporary sibling path (``<path>._tmp-<id>``). When the body succeeds the old output (if
any) is renamed aside to ``<path>._old-<id>``, the temporary path is renamed to ``path``, and only then is the old
one deleted; if the swap fails the old output is put back. When the body fails the temporary path is removed and
``path`` is untouched. With a SparkSession every step goes through Hadoop's ``org.apache.hadoop.fs.FileSystem``
(local paths, ``file://``, ``hdfs://``, ``s3a://``, ``dbfs:/``), so jobs behave the same on every filesystem; without
one, local paths use ``os``. Small files (``metrics.json``) are written through the same API (:func:`write_text`).

On object stores a "rename" is a copy: there the swap is not instantaneous, but readers still never see a partial
new output at ``path``, and the old output stays until the new one is complete.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from typing import Any

logger = logging.getLogger(__name__)


def has_scheme(path: str) -> bool:
    """``hdfs://...``, ``s3a://...``, ``file:/...``, ``dbfs:/...``: a URI that only Hadoop's FileSystem can open."""
    return "://" in path or path.startswith(("dbfs:", "file:"))


def _hadoop_fs(spark, path: str):
    """``(FileSystem, Path)`` of ``path`` in the session's Hadoop configuration (no checksum files on local)."""
    jvm = spark.sparkContext._jvm
    jpath = jvm.org.apache.hadoop.fs.Path(path)
    fs = jpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    fs.setWriteChecksum(False)  # the local FileSystem would write a .crc beside every file we create
    return fs, jpath


def path_exists(path: str, spark=None) -> bool:
    """Whether ``path`` exists (through Hadoop's FileSystem when ``spark`` is given)."""
    if spark is not None:
        fs, jpath = _hadoop_fs(spark, path)
        return bool(fs.exists(jpath))
    if has_scheme(path):
        raise ValueError(f"{path}: a URI needs a SparkSession (Hadoop's FileSystem) to be checked")
    return os.path.exists(path)


def remove_path(path: str, spark=None) -> None:
    """Delete ``path`` recursively if it exists."""
    if spark is not None:
        fs, jpath = _hadoop_fs(spark, path)
        if fs.exists(jpath) and not fs.delete(jpath, True):
            raise OSError(f"could not delete {path}")
    elif os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)


def _rename(src: str, dst: str, spark=None) -> None:
    if spark is not None:
        fs, jsrc = _hadoop_fs(spark, src)
        _, jdst = _hadoop_fs(spark, dst)
        if fs.exists(jdst):  # Hadoop would move src *into* an existing directory
            raise FileExistsError(f"cannot rename {src} to {dst}: the target exists")
        if not fs.rename(jsrc, jdst):
            raise OSError(f"could not rename {src} to {dst}")
    else:
        os.replace(src, dst)


def _mkdirs(path: str, spark=None) -> None:
    if not path:
        return
    if spark is not None:
        fs, jpath = _hadoop_fs(spark, path)
        fs.mkdirs(jpath)
    else:
        os.makedirs(path, exist_ok=True)


@contextlib.contextmanager
def atomic_path(path: str, spark=None, overwrite: bool = True) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success swap it in (see the module docstring).

    Parameters
    ----------
    path : str
        The final output (a local path or a Hadoop URI).
    spark : SparkSession, optional
        Route every filesystem call through Hadoop's FileSystem (required for URIs).
    overwrite : bool
        Replace an existing ``path``; if False an existing ``path`` raises :class:`FileExistsError` before the body
        runs, and again if one appeared while it ran (the new output is then discarded).
    """
    if has_scheme(path) and spark is None:
        raise ValueError(f"{path}: writing to a URI needs a SparkSession (Hadoop's FileSystem)")
    path = path.rstrip("/")
    if not overwrite and path_exists(path, spark):
        raise FileExistsError(f"output {path} exists (pass overwrite=True to replace it)")
    _mkdirs(os.path.dirname(path) if not has_scheme(path) else path.rsplit("/", 1)[0], spark)
    tag = uuid.uuid4().hex[:10]
    tmp, old = f"{path}._tmp-{tag}", f"{path}._old-{tag}"
    try:
        yield tmp
        if not path_exists(tmp, spark):
            raise FileNotFoundError(f"nothing was written to {tmp}: kept the previous output of {path}")
        had_old = path_exists(path, spark)
        if had_old:
            if not overwrite:
                raise FileExistsError(f"output {path} appeared while this one was written; kept it, dropped ours")
            _rename(path, old, spark)
        try:
            _rename(tmp, path, spark)
        except BaseException:
            if had_old:
                _rename(old, path, spark)  # the old output goes back where it was
            raise
    except BaseException:
        with contextlib.suppress(Exception):
            remove_path(tmp, spark)
        raise
    if had_old:
        try:
            remove_path(old, spark)
        except Exception as exc:  # the new output is in place; a leftover is only disk space
            logger.warning("could not delete the previous output %s: %s", old, exc)


def write_text(path: str, text: str, spark=None) -> None:
    """Write ``text`` (UTF-8) to ``path``: through Hadoop's FileSystem when ``spark`` is given, else ``open``."""
    if spark is None:
        if has_scheme(path):
            raise ValueError(f"{path}: writing to a URI needs a SparkSession (Hadoop's FileSystem)")
        if os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        return
    fs, jpath = _hadoop_fs(spark, path)
    stream = fs.create(jpath, True)
    try:
        stream.write(bytearray(text.encode("utf-8")))
    finally:
        stream.close()


def read_text(path: str, spark=None) -> str:
    """Read a small UTF-8 file (through Hadoop's FileSystem when ``spark`` is given)."""
    if spark is None:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    fs, jpath = _hadoop_fs(spark, path)
    jvm = spark.sparkContext._jvm
    stream = fs.open(jpath)
    try:
        return jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
    finally:
        stream.close()


def write_json(path: str, obj: Any, spark=None) -> None:
    """Write ``obj`` as indented JSON atomically (a temporary file swapped into place by :func:`atomic_path`)."""
    with atomic_path(path, spark) as tmp:
        write_text(tmp, json.dumps(obj, indent=2, sort_keys=True, default=json_default), spark)


def json_default(o):
    """``json.dump`` default for numpy scalars and arrays; anything else is written as its ``str``."""
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def write_dataframe(df, path: str, fmt: str = "parquet", overwrite: bool = False) -> None:
    """``df.write`` into a temporary path, then swap it in: readers never see a partial dataset.

    An existing ``path`` is replaced only with ``overwrite=True`` (else :class:`FileExistsError`, old data kept).
    """
    with atomic_path(path, df.sparkSession, overwrite=overwrite) as tmp:
        df.write.format(fmt).save(tmp)
