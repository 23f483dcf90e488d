"""Optional MLflow tracking (``pip install 'sparkml_dist[mlflow]'``): params, per-iteration metrics and the model.

    from sparkml_dist import tracking

    with tracking.run("kmeans-nightly", tracking_uri="file:/tmp/mlruns", experiment="sparkml_dist"):
        est = KMeans(k=8)
        tracking.log_params(est)
        model = est.fit(df)              # each iteration's cost is logged as it happens (driver-side loops)
        tracking.log_fit(model)          # final summary, the history of loops that ran on the executors, the model

Per-iteration metrics come from the one progress path every loop already reports through
(:class:`sparkml_dist.runtime.logs.ProgressReporter`): each ``step`` calls :func:`on_progress`, which logs
``<loop>.<metric>`` at ``step=iteration`` when this process has an active MLflow run, and does nothing otherwise
(MLflow is never imported by it). Loops that run on the driver (MapReduce engines) are logged live; loops that run
inside a barrier stage (BSP engines: rank 0 is an executor, which has no run) are logged after the fit from the
history the model keeps, by :func:`log_fit`, so every run has the same metrics whichever engine trained it. For
deep learning the same holds for rank 0's history returned to the driver: ``log_fit(torch_model)`` logs
``torch.<metric>`` at ``step=epoch`` (loss, accuracy, samples/s, seconds) and the model. For RL, ``log_params``
takes the algorithm (its config), every history row is ``rl.<metric>`` at ``step=env_steps`` (return, loss,
policy lag, env steps/s; live when the learner runs on the driver, else from the result), and ``log_fit(result)``
logs the final stats and the policy (``policy.pt`` + ``run.json`` as artifacts, ``RLResult.load`` reads them).

Models are logged with ``mlflow.spark.log_model`` (our models are ``pyspark.ml`` models with their own writers, so
MLflow saves them inside a ``PipelineModel`` and ``mlflow.spark.load_model`` gives them back).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
from collections.abc import Iterator
from typing import Any

logger = logging.getLogger(__name__)

#: (run id, loop name) pairs whose metrics were logged live, so log_fit does not log them twice
_LIVE: set[tuple[str, str]] = set()


def _mlflow():
    try:
        import mlflow
    except ImportError:
        raise ImportError("MLflow tracking needs mlflow: pip install 'sparkml_dist[mlflow]'") from None
    return mlflow


def _numeric(metrics: dict) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out[str(key)] = float(value)
    return out


@contextlib.contextmanager
def run(name: str | None = None, *, tracking_uri: str | None = None, experiment: str | None = None,
        params: dict | None = None, tags: dict | None = None) -> Iterator[Any]:
    """An MLflow run (``mlflow.start_run``) on ``tracking_uri`` / ``experiment``, with ``params`` logged."""
    mlflow = _mlflow()
    if tracking_uri:
        if tracking_uri.startswith("file:") or "://" not in tracking_uri:
            # MLflow 3 keeps the file store in maintenance mode behind this switch; asking for one opts in
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        mlflow.set_tracking_uri(tracking_uri)
    if experiment:
        mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=name, tags=tags) as active:
        if params:
            mlflow.log_params(params)
        try:
            yield active
        finally:
            for key in [k for k in _LIVE if k[0] == active.info.run_id]:
                _LIVE.discard(key)


def on_progress(name: str, record: dict, step_key: str = "iteration") -> None:
    """Hook of ``ProgressReporter.step`` (and of RL's history rows, ``step_key="env_steps"``): log a loop's step
    when this process has an active MLflow run."""
    mlflow = sys.modules.get("mlflow")  # only if the user imported it; never imported here
    if mlflow is None:
        return
    try:
        active = mlflow.active_run()
        if active is None:
            return
        metrics = {f"{name}.{k}": v for k, v in _numeric(record).items() if k != step_key}
        mlflow.log_metrics(metrics, step=int(record.get(step_key, 0)))
        _LIVE.add((active.info.run_id, name))
    except Exception as exc:  # tracking must never break training
        logger.warning("MLflow logging of %s failed: %s", name, exc)


def log_params(estimator) -> dict:
    """Log an estimator's params (every set or default value), or an RL algorithm's config, and return them."""
    mlflow = _mlflow()
    if hasattr(estimator, "extractParamMap"):
        params = {p.name: v for p, v in estimator.extractParamMap().items()}
    elif hasattr(getattr(estimator, "config", None), "to_dict"):
        params = {"algorithm": estimator.name, **estimator.config.to_dict()}
    else:
        raise TypeError(f"log_params: expected a pyspark.ml estimator or an RL algorithm, got "
                        f"{type(estimator).__name__}")
    mlflow.log_params({k: (v if isinstance(v, (int, float, str, bool)) else repr(v)) for k, v in params.items()})
    return params


def _is_rl(model) -> bool:
    return hasattr(model, "policy") and hasattr(model, "stats") and hasattr(model, "algorithm")


#: fitted model -> (loop name, step key, history of per-step dicts) for the models of this package
def _histories(model) -> list[tuple[str, str, list[dict]]]:
    if _is_rl(model):  # RLResult: a row per progress step, at its env-step count
        return [("rl", "env_steps", list(model.history))]
    if type(model).__name__ == "TorchModel":  # rank 0's per-epoch history
        return [("torch", "epoch", [{"epoch": i + 1, **h} for i, h in enumerate(model.history)])]
    out = []
    summary = getattr(model, "summary", None) if getattr(model, "hasSummary", True) else None
    if summary is not None and getattr(summary, "costHistory", None):
        name = "kmeans" if type(model).__name__.startswith("KMeans") else "fuzzy_cmeans"
        times = list(getattr(summary, "iterationTimes", []) or [])
        key = "cost" if name == "kmeans" else "objective"
        out.append((name, "iteration", [{"iteration": i + 1, key: c, **({"seconds": times[i]} if i < len(times)
                                                                         else {})}
                                         for i, c in enumerate(summary.costHistory)]))
    history = getattr(model, "trainingHistory", None)
    if history:
        name = {"AdaBoostClassificationModel": "adaboost", "CascadeSVCModel": "cascade-svm"}.get(
            type(model).__name__, type(model).__name__.lower())
        out.append((name, "iteration", [{"iteration": i + 1, **h} for i, h in enumerate(history)]))
    return out


def _summary_metrics(model) -> dict[str, float]:
    if _is_rl(model):
        return _numeric(model.stats)
    if type(model).__name__ == "TorchModel":
        last = dict(model.history[-1]) if model.history else {}
        last.pop("epoch", None)
        return _numeric({**last, "epochs": len(model.history), "trainingSeconds": model.trainingSeconds})
    summary = getattr(model, "summary", None) if getattr(model, "hasSummary", True) else None
    values = dict(summary.asDict()) if summary is not None and hasattr(summary, "asDict") else {}
    for attr in ("dualObjective", "passes"):
        if hasattr(model, attr):
            values[attr] = getattr(model, attr)
    return _numeric(values)


def log_fit(model, *, name: str = "model", log_model: bool = True, pip_requirements: list[str] | None = None
            ) -> str | None:
    """Log a fitted model's final summary, the per-step history of loops not logged live (BSP ranks), and the
    model itself (``mlflow.spark.log_model``); returns the logged model's URI (or None)."""
    mlflow = _mlflow()
    active = mlflow.active_run()
    if active is None:
        raise RuntimeError("tracking.log_fit needs an active MLflow run (use `with tracking.run(...)`)")
    final = _summary_metrics(model)
    if final:
        mlflow.log_metrics({f"final.{k}": v for k, v in final.items()})
    for loop, step_key, history in _histories(model):
        if (active.info.run_id, loop) in _LIVE:
            continue
        for record in history:
            mlflow.log_metrics({f"{loop}.{k}": v for k, v in _numeric(record).items() if k != step_key},
                               step=int(record[step_key]))
    if not log_model:
        return None
    if _is_rl(model):  # a torch policy and its run record: artifacts that RLResult.load reads back
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            model.save(os.path.join(tmp, name))
            mlflow.log_artifacts(os.path.join(tmp, name), artifact_path=name)
        uri = f"{active.info.artifact_uri.rstrip('/')}/{name}"
        logger.info("logged the %s policy to MLflow run %s (%s)", model.algorithm, active.info.run_id, uri)
        return uri
    import mlflow.spark

    # explicit requirements: MLflow would otherwise reload the model in a subprocess to infer them; the name is
    # positional (``artifact_path`` in some 3.x releases, ``name`` in others)
    info = mlflow.spark.log_model(model, name, pip_requirements=pip_requirements or ["sparkml_dist", "pyspark"])
    logger.info("logged %s to MLflow run %s (%s)", type(model).__name__, active.info.run_id, info.model_uri)
    return info.model_uri
