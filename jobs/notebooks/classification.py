# Databricks notebook source
# MAGIC %md
# MAGIC # sparkml_dist: distributed classification
# MAGIC AdaBoost (SAMME over histogram stumps) and the cascade kernel SVM, on Hastie 10.2 or on a Parquet/CSV/LibSVM
# MAGIC path with `features` and a 0..K-1 `label`. Uses the notebook's session (never sets a master: Spark Connect
# MAGIC clusters refuse it). Set the widgets, then *Run all*; the last cell returns the metrics as JSON.

# COMMAND ----------

# MAGIC %pip install sparkml_dist

# COMMAND ----------

# DBTITLE 1,Parameters
# ruff: noqa: E402, F821  (imports sit in the cells that use them; dbutils and display are Databricks globals)
dbutils.widgets.text("input", "", "input path (empty: generate Hastie 10.2)")
dbutils.widgets.text("rows", "200000", "rows to generate")
dbutils.widgets.text("rounds", "50", "AdaBoost rounds")
dbutils.widgets.dropdown("engine", "bsp", ["bsp", "mapreduce"], "engine")
dbutils.widgets.text("svm_rows", "20000", "rows the SVM trains on (a sample of the training split; 0: no SVM)")
dbutils.widgets.text("C", "1.0", "SVM C")
dbutils.widgets.text("test_fraction", "0.25", "held-out fraction")
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
rounds = widget(dbutils, "rounds", int, minimum=1)
engine = widget(dbutils, "engine", choices=("bsp", "mapreduce"))
svm_rows = widget(dbutils, "svm_rows", int, minimum=0)
C = widget(dbutils, "C", float)
if not C > 0:
    raise ValueError(f"widget 'C' = {C!r}: must be > 0")
test_fraction = widget(dbutils, "test_fraction", float)
if not 0 < test_fraction < 1:
    raise ValueError(f"widget 'test_fraction' = {test_fraction!r}: must be between 0 and 1")
seed = widget(dbutils, "seed", int, minimum=0)
overwrite = widget(dbutils, "overwrite", as_bool)
output = check_output(spark, widget(dbutils, "output"), overwrite)  # refused now, not after training
df = read_input(spark, widget(dbutils, "input"))

# COMMAND ----------

# DBTITLE 1,Data and split
from sparkml_dist.data.generators import make_hastie_10_2

if df is None:
    df = make_hastie_10_2(spark, n_rows=rows, seed=seed)
train, test = df.randomSplit([1 - test_fraction, test_fraction], seed=seed)
train, test = train.cache(), test.cache()
n_train, n_test = train.count(), test.count()
display(train.limit(5))

# COMMAND ----------

# DBTITLE 1,AdaBoost
from pyspark.ml.evaluation import MulticlassClassificationEvaluator

from sparkml_dist.classification import AdaBoostClassifier

accuracy = MulticlassClassificationEvaluator(metricName="accuracy")
start = time.perf_counter()
adaboost = AdaBoostClassifier(maxIter=rounds, seed=seed, engine=engine).fit(train)
adaboost_seconds = time.perf_counter() - start
adaboost_accuracy = accuracy.evaluate(adaboost.transform(test))
print(f"AdaBoost ({engine}, {rounds} rounds): test accuracy {adaboost_accuracy:.4f}, {adaboost_seconds:.1f} s")

# COMMAND ----------

# DBTITLE 1,Cascade SVM
from sparkml_dist.classification import CascadeSVC

svm = None
if svm_rows:
    svm_train = train.limit(svm_rows).cache() if n_train > svm_rows else train
    start = time.perf_counter()
    svm = CascadeSVC(C=C, kernel="rbf", gamma="scale", engine=engine).fit(svm_train)
    svm_seconds = time.perf_counter() - start
    svm_accuracy = accuracy.evaluate(svm.transform(test))
    print(f"CascadeSVC ({engine}): {len(svm.supportIds)} support vectors, test accuracy {svm_accuracy:.4f}, "
          f"{svm_seconds:.1f} s")

# COMMAND ----------

# DBTITLE 1,Save and return
metrics = {"train_rows": n_train, "test_rows": n_test, "engine": engine,
           "adaboost": {"rounds": rounds, "accuracy": adaboost_accuracy, "seconds": adaboost_seconds}}
if svm is not None:
    metrics["svm"] = {"rows": svm_rows, "accuracy": svm_accuracy, "seconds": svm_seconds,
                      "support_vectors": len(svm.supportIds), "dual_objective": svm.dualObjective}
save_models(spark, output, {"adaboost": adaboost, **({"svm": svm} if svm is not None else {})}, overwrite)
train.unpersist(), test.unpersist()
dbutils.notebook.exit(json.dumps(metrics))
