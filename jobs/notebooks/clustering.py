# Databricks notebook source
# MAGIC %md
# MAGIC # sparkml_dist: distributed clustering
# MAGIC k-means (MapReduce or BSP engine) and fuzzy c-means with Xie-Beni selection of k, on generated blobs or on
# MAGIC a Parquet/CSV/LibSVM path with `features` and `label`. Uses the notebook's session (never sets a master:
# MAGIC Spark Connect clusters refuse it). Set the widgets, then *Run all*; the last cell returns the metrics as JSON.

# COMMAND ----------

# MAGIC %pip install sparkml_dist

# COMMAND ----------

# DBTITLE 1,Parameters
# ruff: noqa: E402, F821  (imports sit in the cells that use them; dbutils and display are Databricks globals)
dbutils.widgets.text("input", "", "input path (empty: generate blobs)")
dbutils.widgets.text("rows", "200000", "rows to generate")
dbutils.widgets.text("features", "16", "features to generate")
dbutils.widgets.text("k", "8", "k (clusters)")
dbutils.widgets.dropdown("engine", "bsp", ["bsp", "mapreduce"], "engine")
dbutils.widgets.text("max_k", "10", "largest k fuzzy c-means tries")
dbutils.widgets.text("seed", "0", "seed")
dbutils.widgets.text("output", "", "where to save the models (empty: not saved)")
dbutils.widgets.dropdown("overwrite", "false", ["true", "false"], "replace an existing output")

# COMMAND ----------

# DBTITLE 1,Session and checked parameters
import json
import time

from sparkml_dist.notebook import as_bool, check_output, read_input, save_models, widget
from sparkml_dist.runtime import get_spark

spark = get_spark("databricks")  # the notebook's own session: no master is ever set
rows = widget(dbutils, "rows", int, minimum=1)
n_features = widget(dbutils, "features", int, minimum=1)
k = widget(dbutils, "k", int, minimum=2)
engine = widget(dbutils, "engine", choices=("bsp", "mapreduce"))
max_k = widget(dbutils, "max_k", int, minimum=k)
seed = widget(dbutils, "seed", int, minimum=0)
overwrite = widget(dbutils, "overwrite", as_bool)
output = check_output(spark, widget(dbutils, "output"), overwrite)  # refused now, not after training
df = read_input(spark, widget(dbutils, "input"))

# COMMAND ----------

# DBTITLE 1,Data
from sparkml_dist.data.generators import make_blobs

if df is None:
    df = make_blobs(spark, rows, n_features, centers=k, cluster_std=1.0, seed=seed)
df = df.cache()
n_rows = df.count()
display(df.limit(5))

# COMMAND ----------

# DBTITLE 1,k-means
from sparkml_dist.clustering import KMeans

start = time.perf_counter()
kmeans = KMeans(k=k, seed=seed + 1, engine=engine).fit(df)
kmeans_seconds = time.perf_counter() - start
summary = kmeans.summary
print(f"k-means ({engine}): {summary.numIter} iterations, cost {summary.trainingCost:.6g}, {kmeans_seconds:.1f} s")

# COMMAND ----------

# DBTITLE 1,Fuzzy c-means (k chosen by Xie-Beni)
from sparkml_dist.clustering import FuzzyCMeans

start = time.perf_counter()
fuzzy = FuzzyCMeans(kRange=[2, max_k], seed=seed + 1, engine=engine).fit(df)
fuzzy_seconds = time.perf_counter() - start
print(f"fuzzy c-means picked k={fuzzy.getK()} of [2, {max_k}] in {fuzzy_seconds:.1f} s")
curve = fuzzy.xieBeniCurve()
display(spark.createDataFrame([(int(kk), float(xb)) for kk, xb in curve.items()], "k int, xie_beni double"))

# COMMAND ----------

# DBTITLE 1,Agreement with the labels
from pyspark.ml.evaluation import ClusteringEvaluator
from sklearn.metrics import adjusted_rand_score

predictions = kmeans.transform(df).select("features", "label", "prediction")
pairs = predictions.select("label", "prediction").toPandas()
fuzzy_pairs = fuzzy.transform(df).select("label", "prediction").toPandas()
metrics = {
    "rows": n_rows, "engine": engine,
    "kmeans": {"k": k, "iterations": summary.numIter, "cost": summary.trainingCost, "seconds": kmeans_seconds,
               "ari": float(adjusted_rand_score(pairs["label"], pairs["prediction"])),
               "silhouette": ClusteringEvaluator().evaluate(predictions)},
    "fuzzy_cmeans": {"k": fuzzy.getK(), "seconds": fuzzy_seconds,
                     "ari": float(adjusted_rand_score(fuzzy_pairs["label"], fuzzy_pairs["prediction"]))},
}
display(predictions.limit(10))

# COMMAND ----------

# DBTITLE 1,Save and return
save_models(spark, output, {"kmeans": kmeans, "fuzzy_cmeans": fuzzy}, overwrite)
df.unpersist()
dbutils.notebook.exit(json.dumps(metrics))
