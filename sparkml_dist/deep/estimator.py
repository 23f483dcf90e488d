"""``TorchEstimator`` / ``TorchModel``: train a torch module on a DataFrame with a strategy, serve it in Arrow UDFs.

``fit`` checks everything that can be checked on the driver (columns and their types, ``batchSize``, ``strategy``,
``loss``, ``optimizer``, that the model pickles, ``numWorkers`` against the free task slots) before any Spark job,
builds the model once on the driver from ``seed`` (so every rank starts from the same weights), and launches one
barrier stage through :func:`sparkml_dist.deep.launcher.launch`; each rank trains on its own partition with the
strategy (``ddp``) and rank 0 sends back the weights. ``TorchModel.transform`` ships those weights once per
executor (a broadcast, cached by the Python worker) and runs batched ``no_grad`` inference in an Arrow UDF, so no
row ever becomes a Python object.

Example::

    from pyspark.ml import Pipeline
    from pyspark.ml.feature import VectorAssembler
    from sparkml_dist.deep import TorchEstimator
    from sparkml_dist.deep.models import LeNet5

    est = TorchEstimator(model=LeNet5(8), loss="cross_entropy", optimizer="adam", lr=2e-3, batchSize=64,
                         epochs=15, numWorkers=2, labelCol="label")
    model = Pipeline(stages=[VectorAssembler(inputCols=pixel_cols, outputCol="features"), est]).fit(train)
    model.transform(test).select("label", "prediction")
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasFeaturesCol, HasLabelCol, HasPredictionCol, HasSeed

from sparkml_dist.deep.strategies import STRATEGIES
from sparkml_dist.deep.strategies.ddp import LOSSES, OPTIMIZERS, TrainConfig
from sparkml_dist.ml.params import stable_seed
from sparkml_dist.ml.persistence import ArrayPersistable

logger = logging.getLogger(__name__)


class _TorchParams(HasFeaturesCol, HasLabelCol, HasPredictionCol, HasSeed):
    """Params shared by :class:`TorchEstimator` and :class:`TorchModel`."""

    loss = Param(Params._dummy(), "loss", f"training loss: one of {', '.join(LOSSES)}",
                 typeConverter=TypeConverters.toString)
    inputShape = Param(Params._dummy(), "inputShape", "per-row shape the model takes, e.g. [1, 8, 8] (empty: flat)",
                       typeConverter=TypeConverters.toListInt)

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self._setDefault(loss="cross_entropy", inputShape=[], seed=stable_seed("TorchEstimator"))

    def getLoss(self) -> str:
        return self.getOrDefault(self.loss)

    def getInputShape(self) -> list[int]:
        return self.getOrDefault(self.inputShape)


class _TorchEstimatorParams(_TorchParams):
    optimizer = Param(Params._dummy(), "optimizer", f"one of {', '.join(OPTIMIZERS)}",
                      typeConverter=TypeConverters.toString)
    lr = Param(Params._dummy(), "lr", "learning rate (> 0)", typeConverter=TypeConverters.toFloat)
    batchSize = Param(Params._dummy(), "batchSize",
                      "global batch: rows per step over all ranks (>= numWorkers x processesPerTask)",
                      typeConverter=TypeConverters.toInt)
    epochs = Param(Params._dummy(), "epochs", "passes over the data (>= 1)", typeConverter=TypeConverters.toInt)
    numWorkers = Param(Params._dummy(), "numWorkers", "ranks (barrier tasks); 0 = every free task slot",
                       typeConverter=TypeConverters.toInt)
    useGpu = Param(Params._dummy(), "useGpu", "one GPU per rank (needs spark.task.resource.gpu.amount)",
                   typeConverter=TypeConverters.toBoolean)
    processesPerTask = Param(Params._dummy(), "processesPerTask",
                             "local ranks per barrier task (0 = the task's GPUs with useGpu, else 1)",
                             typeConverter=TypeConverters.toInt)
    strategy = Param(Params._dummy(), "strategy", f"training strategy: one of {', '.join(STRATEGIES)}",
                     typeConverter=TypeConverters.toString)
    shuffle = Param(Params._dummy(), "shuffle", "seeded per-epoch shuffle of each rank's rows",
                    typeConverter=TypeConverters.toBoolean)
    checkpointDir = Param(Params._dummy(), "checkpointDir",
                          "directory (shared by all ranks) for torch.distributed.checkpoint; fit resumes from it",
                          typeConverter=TypeConverters.toString)
    checkpointEvery = Param(Params._dummy(), "checkpointEvery", "steps between checkpoints (0 = once per epoch)",
                            typeConverter=TypeConverters.toInt)
    timeout = Param(Params._dummy(), "timeout", "seconds before the training stage is cancelled",
                    typeConverter=TypeConverters.toFloat)

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self._setDefault(optimizer="adam", lr=1e-3, batchSize=64, epochs=1, numWorkers=0, useGpu=False,
                         processesPerTask=0, strategy="ddp", shuffle=True, checkpointDir="", checkpointEvery=0,
                         timeout=3600.0)

    def _check_params(self) -> None:
        """Value checks that need no data (raised before any Spark job), naming the parameter."""
        checks = [
            (self.getOrDefault(self.batchSize) >= 1, f"batchSize={self.getOrDefault(self.batchSize)}: must be >= 1"),
            (self.getOrDefault(self.epochs) >= 1, f"epochs={self.getOrDefault(self.epochs)}: must be >= 1"),
            (self.getOrDefault(self.lr) > 0, f"lr={self.getOrDefault(self.lr)}: must be > 0"),
            (self.getOrDefault(self.numWorkers) >= 0, f"numWorkers={self.getOrDefault(self.numWorkers)}: must be >= 0"),
            (self.getOrDefault(self.processesPerTask) >= 0,
             f"processesPerTask={self.getOrDefault(self.processesPerTask)}: must be >= 0"),
            (self.getOrDefault(self.strategy) in STRATEGIES,
             f"strategy={self.getOrDefault(self.strategy)!r}: expected one of {', '.join(STRATEGIES)}"),
            (self.getLoss() in LOSSES, f"loss={self.getLoss()!r}: expected one of {', '.join(LOSSES)}"),
            (self.getOrDefault(self.optimizer) in OPTIMIZERS,
             f"optimizer={self.getOrDefault(self.optimizer)!r}: expected one of {', '.join(OPTIMIZERS)}"),
            (self.getOrDefault(self.checkpointEvery) >= 0,
             f"checkpointEvery={self.getOrDefault(self.checkpointEvery)}: must be >= 0"),
            (self.getOrDefault(self.timeout) > 0, f"timeout={self.getOrDefault(self.timeout)}: must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


class TorchEstimator(Estimator, _TorchEstimatorParams):
    """Train a torch module on a DataFrame across Spark barrier tasks.

    Parameters
    ----------
    model : torch.nn.Module or callable
        The network, or a zero-argument factory that builds it (called on the driver after
        ``torch.manual_seed(seed)``). It must pickle (cloudpickle): it travels to the ranks once.
    loss, optimizer, lr, batchSize, epochs, numWorkers, useGpu, processesPerTask, strategy, shuffle,
    checkpointDir, checkpointEvery, inputShape, featuresCol, labelCol, predictionCol, seed, timeout
        See the Params' docs. ``batchSize`` is global: each of the ``W = numWorkers * processesPerTask`` ranks
        takes ``batchSize // W`` rows a step, the same number of steps on every rank.

    Notes
    -----
    Labels for ``cross_entropy`` are class indices ``0..K-1``. The fitted :class:`TorchModel` carries ``history``
    (per epoch: loss, accuracy, samples/s, seconds) and saves/loads like any pyspark.ml model, also inside a
    ``PipelineModel``.
    """

    @keyword_only
    def __init__(self, *, model: Any = None, loss: str = "cross_entropy", optimizer: str = "adam", lr: float = 1e-3,
                 batchSize: int = 64, epochs: int = 1, numWorkers: int = 0, useGpu: bool = False,
                 processesPerTask: int = 0, strategy: str = "ddp", shuffle: bool = True, checkpointDir: str = "",
                 checkpointEvery: int = 0,
                 inputShape: list[int] | None = None, featuresCol: str = "features", labelCol: str = "label",
                 predictionCol: str = "prediction", seed: int | None = None, timeout: float = 3600.0):
        super().__init__()
        kwargs = dict(self._input_kwargs)
        self.model = kwargs.pop("model", None)
        self._set(**{k: v for k, v in kwargs.items() if v is not None})

    def setModel(self, model: Any) -> TorchEstimator:
        self.model = model
        return self

    def copy(self, extra=None) -> TorchEstimator:
        that = super().copy(extra)
        that.model = self.model
        return that

    def _build_module(self):
        import cloudpickle
        import torch

        if self.model is None:
            raise ValueError("model: pass a torch.nn.Module or a factory that builds one")
        torch.manual_seed(self.getOrDefault(self.seed))
        module = self.model() if callable(self.model) and not isinstance(self.model, torch.nn.Module) else self.model
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module (or a factory of one), got {type(module).__name__}")
        try:
            blob = cloudpickle.dumps(module)
        except Exception as exc:  # noqa: BLE001 - re-raised naming the parameter
            raise TypeError(f"model: {type(module).__name__} cannot be pickled for the Spark tasks "
                            f"({type(exc).__name__}: {exc})") from exc
        return module, blob

    def _fit(self, dataset) -> TorchModel:
        from sparkml_dist.data.feed import feed_frame
        from sparkml_dist.deep.launcher import _check_gpu_conf, launch, local_ranks
        from sparkml_dist.runtime.barrier import InsufficientSlotsError, available_slots

        self._check_params()
        features, label = self.getFeaturesCol(), self.getLabelCol()
        frame = feed_frame(dataset, [features, label], roles={features: "featuresCol", label: "labelCol"})
        module, blob = self._build_module()
        spark = dataset.sparkSession
        slots = available_slots(spark)
        workers = self.getOrDefault(self.numWorkers) or slots
        if workers > slots:
            raise InsufficientSlotsError(f"numWorkers={workers} but the cluster ({spark.sparkContext.master}) has "
                                         f"{slots} free task slots")
        use_gpu = self.getOrDefault(self.useGpu)
        if use_gpu:
            _check_gpu_conf(spark)
        per_task = local_ranks(spark, use_gpu, self.getOrDefault(self.processesPerTask) or None)
        ranks = workers * per_task
        batch = self.getOrDefault(self.batchSize)
        if batch < ranks:
            raise ValueError(f"batchSize={batch} is the global batch and must be >= the ranks "
                             f"(numWorkers={workers} x processesPerTask={per_task})")
        if frame.rdd.getNumPartitions() != workers:
            logger.info("TorchEstimator: %d partitions -> %d ranks (repartitioned)", frame.rdd.getNumPartitions(),
                        workers)
        config = TrainConfig(
            epochs=self.getOrDefault(self.epochs), batch_size=batch // ranks, lr=self.getOrDefault(self.lr),
            optimizer=self.getOrDefault(self.optimizer), loss=self.getLoss(), features=features, label=label,
            input_shape=tuple(self.getInputShape()) or None, shuffle=self.getOrDefault(self.shuffle),
            seed=self.getOrDefault(self.seed), checkpoint_dir=self.getOrDefault(self.checkpointDir) or None,
            checkpoint_every=self.getOrDefault(self.checkpointEvery))
        start = time.perf_counter()
        results = launch(_train_rank, (blob, self.getOrDefault(self.strategy), config), numWorkers=workers,
                         useGpu=use_gpu, df=frame, timeout=self.getOrDefault(self.timeout), spark=spark,
                         processesPerTask=per_task)
        seconds = time.perf_counter() - start
        out = results[0]
        module.load_state_dict({k: _to_tensor(v) for k, v in out["state"].items()})
        model = TorchModel(module=module, history=out["history"])
        self._copyValues(model)
        model.trainingSeconds = seconds
        model.resumedFrom = out.get("resumed_from")
        logger.info("TorchEstimator: %d epochs on %d ranks in %.1fs, final loss %.4g", config.epochs, ranks,
                    seconds, out["history"][-1]["loss"] if out["history"] else float("nan"))
        return model


def _to_tensor(value):
    import torch

    return torch.from_numpy(np.asarray(value))


def _train_rank(blob: bytes, strategy: str, config: TrainConfig) -> dict:
    """Every rank: the model from the driver's bytes (same weights everywhere), this rank's feed, the strategy."""
    import cloudpickle

    from sparkml_dist.deep.launcher import get_context

    ctx = get_context()
    model = cloudpickle.loads(blob)
    feed = ctx.feed(config.batch_size, [config.features, config.label], shuffle=config.shuffle, seed=config.seed,
                    equalize=config.equalize)
    return STRATEGIES[strategy].train(ctx, model, config, feed)


# --- inference ---------------------------------------------------------------------------------------------------
_WORKER_MODULES: dict[str, Any] = {}  # broadcast token -> module, per Python worker: weights arrive once


def _worker_module(bc, token: str):
    import cloudpickle

    module = _WORKER_MODULES.get(token)
    if module is None:
        module = cloudpickle.loads(bc.value)
        module.eval()
        if len(_WORKER_MODULES) > 4:
            _WORKER_MODULES.clear()
        _WORKER_MODULES[token] = module
    return module


def _predict_fn(bc, token: str, loss: str, input_shape: tuple | None, chunk: int = 4096) -> Callable:
    def predict(features):
        import pyarrow as pa
        import torch

        from sparkml_dist.data.feed import column_to_numpy

        module = _worker_module(bc, token)
        x = column_to_numpy(features, "features").astype(np.float32, copy=False)
        outs = []
        with torch.inference_mode():
            for i in range(0, len(x), chunk):
                xb = torch.from_numpy(np.ascontiguousarray(x[i:i + chunk]))
                if input_shape:
                    xb = xb.reshape(len(xb), *input_shape)
                outs.append(module(xb).float().numpy())
        out = np.concatenate(outs) if outs else np.empty((0, 1), np.float32)
        if loss == "cross_entropy":
            pred = out.argmax(1).astype(np.float64)
        elif loss == "bce_with_logits":
            pred = (out.reshape(len(out), -1)[:, 0] > 0).astype(np.float64)
        else:
            pred = out.reshape(len(out), -1)[:, 0].astype(np.float64)
        return pa.array(pred, pa.float64())

    return predict


class TorchModel(Model, _TorchParams, ArrayPersistable):
    """A trained torch module as a Spark transformer: ``transform`` adds ``predictionCol``.

    Attributes
    ----------
    module : torch.nn.Module
        The trained network (on the driver, CPU).
    history : list of dict
        Per epoch: ``epoch, loss, accuracy`` (classification), ``samples_per_s, seconds, steps``.
    """

    def __init__(self, module=None, history: list[dict] | None = None):
        super().__init__()
        self.module = module
        self.history = list(history or [])
        self.trainingSeconds = None
        self.resumedFrom = None

    def predict_numpy(self, x: np.ndarray) -> np.ndarray:
        """The module's outputs for rows ``x`` on the driver (no Spark)."""
        import torch

        shape = tuple(self.getInputShape())
        self.module.eval()
        with torch.inference_mode():
            xb = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
            return self.module(xb.reshape(len(xb), *shape) if shape else xb).numpy()

    def _transform(self, dataset):
        import cloudpickle
        from pyspark.ml.functions import vector_to_array
        from pyspark.ml.linalg import VectorUDT
        from pyspark.sql import functions as F

        from sparkml_dist.data.feed import check_feed_columns

        features = self.getFeaturesCol()
        check_feed_columns(dataset, [features], roles={features: "featuresCol"})
        fields = {f.name: f.dataType for f in dataset.schema.fields}

        col = F.col(f"`{features}`")
        col = vector_to_array(col, "float32") if isinstance(fields[features], VectorUDT) else col.cast("array<float>")
        bc = dataset.sparkSession.sparkContext.broadcast(cloudpickle.dumps(self.module))
        predict = _predict_fn(bc, uuid.uuid4().hex, self.getLoss(), tuple(self.getInputShape()) or None)
        udf = F.arrow_udf(predict, "double")
        return dataset.withColumn(self.getPredictionCol(), udf(col))

    # --- persistence (ArrayPersistable) ---
    def _get_state(self):
        import cloudpickle

        arrays = {f"param/{k}": v.detach().cpu().numpy() for k, v in self.module.state_dict().items()}
        arrays["architecture"] = np.frombuffer(cloudpickle.dumps(self.module), dtype=np.uint8)
        return arrays, {"history": self.history, "trainingSeconds": self.trainingSeconds}

    @classmethod
    def _from_state(cls, arrays, extra):
        import cloudpickle

        module = cloudpickle.loads(arrays["architecture"].tobytes())
        module.load_state_dict({k[len("param/"):]: _to_tensor(v) for k, v in arrays.items()
                                if k.startswith("param/")})
        model = cls(module=module, history=extra.get("history"))
        model.trainingSeconds = extra.get("trainingSeconds")
        return model
