"""Save/load of fitted models whose state is numpy arrays (centres, stumps, support vectors).

``DefaultParamsWritable`` stores only JSON-able Params; a fitted model here also has arrays. Following xgboost.spark,
the model gets its own ``MLWriter``/``MLReader``: Params go to Spark's standard ``metadata/`` (so the model also loads
inside a saved ``PipelineModel``), the arrays to ``data/`` as one Parquet row holding an ``.npz`` blob, and any other
JSON-able state to the metadata's ``extra``. Parquet through Spark means every filesystem Spark can write works
(local, HDFS, S3, DBFS).

A model class mixes in :class:`ArrayPersistable` and implements::

    def _get_state(self) -> tuple[dict[str, np.ndarray], dict]     # arrays, JSON-able extras
    @classmethod
    def _from_state(cls, arrays, extra) -> "Model"                  # a model with its fitted state
"""

from __future__ import annotations

import io

import numpy as np
from pyspark.ml.util import DefaultParamsReader, DefaultParamsWriter, MLReadable, MLReader, MLWritable, MLWriter


class ArrayModelWriter(MLWriter):
    def __init__(self, instance):
        super().__init__()
        self.instance = instance

    def saveImpl(self, path: str) -> None:
        arrays, extra = self.instance._get_state()
        DefaultParamsWriter.saveMetadata(self.instance, path, self.sparkSession.sparkContext,
                                         extraMetadata={"state": extra})
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
        self.sparkSession.createDataFrame([(bytearray(buf.getvalue()),)], "npz binary") \
            .coalesce(1).write.parquet(f"{path}/data")


class ArrayModelReader(MLReader):
    def __init__(self, cls):
        super().__init__()
        self.cls = cls

    def load(self, path: str):
        metadata = DefaultParamsReader.loadMetadata(path, self.sparkSession.sparkContext)
        row = self.sparkSession.read.parquet(f"{path}/data").collect()[0]
        with np.load(io.BytesIO(bytes(row["npz"])), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        model = self.cls._from_state(arrays, metadata.get("state", {}))
        model._resetUid(metadata["uid"])
        DefaultParamsReader.getAndSetParams(model, metadata)
        return model


class ArrayPersistable(MLWritable, MLReadable):
    """Mixin: ``model.write().save(path)`` / ``Model.load(path)`` for models with numpy state."""

    def write(self) -> MLWriter:
        return ArrayModelWriter(self)

    @classmethod
    def read(cls) -> MLReader:
        return ArrayModelReader(cls)
