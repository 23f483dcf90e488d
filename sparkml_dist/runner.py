"""Job registry and harness: ``sparkml-dist run JOB --config conf/jobs/JOB.yaml`` and the ``jobs/*.py`` scripts.

A job is a function ``fn(spark, cfg) -> JobResult`` registered under a name with :func:`register_job`, and one row
of :data:`JOBS`: the module that registers it (imported only when that job runs) and the schema of its config. The
harness

1. reads the YAML config (``conf/jobs/<job>.yaml``), applies ``key.sub=value`` overrides, and validates the whole of
   it against the job's schema (:func:`validate_config`: unknown sections and keys with a "did you mean", wrong
   types, unknown generators, missing input paths, an existing output without ``overwrite``): every mistake is one
   :class:`ConfigError` line before any SparkSession exists;
2. builds the SparkSession from ``--profile`` / ``--conf`` (see :func:`sparkml_dist.runtime.get_spark`);
3. runs the job and writes its outputs atomically through Hadoop's FileSystem (:mod:`sparkml_dist.data.io`):
   everything goes to a temporary directory beside ``output`` (models via their ``write().save``, DataFrames as
   Parquet, ``metrics.json``), which replaces ``output`` only when all of it succeeded. A failed job leaves no
   half-written output, and the previous output stays until the new one is complete.

Config layout::

    job: kmeans
    input: {generator: blobs, n_rows: 100000, n_features: 8, centers: 5, seed: 0, num_partitions: 4}
      # or {name: digits} (a bundled dataset), or {path: data/iris.csv, labelCol: label}
    params: {k: 5, maxIter: 20}        # the estimator's camelCase Params
    output: out/kmeans
    overwrite: false                   # replace an existing output (or pass --overwrite)

Adding a job: write ``@register_job("name") def run(spark, cfg) -> JobResult`` in a module and add one row to
:data:`JOBS` naming that module, the estimator whose Params ``params`` holds (or an explicit ``{key: type}`` table),
and any extra top-level keys.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import importlib
import inspect
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from sparkml_dist.data.io import atomic_path, has_scheme, json_default, path_exists, write_text
from sparkml_dist.runtime.logs import UsageError

logger = logging.getLogger(__name__)


class ConfigError(UsageError):
    """A job config, command-line argument or input path is wrong; the message is one line naming it."""


@dataclass(frozen=True)
class JobSpec:
    """One row of the job table: where the job lives and what its config may hold."""

    module: str
    """Module whose ``@register_job`` registers the job function (imported only when the job runs)."""
    estimator: str | None = None
    """``"package.module:Class"``: ``params`` are that estimator's Params (keys and types checked by building it)."""
    params: Mapping[str, Any] | None = None
    """Or an explicit ``{key: type}`` table for ``params`` (``None`` and no estimator: the job takes no params)."""
    sections: Mapping[str, Any] = field(default_factory=dict)
    """Extra top-level keys and their types, e.g. ``{"test_fraction": float}``."""
    input: str = "required"
    """``"required"``, ``"optional"`` (the job has a default input) or ``"none"``."""
    validator: str | None = None
    """``"package.module:function"`` called with the whole config before Spark starts (for params whose schema
    depends on another key, e.g. the RL job's ``algorithm``); its ``ValueError``/``TypeError`` becomes a
    :class:`ConfigError`."""


_SPLIT = {"test_fraction": float, "seed": int}

#: The job table: name -> :class:`JobSpec`. A declarative table on purpose: add a job with one row.
JOBS: dict[str, JobSpec] = {
    "quickstart": JobSpec("sparkml_dist.quickstart", params={"k": int, "maxIter": int, "adaboostRounds": int},
                          input="optional"),
    "generate": JobSpec("sparkml_dist.quickstart"),
    "diagnose": JobSpec("sparkml_dist.quickstart", input="none",
                        sections={"slot_wait": float, "min_slots": int, "tasks": int, "executors": int}),
    "kmeans": JobSpec("sparkml_dist.clustering.jobs", estimator="sparkml_dist.clustering:KMeans"),
    "fuzzy_cmeans": JobSpec("sparkml_dist.clustering.jobs", estimator="sparkml_dist.clustering:FuzzyCMeans"),
    "consensus": JobSpec("sparkml_dist.clustering.jobs", estimator="sparkml_dist.clustering:ConsensusClustering"),
    "adaboost": JobSpec("sparkml_dist.classification.jobs", estimator="sparkml_dist.classification:AdaBoostClassifier",
                        sections=_SPLIT),
    "svm": JobSpec("sparkml_dist.classification.jobs", estimator="sparkml_dist.classification:CascadeSVC",
                   sections=_SPLIT),
    "rl": JobSpec("sparkml_dist.rl.jobs", input="none", validator="sparkml_dist.rl.jobs:build",
                  sections={"algorithm": str, "params": dict, "evaluate": dict}),
    "deep_torch": JobSpec("sparkml_dist.deep.jobs", estimator="sparkml_dist.deep:TorchEstimator",
                          validator="sparkml_dist.deep.jobs:check_model",
                          sections={**_SPLIT, "model": dict, "scale": float}),
}

