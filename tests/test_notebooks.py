"""The Databricks notebooks (``jobs/notebooks/*.py``, source format) run cell by cell against the local session,
``MAGIC`` cells skipped, with a small ``dbutils`` stand-in; their results are checked against scikit-learn on the
same data, and bad widget values fail before any training with an error naming the widget."""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(REPO, "jobs", "notebooks", "*.py")))
SEPARATOR = "\n# COMMAND ----------\n"


class NotebookExit(Exception):
    """``dbutils.notebook.exit(value)`` stops the notebook, as on Databricks."""

    def __init__(self, value):
        super().__init__(value)
        self.value = value


class Widgets:
    """``dbutils.widgets``: ``text``/``dropdown`` define a widget with its default, ``get`` returns the value set
    for this run (``values``) or the default; an undefined widget or a dropdown value outside its choices raises,
    as Databricks does."""

    def __init__(self, values: dict[str, str]):
        self.values = dict(values)
        self.defined: dict[str, str] = {}
        self.choices: dict[str, list[str]] = {}

    def text(self, name, default, label=None):
        self.defined[name] = default

    def dropdown(self, name, default, choices, label=None):
        assert default in choices, f"dropdown {name}: default {default!r} not in {choices}"
        self.defined[name], self.choices[name] = default, list(choices)

    def get(self, name):
        if name not in self.defined:
            raise ValueError(f"InputWidgetNotDefined: no widget named {name}")
        value = self.values.get(name, self.defined[name])
        if name in self.choices and value not in self.choices[name]:
            raise ValueError(f"widget {name}: {value!r} is not one of {self.choices[name]}")
        return value


class Notebook:
    def exit(self, value):
        raise NotebookExit(value)


class DbUtils:
    def __init__(self, values):
        self.widgets = Widgets(values)
        self.notebook = Notebook()


def cells(path: str) -> list[str]:
    with open(path) as fh:
        text = fh.read()
    assert text.startswith("# Databricks notebook source\n"), path
    return text[len("# Databricks notebook source\n"):].split(SEPARATOR)


def is_magic(cell: str) -> bool:
    lines = [line for line in cell.strip().splitlines() if line.strip()]
    return bool(lines) and all(line.startswith("# MAGIC") for line in lines)


def run_notebook(spark, name: str, widgets: dict[str, str]) -> tuple[dict, dict]:
    """Execute every non-MAGIC cell in one namespace (as a notebook does); returns (exit value, namespace)."""
    displayed = []
    ns = {"spark": spark, "dbutils": DbUtils(widgets), "display": displayed.append, "__name__": "__main__"}
    for i, cell in enumerate(cells(os.path.join(REPO, "jobs", "notebooks", f"{name}.py"))):
        if is_magic(cell):
            continue
        try:
            exec(compile(cell, f"{name}.py[cell {i}]", "exec"), ns)
        except NotebookExit as done:
            ns["_displayed"] = displayed
            return json.loads(done.value), ns
    raise AssertionError(f"notebook {name} never called dbutils.notebook.exit")


def _arrays(df):
    from pyspark.ml.functions import vector_to_array

    pdf = df.select(vector_to_array("features").alias("x"), "label").toPandas()
    return np.stack(pdf["x"].to_numpy()), pdf["label"].to_numpy()


def test_every_notebook_is_databricks_source_and_sets_no_master():
    assert {os.path.basename(p) for p in NOTEBOOKS} >= {"clustering.py", "classification.py", "deep_learning.py",
                                                        "rl.py"}
    for path in NOTEBOOKS:
        parts = cells(path)
        assert any("%pip install" in c for c in parts if is_magic(c)), path
        text = open(path).read()
        assert ".master(" not in text and "local[" not in text and "getOrCreate" not in text, path
        assert 'get_spark("databricks")' in text, path
        for i, cell in enumerate(parts):
            if not is_magic(cell):
                compile(cell, f"{path}[{i}]", "exec")  # every code cell is valid Python on its own


