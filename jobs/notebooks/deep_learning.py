# Databricks notebook source
# MAGIC %md
# MAGIC # sparkml_dist: distributed deep learning
# MAGIC `TorchEstimator` (DDP over Spark barrier tasks) on scikit-learn's digits or on a Parquet/CSV/LibSVM path with
# MAGIC `features` and a 0..K-1 `label`; `sparkml_dist.deep.run` with every rank's result; the petastorm-style
# MAGIC converter feeding the held-out rows to the trained model. Uses the notebook's session (never sets a master:
# MAGIC Spark Connect clusters refuse it). Set the widgets, then *Run all*; the last cell returns the metrics as JSON.

# COMMAND ----------

# MAGIC %pip install sparkml_dist

# COMMAND ----------

# DBTITLE 1,Parameters
# ruff: noqa: E402, F821  (imports sit in the cells that use them; dbutils and display are Databricks globals)
dbutils.widgets.text("input", "", "input path (empty: scikit-learn's digits)")
dbutils.widgets.dropdown("model", "lenet5", ["lenet5", "mlp"], "network (lenet5 needs 64 = 8x8 features)")
dbutils.widgets.text("scale", "0.0625", "features are multiplied by this (digits' pixels are 0..16)")
dbutils.widgets.text("epochs", "30", "epochs")
dbutils.widgets.text("batch_size", "64", "global batch (rows per step over all ranks)")
dbutils.widgets.text("lr", "0.003", "learning rate")
dbutils.widgets.text("workers", "0", "ranks (0: every free task slot)")
dbutils.widgets.text("test_fraction", "0.25", "held-out fraction")
dbutils.widgets.text("seed", "0", "seed")
dbutils.widgets.text("converter_cache", "file:///dbfs/tmp/sparkml_dist_converter", "converter cache directory URL")
dbutils.widgets.text("output", "", "where to save the model (empty: not saved)")
dbutils.widgets.dropdown("overwrite", "false", ["true", "false"], "replace an existing output")

# COMMAND ----------

# DBTITLE 1,Session and checked parameters
import json
import time

from sparkml_dist.notebook import as_bool, check_output, positive, read_input, widget
from sparkml_dist.runtime import get_spark
from sparkml_dist.runtime.barrier import available_slots

spark = get_spark("databricks")  # the notebook's own session: no master is ever set
model_name = widget(dbutils, "model", choices=("lenet5", "mlp"))
scale = widget(dbutils, "scale", positive(float))
epochs = widget(dbutils, "epochs", int, minimum=1)
batch_size = widget(dbutils, "batch_size", int, minimum=1)
lr = widget(dbutils, "lr", positive(float))
workers = widget(dbutils, "workers", int, minimum=0)
slots = available_slots(spark)
if workers > slots:
    raise ValueError(f"widget 'workers' = {workers}: the cluster has {slots} free task slots")
workers = workers or slots
if batch_size < workers:
    raise ValueError(f"widget 'batch_size' = {batch_size}: the global batch must be >= the {workers} ranks")
test_fraction = widget(dbutils, "test_fraction", float)
if not 0 < test_fraction < 1:
    raise ValueError(f"widget 'test_fraction' = {test_fraction!r}: must be between 0 and 1")
seed = widget(dbutils, "seed", int, minimum=0)
converter_cache = widget(dbutils, "converter_cache")
if "://" not in converter_cache:
    raise ValueError(f"widget 'converter_cache' = {converter_cache!r}: expected a URL (file:///..., dbfs:/...)")
overwrite = widget(dbutils, "overwrite", as_bool)
output = check_output(spark, widget(dbutils, "output"), overwrite)  # refused now, not after training
df = read_input(spark, widget(dbutils, "input") or "digits")
n_features = len(df.first()["features"])
if model_name == "lenet5" and n_features != 64:
    raise ValueError(f"widget 'model' = 'lenet5': needs 64 (8x8) features, the input has {n_features}")

# COMMAND ----------

# DBTITLE 1,Data and split
from pyspark.ml.feature import ElementwiseProduct
from pyspark.ml.linalg import Vectors

if scale != 1.0:
    df = ElementwiseProduct(scalingVec=Vectors.dense([scale] * n_features), inputCol="features",
                            outputCol="scaled").transform(df).drop("features").withColumnRenamed("scaled", "features")