#: Top-level keys every job config may have.
COMMON_SECTIONS: dict[str, Any] = {"job": str, "output": str, "overwrite": bool}

#: Keys of ``input: {name: ...}`` / ``input: {path: ...}`` (the keyword arguments of ``data.sources.load``).
LOAD_KEYS: dict[str, Any] = {"labelCol": str, "fmt": str, "num_partitions": int}

_SOURCES = ("generator", "name", "path")
_REGISTRY: dict[str, Callable] = {}
_SPECS: dict[str, JobSpec] = {}


@dataclass
class JobResult:
    """What a job hands back to the harness to write."""

    metrics: dict[str, Any] = field(default_factory=dict)
    #: name -> pyspark.ml writable (saved to ``output/<name>``)
    models: dict[str, Any] = field(default_factory=dict)
    #: name -> DataFrame (saved as Parquet to ``output/<name>``)
    frames: dict[str, Any] = field(default_factory=dict)


def register_job(name: str, spec: JobSpec | None = None) -> Callable[[Callable], Callable]:
    """Decorator: ``@register_job("kmeans") def run(spark, cfg) -> JobResult``.

    ``spec`` gives the config schema of a job that has no row in :data:`JOBS` (a job registered outside the
    package); without either, its config is not validated beyond the common keys.
    """

    def wrap(fn: Callable) -> Callable:
        _REGISTRY[name] = fn
        if spec is not None:
            _SPECS[name] = spec
        return fn

    return wrap


def did_you_mean(word: str, choices) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``choices`` to a misspelt ``word``, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def job_spec(name: str) -> JobSpec | None:
    """The schema of job ``name``; unknown names raise :class:`ConfigError` with the known ones."""
    if name in JOBS:
        return JOBS[name]
    if name in _SPECS or name in _REGISTRY:
        return _SPECS.get(name)
    raise ConfigError(f"unknown job {name!r}{did_you_mean(name, JOBS)}; known jobs: {', '.join(sorted(JOBS))}")


def get_job(name: str) -> Callable:
    """The registered function of job ``name`` (importing the module of its :data:`JOBS` row)."""
    spec = job_spec(name)
    if name not in _REGISTRY and spec is not None:
        importlib.import_module(spec.module)
    if name not in _REGISTRY:
        raise ConfigError(f"job {name!r} is listed in {spec.module if spec else '?'} but that module did not "
                          "register it")
    return _REGISTRY[name]


def _set_dotted(cfg: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = cfg
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted!r}: {key!r} is not a mapping in the config")
    node[keys[-1]] = value


def load_config(path: str | None, overrides: list[str] | None = None, job: str | None = None,
                validate: bool = True) -> dict:
    """Read a job config file (if any), apply ``a.b=value`` overrides (values parsed as YAML) and validate it.

    Raises :class:`ConfigError` (one line) for a missing or unreadable file, a malformed override, a config for
    another job, and everything :func:`validate_config` finds.
    """
    cfg: dict = {}
    if path:
        if not os.path.isfile(path):
            raise ConfigError(f"--config {path}: no such file")
        try:
            with open(path) as fh:
                cfg = yaml.safe_load(fh) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"--config {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(cfg, dict):
            raise ConfigError(f"--config {path}: expected a mapping at the top level")
    cfg = copy.deepcopy(cfg)
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected key=value")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"override {item!r}: the value is not valid YAML") from None
        key = key.strip()
        source = key.split(".")
        if (len(source) == 2 and source[0] == "input" and source[1] in _SOURCES
                and isinstance(cfg.get("input"), dict) and source[1] not in cfg["input"]):
            cfg["input"] = {}  # `input.path=...` over a file's `input.generator`: a new source, not a merge
        _set_dotted(cfg, key, parsed)
    if job:
        if cfg.get("job") not in (None, job):
            raise ConfigError(f"config is for job {cfg['job']!r}, not {job!r}")
        cfg["job"] = job
    if not cfg.get("job"):
        raise ConfigError("the config names no job (set `job:` or pass the job name)")
    if validate:
        validate_config(cfg)
    return cfg