def test_clustering_notebook(spark, tmp_path):
    from sklearn.cluster import KMeans as SkKMeans

    master = spark.sparkContext.master
    out = tmp_path / "models"
    metrics, ns = run_notebook(spark, "clustering", {"rows": "3000", "features": "4", "k": "4", "max_k": "6",
                                                     "output": str(out)})
    assert spark.sparkContext.master == master  # the notebook used the session it was given
    assert metrics["rows"] == 3000 and metrics["engine"] == "bsp"
    X, y = _arrays(ns["df"])
    sk = SkKMeans(n_clusters=4, n_init=10, random_state=0).fit(X)
    # our k-means reaches scikit-learn's optimum on the same rows (well-separated blobs)
    assert ns["kmeans"].summary.inertia == pytest.approx(sk.inertia_, rel=1e-3)
    assert metrics["kmeans"]["ari"] > 0.95 and metrics["fuzzy_cmeans"]["k"] == 4
    assert metrics["fuzzy_cmeans"]["ari"] > 0.95
    assert len(ns["_displayed"]) >= 3
    from sparkml_dist.clustering import FuzzyCMeansModel, KMeansModel

    assert np.allclose(KMeansModel.load(str(out / "kmeans")).centers, ns["kmeans"].centers)
    assert FuzzyCMeansModel.load(str(out / "fuzzy_cmeans")).getK() == 4


def test_classification_notebook(spark):
    from sklearn.ensemble import AdaBoostClassifier as SkAdaBoost
    from sklearn.svm import SVC

    metrics, ns = run_notebook(spark, "classification", {"rows": "4000", "rounds": "10", "svm_rows": "1500"})
    Xtr, ytr = _arrays(ns["train"])
    Xte, yte = _arrays(ns["test"])
    assert metrics["train_rows"] == len(ytr) and metrics["test_rows"] == len(yte)
    sk = SkAdaBoost(n_estimators=10, random_state=0).fit(Xtr, ytr)
    assert abs(metrics["adaboost"]["accuracy"] - sk.score(Xte, yte)) < 0.03
    Xs, ys = _arrays(ns["svm_train"])
    svc = SVC(C=1.0, kernel="rbf", gamma="scale").fit(Xs, ys)
    assert abs(metrics["svm"]["accuracy"] - svc.score(Xte, yte)) < 0.01
    assert metrics["svm"]["support_vectors"] == pytest.approx(int(svc.n_support_.sum()), rel=0.02)


@pytest.mark.parametrize("widgets, error, match", [
    ({"rows": "-5"}, ValueError, r"widget 'rows' = '-5': must be >= 1"),
    ({"k": "four"}, ValueError, r"widget 'k' = 'four': expected int"),
    ({"max_k": "3"}, ValueError, r"widget 'max_k' = '3': must be >= 8"),
    ({"engine": "spark"}, ValueError, r"widget engine: 'spark' is not one of \['bsp', 'mapreduce'\]"),
    ({"input": "/no/such/data.parquet"}, FileNotFoundError, r"widget 'input' = '/no/such/data.parquet': no such"),
])
def test_clustering_notebook_bad_widgets(spark, widgets, error, match):
    dbutils_values = dict(widgets)
    with pytest.raises(error, match=match):
        run_notebook(spark, "clustering", dbutils_values)


def test_notebook_bad_widgets_before_training(spark, tmp_path, monkeypatch):
    """An existing output without overwrite, a bad C, a non-numeric rows: refused in the parameter cell, before
    any data is generated or model trained (the old output is left as it was)."""
    from sparkml_dist.classification import AdaBoostClassifier

    def no_training(self, *a, **k):
        raise AssertionError("trained despite a bad widget")

    monkeypatch.setattr(AdaBoostClassifier, "fit", no_training)
    out = tmp_path / "old"
    out.mkdir()
    (out / "keep").write_text("x")
    with pytest.raises(FileExistsError, match=r"widget 'output' = .*already exists"):
        run_notebook(spark, "classification", {"output": str(out)})
    assert (out / "keep").read_text() == "x"
    with pytest.raises(ValueError, match=r"widget 'C' = 0.0: must be > 0"):
        run_notebook(spark, "classification", {"C": "0"})
    with pytest.raises(ValueError, match=r"widget 'test_fraction' = 1.5"):
        run_notebook(spark, "classification", {"test_fraction": "1.5"})
    with pytest.raises(ValueError, match=r"widget 'rows' = '1e3': expected int"):
        run_notebook(spark, "classification", {"rows": "1e3"})


