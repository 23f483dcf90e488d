"""Job registry and harness: ``sparkml-dist run JOB --config conf/jobs/JOB.yaml`` and the ``jobs/*.py`` scripts.

A job is a function ``fn(spark, cfg) -> JobResult`` registered under a name with :func:`register_job`, in a module
listed in :data:`JOB_MODULES` (imported only when that job runs). The harness

1. reads the YAML config (``conf/jobs/<job>.yaml``), applies ``key.sub=value`` overrides, and checks it;
2. builds the SparkSession from ``--profile`` / ``--conf`` (see :func:`sparkml_dist.runtime.get_spark`);
3. runs the job and writes its outputs atomically: everything goes to a temporary directory beside ``output``
   (models via their ``write().save``, DataFrames as Parquet, ``metrics.json``), which is renamed to ``output``
   only when all of it succeeded. A failed job leaves no half-written output.

Config layout::

    job: kmeans
    input: {generator: blobs, n_rows: 100000, n_features: 8, centers: 5, seed: 0, num_partitions: 4}
      # or {name: digits} (a bundled dataset), or {path: data/iris.csv, labelCol: label}
    params: {k: 5, maxIter: 20}        # the estimator's camelCase Params
    output: out/kmeans
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import yaml

from sparkml_dist.data.io import atomic_path, json_default

logger = logging.getLogger(__name__)

#: job name -> module that registers it (imported lazily)
JOB_MODULES: dict[str, str] = {
    "quickstart": "sparkml_dist.quickstart",
    "generate": "sparkml_dist.quickstart",
    "diagnose": "sparkml_dist.quickstart",
    "kmeans": "sparkml_dist.clustering.jobs",
    "fuzzy_cmeans": "sparkml_dist.clustering.jobs",
    "consensus": "sparkml_dist.clustering.jobs",
    "adaboost": "sparkml_dist.classification.jobs",
    "svm": "sparkml_dist.classification.jobs",
    "deep_torch": "sparkml_dist.deep.jobs",
}

_REGISTRY: dict[str, Callable] = {}


@dataclass
class JobResult:
    """What a job hands back to the harness to write."""

    metrics: dict[str, Any] = field(default_factory=dict)
    #: name -> pyspark.ml writable (saved to ``output/<name>``)
    models: dict[str, Any] = field(default_factory=dict)
    #: name -> DataFrame (saved as Parquet to ``output/<name>``)
    frames: dict[str, Any] = field(default_factory=dict)


def register_job(name: str):
    """Decorator: ``@register_job("kmeans") def run(spark, cfg) -> JobResult``."""

    def wrap(fn):
        _REGISTRY[name] = fn
        return fn

    return wrap


def get_job(name: str) -> Callable:
    if name not in _REGISTRY:
        module = JOB_MODULES.get(name)
        if module is None:
            raise ValueError(f"unknown job {name!r}; known jobs: {', '.join(sorted(JOB_MODULES))}")
        importlib.import_module(module)
    if name not in _REGISTRY:
        raise ValueError(f"job {name!r} is listed in {JOB_MODULES[name]} but that module did not register it")
    return _REGISTRY[name]


def _set_dotted(cfg: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = cfg
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ValueError(f"override {dotted!r}: {key!r} is not a mapping in the config")
    node[keys[-1]] = value


def load_config(path: str | None, overrides: list[str] | None = None, job: str | None = None) -> dict:
    """Read a job config file (if any) and apply ``a.b=value`` overrides (values parsed as YAML)."""
    cfg: dict = {}
    if path:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--config {path}: no such file")
        with open(path) as fh:
            cfg = yaml.safe_load(fh) or {}
        if not isinstance(cfg, dict):
            raise ValueError(f"--config {path}: expected a mapping at the top level")
    cfg = copy.deepcopy(cfg)
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r}: expected key=value")
        _set_dotted(cfg, key.strip(), yaml.safe_load(value))
    if job:
        if cfg.get("job") not in (None, job):
            raise ValueError(f"config is for job {cfg['job']!r}, not {job!r}")
        cfg["job"] = job
    if not cfg.get("job"):
        raise ValueError("the config names no job (set `job:` or pass the job name)")
    return cfg


def load_input(spark, spec: dict | str | None):
    """The input DataFrame of a job config: ``{generator: ...}``, ``{name: ...}`` or ``{path: ...}``."""
    from sparkml_dist.data.generators import GENERATORS
    from sparkml_dist.data.sources import load

    if spec is None:
        raise ValueError("the config has no `input` section")
    if isinstance(spec, str):
        return load(spark, spec)
    spec = dict(spec)
    if "generator" in spec:
        name = spec.pop("generator")
        if name not in GENERATORS:
            raise ValueError(f"input.generator={name!r}: unknown (known: {', '.join(sorted(GENERATORS))})")
        return GENERATORS[name](spark, **spec)
    target = spec.pop("name", None) or spec.pop("path", None)
    if target is None:
        raise ValueError("input needs one of `generator`, `name` or `path`")
    return load(spark, target, **spec)


def run_job(name: str, cfg: dict, spark, output: str | None = None) -> dict:
    """Run a registered job and write its outputs atomically to ``output`` (or ``cfg['output']``)."""
    fn = get_job(name)
    output = output or cfg.get("output")
    start = time.perf_counter()
    logger.info("job %s starting (output %s)", name, output or "none")
    result = fn(spark, cfg)
    if not isinstance(result, JobResult):
        raise TypeError(f"job {name!r} returned {type(result).__name__}, expected JobResult")
    metrics = {"job": name, "seconds": time.perf_counter() - start, **result.metrics}
    if output:
        with atomic_path(output, spark) as tmp:
            os.makedirs(tmp, exist_ok=True)  # metrics.json is written with the local filesystem API
            for key, model in result.models.items():
                model.write().overwrite().save(f"{tmp}/{key}")
            for key, frame in result.frames.items():
                frame.write.mode("overwrite").parquet(f"{tmp}/{key}")
            with open(os.path.join(tmp, "metrics.json"), "w") as fh:
                json.dump(metrics, fh, indent=2, sort_keys=True, default=json_default)
        logger.info("job %s wrote %s", name, output)
    logger.info("job %s finished in %.1fs", name, metrics["seconds"])
    return metrics


def script_main(job: str, argv: list[str] | None = None) -> dict:
    """Entry point of the thin ``jobs/<job>.py`` spark-submit scripts.

    ``spark-submit jobs/train_kmeans.py --config conf/jobs/kmeans.yaml --output out/km params.k=8``
    """
    from sparkml_dist.runtime import get_spark, setup_logging
    from sparkml_dist.runtime.session import parse_conf_pairs

    parser = argparse.ArgumentParser(prog=f"jobs/{job}", description=f"Run the {job!r} job of sparkml_dist.")
    parser.add_argument("--config", help=f"job config YAML (default conf/jobs/{job}.yaml when it exists)")
    parser.add_argument("--profile", default=None, help="Spark profile (conf/spark/*.yaml); under spark-submit "
                                                         "the submitted master wins")
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE", help="Spark conf entry")
    parser.add_argument("--output", help="output directory (overrides the config's `output`)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. params.k=8")
    args = parser.parse_args(argv)
    setup_logging()
    config = args.config
    if config is None and os.path.isfile(f"conf/jobs/{job}.yaml"):
        config = f"conf/jobs/{job}.yaml"
    cfg = load_config(config, args.overrides, job)
    conf = parse_conf_pairs(args.conf)
    # spark-submit starts this driver with PYSPARK_GATEWAY_PORT set: then master and deploy settings are its own
    submitted = bool(os.environ.get("PYSPARK_GATEWAY_PORT"))
    if submitted and not args.profile:
        spark = _submitted_session(job, conf)
    else:
        spark = get_spark(args.profile, app_name=f"sparkml-dist-{job}", **conf)
    try:
        return run_job(job, cfg, spark, args.output)
    finally:
        if not os.environ.get("SPARKML_DIST_KEEP_SESSION"):
            spark.stop()


def _submitted_session(job: str, conf: dict):
    """Under spark-submit: the master and deploy settings come from spark-submit, never from a profile."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(f"sparkml-dist-{job}")
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