def _type_name(expected: Any) -> str:
    types = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(t.__name__ for t in types)


def _check_type(where: str, value: Any, expected: Any) -> None:
    """``expected``: a type or tuple of types; ``float`` accepts ints, ``int`` refuses bools, ``None`` anything."""
    if expected is None or value is None:
        return
    types = expected if isinstance(expected, tuple) else (expected,)
    if float in types:
        types = (*types, int)
    if isinstance(value, bool) and bool not in types:
        ok = False
    else:
        ok = isinstance(value, types)
    if not ok:
        raise ConfigError(f"{where}={value!r}: expected {_type_name(expected)}, got {type(value).__name__}")


def _check_keys(where: str, given: Mapping[str, Any], allowed: Mapping[str, Any]) -> None:
    for key, value in given.items():
        if key not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise ConfigError(f"{where}{key}: unknown key{did_you_mean(str(key), allowed)} (known: {known})")
        _check_type(f"{where}{key}", value, allowed[key])


def _signature_types(fn: Callable, skip: tuple[str, ...] = ("spark",)) -> dict[str, Any]:
    """``{parameter: type}`` of a generator, the type taken from its default (``None`` default: anything)."""
    out: dict[str, Any] = {}
    for name, param in inspect.signature(fn).parameters.items():
        if name in skip or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = param.default
        if default is inspect.Parameter.empty or default is None:
            out[name] = None
        elif isinstance(default, bool):
            out[name] = bool
        elif isinstance(default, int):
            out[name] = (int, list) if name == "centers" else int  # blobs: a count or the centre coordinates
        elif isinstance(default, float):
            out[name] = float
        elif isinstance(default, tuple | list):
            out[name] = (list, tuple)
        else:
            out[name] = type(default)
    return out


def validate_input(spec: Any, where: str = "input") -> None:
    """Check an ``input`` section without Spark: the source exists, its keys and their types fit."""
    from sparkml_dist.data.generators import GENERATORS
    from sparkml_dist.data.sources import BUNDLED

    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a mapping ({{generator: ...}}, {{name: ...}} or {{path: ...}}), "
                          f"got {type(spec).__name__}")
    sources = [k for k in ("generator", "name", "path") if k in spec]
    if len(sources) != 1:
        if not sources:
            unknown = [k for k in spec if k not in ("generator", "name", "path")]
            hint = did_you_mean(str(unknown[0]), ("generator", "name", "path")) if unknown else ""
            raise ConfigError(f"{where} needs one of `generator`, `name` or `path`{hint}")
        raise ConfigError(f"{where}: give only one of {', '.join(sources)}")
    kind = sources[0]
    rest = {k: v for k, v in spec.items() if k != kind}
    target = spec[kind]
    if kind == "generator":
        if target not in GENERATORS:
            raise ConfigError(f"{where}.generator={target!r}: unknown generator{did_you_mean(str(target), GENERATORS)}"
                              f" (known: {', '.join(sorted(GENERATORS))})")
        _check_keys(f"{where}.", rest, _signature_types(GENERATORS[target]))
        for key in ("n_rows", "n_features", "num_partitions"):
            if isinstance(rest.get(key), int) and rest[key] < 1:
                raise ConfigError(f"{where}.{key}={rest[key]}: must be >= 1")
        return
    _check_type(f"{where}.{kind}", target, str)
    _check_keys(f"{where}.", rest, LOAD_KEYS)
    if kind == "name" and target in BUNDLED:
        return
    if not has_scheme(target) and not os.path.exists(target):
        what = (f"neither a bundled dataset ({', '.join(sorted(BUNDLED))}) nor an existing path" if kind == "name"
                else "no such file or directory")
        raise ConfigError(f"{where}.{kind}={target!r}: {what}")


def _validate_params(name: str, spec: JobSpec, params: Any) -> None:
    if not isinstance(params, dict):
        raise ConfigError(f"params: expected a mapping, got {type(params).__name__}")
    if spec.estimator:
        module, _, cls_name = spec.estimator.partition(":")
        cls = getattr(importlib.import_module(module), cls_name)
        known = {p.name for p in cls().params}
        for key in params:
            if key not in known:
                raise ConfigError(f"params.{key}: not a Param of {cls_name}{did_you_mean(str(key), known)} "
                                  f"(known: {', '.join(sorted(known))})")
        try:
            cls(**params)  # the estimator's own type converters check every value (pure Python, no Spark)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"params: {str(exc).splitlines()[0]}") from None
    elif spec.params is not None:
        _check_keys("params.", params, spec.params)
    elif params:
        raise ConfigError(f"params: job {name!r} takes no params (got {', '.join(map(str, params))})")