df = df.select("features", df["label"].cast("int").alias("label"))
n_classes = int(df.agg({"label": "max"}).first()[0]) + 1
train, test = df.randomSplit([1 - test_fraction, test_fraction], seed=seed)
train, test = train.repartition(workers).cache(), test.cache()  # filled by the first job that reads them
display(train.limit(5))

# COMMAND ----------

# DBTITLE 1,Every rank's result: sparkml_dist.deep.run on the training rows
from sparkml_dist.deep import run


def rank_summary():
    """Each rank counts its own partition and all-reduces the label histogram (every rank returns the total)."""
    import numpy as np
    import torch
    import torch.distributed as dist

    from sparkml_dist.deep import get_context

    ctx = get_context()
    labels = ctx.arrays(["label"])["label"]
    counts = torch.from_numpy(np.bincount(labels.astype(np.int64), minlength=n_classes).astype(np.float64))
    dist.all_reduce(counts)
    return {"rank": ctx.rank, "world_size": ctx.world_size, "rows": int(len(labels)),
            "class_counts": [int(c) for c in counts.tolist()]}


ranks = run(rank_summary, numWorkers=workers, df=train)
n_train = sum(r["rows"] for r in ranks)
print(f"{len(ranks)} ranks; rows per rank {[r['rows'] for r in ranks]}; all-reduced class counts "
      f"{ranks[0]['class_counts']}")

# COMMAND ----------

# DBTITLE 1,TorchEstimator (DDP)
from sparkml_dist.deep import TorchEstimator
from sparkml_dist.deep.models import build_model

net_args = {"in_size": 8, "classes": n_classes} if model_name == "lenet5" else \
    {"in_features": n_features, "hidden": (64,), "out_features": n_classes}
estimator = TorchEstimator(model=lambda: build_model(model_name, **net_args), lr=lr, batchSize=batch_size,
                           epochs=epochs, numWorkers=workers, seed=seed,
                           inputShape=[1, 8, 8] if model_name == "lenet5" else None)
start = time.perf_counter()
model = estimator.fit(train)
fit_seconds = time.perf_counter() - start
print(f"{model_name}: {epochs} epochs on {workers} ranks in {fit_seconds:.1f} s, final loss "
      f"{model.history[-1]['loss']:.4f}")
display(spark.createDataFrame([(int(h["epoch"]), float(h["loss"]), float(h.get("accuracy", float("nan"))))
                               for h in model.history], "epoch int, loss double, train_accuracy double"))

# COMMAND ----------

# DBTITLE 1,Held-out accuracy: TorchModel.transform and the converter's loader
import numpy as np
from pyspark.ml.evaluation import MulticlassClassificationEvaluator

from sparkml_dist.data.converter import SparkDatasetConverter, make_spark_converter

predictions = model.transform(test)
accuracy = MulticlassClassificationEvaluator(metricName="accuracy").evaluate(predictions)

spark.conf.set(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF, converter_cache)
converter = make_spark_converter(test)
correct = 0
with converter.make_torch_dataloader(batch_size=256, num_epochs=1) as loader:
    for batch in loader:
        scores = model.predict_numpy(batch["features"].numpy())
        correct += int((np.argmax(scores, axis=1) == batch["label"].numpy()).sum())
converter_rows = n_test = len(converter)
converter_accuracy = correct / converter_rows
converter.delete()
print(f"held-out accuracy {accuracy:.4f} (transform) / {converter_accuracy:.4f} (converter, {converter_rows} rows)")
display(predictions.select("label", "prediction").limit(10))

# COMMAND ----------

# DBTITLE 1,Save and return
from sparkml_dist.notebook import save_models

metrics = {"model": model_name, "workers": workers, "train_rows": n_train, "test_rows": n_test,
           "epochs": epochs, "fit_seconds": fit_seconds, "test_accuracy": accuracy,
           "converter_accuracy": converter_accuracy, "converter_rows": converter_rows,
           "ranks": ranks, "history": model.history}
save_models(spark, output, {"model": model}, overwrite)
train.unpersist()
test.unpersist()
dbutils.notebook.exit(json.dumps(metrics))