def test_deep_learning_notebook(spark, tmp_path):
    """LeNet-5 DDP on digits: every rank's result adds up to the training rows, the held-out accuracy beats a
    threshold and stays near scikit-learn's logistic regression on the same split, the converter's loader gives
    the same accuracy as ``transform``, and the saved model predicts as the trained one."""
    from sklearn.linear_model import LogisticRegression

    from sparkml_dist.deep import TorchModel

    out = tmp_path / "model"
    metrics, ns = run_notebook(spark, "deep_learning", {"epochs": "12", "converter_cache": f"file://{tmp_path}/cache",
                                                        "output": str(out)})
    Xtr, ytr = _arrays(ns["train"])
    Xte, yte = _arrays(ns["test"])
    assert metrics["train_rows"] == len(ytr) and metrics["test_rows"] == len(yte) and len(ytr) + len(yte) == 1797
    ranks = metrics["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world_size"] == 2 for r in ranks)
    assert sum(r["rows"] for r in ranks) == len(ytr)
    expected_counts = np.bincount(ytr.astype(int), minlength=10).tolist()
    assert all(r["class_counts"] == expected_counts for r in ranks)  # the all-reduce reached every rank
    assert [h["epoch"] for h in metrics["history"]] == list(range(1, 13))
    assert metrics["history"][-1]["loss"] < metrics["history"][0]["loss"]
    reference = LogisticRegression(max_iter=2000).fit(Xtr, ytr).score(Xte, yte)
    assert metrics["test_accuracy"] > 0.9 and metrics["test_accuracy"] > reference - 0.05, (metrics, reference)
    assert metrics["converter_rows"] == len(yte)
    assert metrics["converter_accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-9)
    loaded = TorchModel.load(str(out / "model"))
    assert np.allclose(loaded.predict_numpy(Xte[:50]), ns["model"].predict_numpy(Xte[:50]), atol=1e-6)


def _random_cartpole_return(episodes: int, seed: int) -> float:
    """Uniformly random actions on the evaluation seeds, written with gymnasium directly (not the package)."""
    import gymnasium as gym

    rng = np.random.default_rng(123)
    total = 0.0
    for i in range(episodes):
        env = gym.make("CartPole-v1")
        env.reset(seed=seed + i)
        done, ret = False, 0.0
        while not done:
            _, r, term, trunc, _ = env.step(int(rng.integers(0, 2)))
            ret, done = ret + r, term or trunc
        total += ret
        env.close()
    return total / episodes


def test_rl_notebook(spark, tmp_path):
    """IMPALA on CartPole through the spark runner: the greedy return clears a random policy's (computed here with
    gymnasium) by a wide margin, and the saved policy gives the same greedy return after loading."""
    from sparkml_dist.rl import RLResult

    out = tmp_path / "policy"
    metrics, ns = run_notebook(spark, "rl", {"total_steps": "24000", "output": str(out)})
    random_return = _random_cartpole_return(10, 10_000)
    assert metrics["algorithm"] == "impala" and metrics["runner"] == "spark"
    assert metrics["stats"]["env_steps"] >= 24_000 and metrics["stats"]["stages"] == 1
    assert metrics["random_return"] == pytest.approx(random_return, rel=0.5)  # same order: both ~20
    assert metrics["greedy_return"] >= max(100.0, 4 * random_return), metrics
    assert metrics["history"][-1]["env_steps"] == metrics["stats"]["env_steps"]
    loaded = RLResult.load(str(out / "policy"))
    assert loaded.evaluate(episodes=10, seed=10_000) == pytest.approx(metrics["greedy_return"])


@pytest.mark.parametrize("name, widgets, error, match", [
    ("deep_learning", {"epochs": "0"}, ValueError, r"widget 'epochs' = '0': must be >= 1"),
    ("deep_learning", {"lr": "-1"}, ValueError, r"widget 'lr' = '-1': expected positive float"),
    ("deep_learning", {"lr": "nan"}, ValueError, r"widget 'lr' = 'nan': expected positive float"),
    ("deep_learning", {"workers": "9"}, ValueError, r"widget 'workers' = 9: the cluster has 2 free task slots"),
    ("deep_learning", {"batch_size": "1"}, ValueError, r"widget 'batch_size' = 1: the global batch must be >= the 2"),
    ("deep_learning", {"model": "resnet"}, ValueError, r"widget model: 'resnet' is not one of"),
    ("deep_learning", {"input": "iris"}, ValueError, r"widget 'model' = 'lenet5': needs 64 \(8x8\) features, .* 4"),
    ("deep_learning", {"input": "/no/such.parquet"}, FileNotFoundError, r"widget 'input' = '/no/such.parquet'"),
    ("deep_learning", {"converter_cache": "/tmp/x"}, ValueError, r"widget 'converter_cache' = '/tmp/x': expected"),
    ("deep_learning", {"test_fraction": "0"}, ValueError, r"widget 'test_fraction' = 0.0: must be between"),
    ("rl", {"env": "NoSuchEnv-v9"}, ValueError, r"widget 'env' = 'NoSuchEnv-v9': env='NoSuchEnv-v9' is not a"),
    ("rl", {"total_steps": "100"}, ValueError, r"widget 'total_steps' = 100: totalSteps=100 is smaller than one"),
    ("rl", {"total_steps": "many"}, ValueError, r"widget 'total_steps' = 'many': expected int"),
    ("rl", {"actors": "5"}, ValueError, r"widget 'actors' = 5: the cluster has 2 free task slots"),
    ("rl", {"params": "{unrollLength: 16}"}, ValueError, r"widget 'params' = '\{unrollLength: 16\}': expected a JSON"),
    ("rl", {"params": '{"unrolLength": 16}'}, ValueError,
     r"widget 'params': ImpalaConfig: unknown parameter\(s\) unrolLength"),
    ("rl", {"params": '{"learningRate": -1}'}, ValueError, r"widget 'params': learningRate must be > 0"),
    ("rl", {"algorithm": "dqn"}, ValueError, r"widget algorithm: 'dqn' is not one of"),
    ("rl", {"eval_episodes": "0"}, ValueError, r"widget 'eval_episodes' = '0': must be >= 1"),
])
def test_deep_and_rl_notebooks_bad_widgets(spark, monkeypatch, name, widgets, error, match):
    """Refused in the parameter cell, before any rank or actor starts (training is patched to fail loudly)."""
    from sparkml_dist.deep import TorchEstimator
    from sparkml_dist.rl.algorithm import Algorithm

    def no_training(self, *a, **k):
        raise AssertionError("trained despite a bad widget")

    monkeypatch.setattr(TorchEstimator, "fit", no_training)
    monkeypatch.setattr(Algorithm, "train", no_training)
    with pytest.raises(error, match=match):
        run_notebook(spark, name, widgets)


def test_deep_and_rl_notebooks_refuse_an_existing_output(spark, tmp_path):
    out = tmp_path / "old"
    out.mkdir()
    (out / "keep").write_text("x")
    for name in ("deep_learning", "rl"):
        with pytest.raises(FileExistsError, match=r"widget 'output' = .*already exists"):
            run_notebook(spark, name, {"output": str(out)})
    assert (out / "keep").read_text() == "x"