def validate_config(cfg: Mapping[str, Any]) -> None:
    """Check a whole job config against its job's schema; the first problem raises :class:`ConfigError`.

    Nothing here starts Spark: generators and estimators are checked through their signatures and Params,
    input paths on the local filesystem (URIs such as ``hdfs://`` are checked when the job reads them).
    """
    name = cfg.get("job")
    if not isinstance(name, str):
        raise ConfigError("the config names no job (set `job:` or pass the job name)")
    spec = job_spec(name)
    allowed: dict[str, Any] = dict(COMMON_SECTIONS)
    if spec is None:  # a job registered without a schema: only the common keys are known
        for key in ("output", "overwrite"):
            if key in cfg:
                _check_type(key, cfg[key], COMMON_SECTIONS[key])
        return
    if spec.input != "none":
        allowed["input"] = dict
    if spec.estimator or spec.params is not None:
        allowed["params"] = dict
    allowed.update(spec.sections)
    for key, value in cfg.items():
        if key not in allowed:
            raise ConfigError(f"{key}: unknown section for job {name!r}{did_you_mean(str(key), allowed)} "
                              f"(known: {', '.join(sorted(allowed))})")
        if key not in ("input", "params"):
            _check_type(key, value, allowed[key])
    if "input" in cfg:
        validate_input(cfg["input"])
    elif spec.input == "required":
        raise ConfigError(f"job {name!r} needs an `input` section (e.g. input.generator=blobs or input.path=...)")
    if "params" in cfg and (spec.estimator or spec.params is not None):
        _validate_params(name, spec, cfg["params"])
    if spec.validator:
        module, _, fn_name = spec.validator.partition(":")
        try:
            getattr(importlib.import_module(module), fn_name)(dict(cfg))
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc).splitlines()[0]) from None
    fraction = cfg.get("test_fraction")
    if isinstance(fraction, int | float) and not 0 <= fraction < 1:
        raise ConfigError(f"test_fraction={fraction}: must be in [0, 1)")


def check_output(output: str | None, overwrite: bool, spark=None) -> None:
    """Refuse an existing ``output`` unless ``overwrite`` (local paths: no Spark needed; URIs: with ``spark``)."""
    if not output or overwrite:
        return
    if has_scheme(output) and spark is None:
        return  # checked again through Hadoop's FileSystem once the session exists
    if path_exists(output, spark):
        raise ConfigError(f"output {output} exists: pass --overwrite (or set `overwrite: true`) to replace it; "
                          "the old output was left as it is")


def load_input(spark, spec: dict | str | None):
    """The input DataFrame of a job config: ``{generator: ...}``, ``{name: ...}`` or ``{path: ...}``."""
    from sparkml_dist.data.generators import GENERATORS
    from sparkml_dist.data.sources import load

    if spec is None:
        raise ConfigError("the config has no `input` section")
    if isinstance(spec, str):
        return load(spark, spec)
    spec = dict(spec)
    if "generator" in spec:
        name = spec.pop("generator")
        if name not in GENERATORS:
            raise ConfigError(f"input.generator={name!r}: unknown generator (known: {', '.join(sorted(GENERATORS))})")
        return GENERATORS[name](spark, **spec)
    target = spec.pop("name", None) or spec.pop("path", None)
    if target is None:
        raise ConfigError("input needs one of `generator`, `name` or `path`")
    return load(spark, target, **spec)


def run_job(name: str, cfg: dict, spark, output: str | None = None, overwrite: bool | None = None) -> dict:
    """Validate ``cfg``, run job ``name`` and write its outputs atomically to ``output`` (or ``cfg['output']``).

    An existing output is replaced only with ``overwrite`` (or ``cfg['overwrite']``); otherwise this raises
    :class:`ConfigError` before the job runs, and the old output stays. The outputs, ``metrics.json`` included, go
    through Hadoop's FileSystem, so the same holds for ``hdfs://`` and ``s3a://`` outputs.
    """
    if cfg.get("job") not in (None, name):
        raise ConfigError(f"config is for job {cfg['job']!r}, not {name!r}")
    validate_config({**cfg, "job": name})
    fn = get_job(name)
    output = output or cfg.get("output")
    overwrite = bool(cfg.get("overwrite", False)) if overwrite is None else overwrite
    check_output(output, overwrite, spark)
    start = time.perf_counter()
    logger.info("job %s starting (output %s)", name, output or "none")
    result = fn(spark, cfg)
    if not isinstance(result, JobResult):
        raise TypeError(f"job {name!r} returned {type(result).__name__}, expected JobResult")
    metrics = {"job": name, "seconds": time.perf_counter() - start, **result.metrics}
    if output:
        with atomic_path(output, spark, overwrite=overwrite) as tmp:
            for key, model in result.models.items():
                model.write().overwrite().save(f"{tmp}/{key}")
            for key, frame in result.frames.items():
                frame.write.mode("overwrite").parquet(f"{tmp}/{key}")
            write_text(f"{tmp}/metrics.json", json.dumps(metrics, indent=2, sort_keys=True, default=json_default),
                       spark)
        logger.info("job %s wrote %s", name, output)
    logger.info("job %s finished in %.1fs", name, metrics["seconds"])
    return metrics


def prepare(job: str, config: str | None, overrides: list[str], output: str | None, overwrite: bool) -> dict:
    """Everything that can be checked before Spark starts: the job, its config file and schema, the output."""
    job_spec(job)  # unknown job: one line, before anything else
    if config is None and os.path.isfile(os.path.join("conf", "jobs", f"{job}.yaml")):
        config = os.path.join("conf", "jobs", f"{job}.yaml")
    cfg = load_config(config, overrides, job)
    check_output(output or cfg.get("output"), overwrite or bool(cfg.get("overwrite", False)))
    return cfg


def script_main(job: str, argv: list[str] | None = None) -> dict:
    """Entry point of the thin ``jobs/<job>.py`` spark-submit scripts.

    ``spark-submit jobs/train_kmeans.py --config conf/jobs/kmeans.yaml --output out/km params.k=8``

    A mistake in the config or arguments exits with status 2 and one line, before the SparkSession is built; a
    failing job exits with status 1, one line and its cause (the full trace in a log file, or on stderr with
    ``--verbose``).
    """
    from sparkml_dist.runtime import get_spark, setup_logging
    from sparkml_dist.runtime.logs import report_failure
    from sparkml_dist.runtime.session import parse_conf_pairs

    parser = argparse.ArgumentParser(prog=f"jobs/{job}", description=f"Run the {job!r} job of sparkml_dist.")
    parser.add_argument("--config", help=f"job config YAML (default conf/jobs/{job}.yaml when it exists)")
    parser.add_argument("--profile", default=None, help="Spark profile (conf/spark/*.yaml); under spark-submit "
                                                         "the submitted master wins")
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE", help="Spark conf entry")
    parser.add_argument("--output", help="output directory (overrides the config's `output`)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--verbose", action="store_true", help="full tracebacks on stderr")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. params.k=8")
    args = parser.parse_args(argv)
    setup_logging()
    spark = None
    try:
        cfg = prepare(job, args.config, args.overrides, args.output, args.overwrite)
        conf = parse_conf_pairs(args.conf)
        # spark-submit starts this driver with PYSPARK_GATEWAY_PORT set: then master and deploy settings are its own
        submitted = bool(os.environ.get("PYSPARK_GATEWAY_PORT"))
        if submitted and not args.profile:
            spark = _submitted_session(job, conf)
        else:
            spark = get_spark(args.profile, app_name=f"sparkml-dist-{job}", **conf)
        return run_job(job, cfg, spark, args.output, overwrite=args.overwrite or None)
    except (Exception, KeyboardInterrupt) as exc:
        raise SystemExit(report_failure(exc, verbose=args.verbose, prog=f"jobs/{job}")) from None
    finally:
        if spark is not None and not os.environ.get("SPARKML_DIST_KEEP_SESSION"):
            spark.stop()


def _submitted_session(job: str, conf: dict):
    """Under spark-submit: the master and deploy settings come from spark-submit, never from a profile."""
    from pyspark.sql import SparkSession

    from sparkml_dist.runtime.session import DEFAULTS

    builder = SparkSession.builder.appName(f"sparkml-dist-{job}")
    for key in ("spark.python.daemon.module", "spark.sql.execution.arrow.pythonUDF.columnarInput.enabled"):
        builder = builder.config(key, DEFAULTS["conf"][key])
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
