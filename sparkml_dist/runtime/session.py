"""SparkSession from a named profile.

Profiles live in ``conf/spark/<name>.yaml``::

    master: local[*]          # omitted for databricks: the active session is reused, the master never set
    reuse_active: false
    driver_memory: auto       # auto = 40 % of this machine's RAM, at most 16g (local profiles only)
    local_ip: 127.0.0.1       # exported as SPARK_LOCAL_IP before the JVM starts
    conf: {spark.ui.enabled: false, ...}

Precedence, highest first: explicit arguments of :func:`get_spark` > environment (``SPARKML_DIST_MASTER``,
``SPARKML_DIST_CONF="k=v;k=v"``) > the profile file > :data:`DEFAULTS`.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)

PROFILES = ("local", "standalone", "yarn", "k8s", "databricks")

#: Settings every profile starts from (the lowest precedence).
DEFAULTS: dict[str, Any] = {
    "app_name": "sparkml-dist",
    "master": "local[*]",
    "reuse_active": False,
    "driver_memory": None,
    "local_ip": None,
    "conf": {
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.python.worker.reuse": "true",
    },
}


def conf_dir() -> Path:
    """Where profiles are read: ``$SPARKML_DIST_CONF_DIR``, ``./conf``, or the repository's ``conf/``."""
    env = os.environ.get("SPARKML_DIST_CONF_DIR")
    if env:
        return Path(env)
    for candidate in (Path.cwd() / "conf", Path(__file__).resolve().parents[2] / "conf"):
        if (candidate / "spark").is_dir():
            return candidate
    return Path(__file__).resolve().parents[2] / "conf"


def _as_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_conf_pairs(pairs: list[str] | str | None) -> dict[str, str]:
    """``["a=1", "b=2"]`` or ``"a=1;b=2"`` -> dict; a pair without ``=`` is an error naming it."""
    if not pairs:
        return {}
    if isinstance(pairs, str):
        pairs = [p for p in pairs.split(";") if p.strip()]
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--conf expects key=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def load_profile(profile: str = "local") -> dict[str, Any]:
    """The merged settings of a profile: :data:`DEFAULTS` overlaid with ``conf/spark/<profile>.yaml``."""
    path = conf_dir() / "spark" / f"{profile}.yaml"
    if not path.is_file():
        if profile == "local":
            data: dict[str, Any] = {}
        else:
            known = sorted(p.stem for p in (conf_dir() / "spark").glob("*.yaml"))
            raise ValueError(f"unknown Spark profile {profile!r}: no file {path} (known: {', '.join(known) or 'none'})")
    else:
        with open(path) as fh:
            data = yaml.safe_load(fh) or {}
        if not isinstance(data, dict):
            raise ValueError(f"Spark profile file {path} must hold a mapping, got {type(data).__name__}")
    merged = {**DEFAULTS, **{k: v for k, v in data.items() if k != "conf"}}
    merged["conf"] = {**DEFAULTS["conf"], **{k: _as_str(v) for k, v in (data.get("conf") or {}).items()}}
    merged["profile"] = profile
    return merged


def _auto_driver_memory() -> str:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return "2g"
    gib = max(1, min(16, int(total * 0.4 / 2**30)))
    return f"{gib}g"


def resolve_settings(profile: str | None = None, master: str | None = None, app_name: str | None = None,
                     conf: dict[str, Any] | None = None) -> dict[str, Any]:
    """Apply the precedence rules and return the final settings (no Spark started)."""
    profile = profile or os.environ.get("SPARKML_DIST_PROFILE", "local")
    settings = load_profile(profile)
    env_master = os.environ.get("SPARKML_DIST_MASTER")
    if env_master:
        settings["master"] = env_master
    settings["conf"].update(parse_conf_pairs(os.environ.get("SPARKML_DIST_CONF")))
    if master:
        settings["master"] = master
    if app_name:
        settings["app_name"] = app_name
    settings["conf"].update({k: _as_str(v) for k, v in (conf or {}).items()})
    if settings.get("driver_memory") == "auto":
        settings["driver_memory"] = _auto_driver_memory()
    return settings


def get_spark(profile: str | None = None, *, master: str | None = None, app_name: str | None = None,
              log_level: str = "WARN", conf: dict[str, Any] | None = None, **extra: Any):
    """Return a SparkSession configured from ``profile`` (see the module docstring for precedence).

    Spark conf entries come as ``conf={"spark.sql.shuffle.partitions": 4}`` and/or as extra keyword arguments, where
    dots may be written as underscores (``get_spark("local", spark_sql_shuffle_partitions=4)``). A key that does not
    start with ``spark.`` is an error (Spark itself would only warn and ignore it).
    """
    from pyspark.sql import SparkSession

    conf = {**(conf or {}), **{k.replace("_", ".") if k.startswith("spark_") else k: v for k, v in extra.items()}}
    unknown = sorted(k for k in conf if not str(k).startswith("spark."))
    if unknown:
        raise ValueError(f"get_spark: {unknown} are not Spark settings (keys start with 'spark.'; pass them as "
                         "conf={...} or spark_xxx_yyy=...)")
    settings = resolve_settings(profile, master, app_name, conf)
    if settings.get("reuse_active"):
        spark = SparkSession.getActiveSession()
        if spark is None:
            spark = SparkSession.builder.getOrCreate()
        for key, value in settings["conf"].items():
            try:
                spark.conf.set(key, value)
            except Exception:  # static confs cannot change on a running session
                logger.debug("could not set %s on the active session", key)
        return spark

    if settings.get("local_ip"):
        os.environ.setdefault("SPARK_LOCAL_IP", settings["local_ip"])
    # Executors on this machine run the same interpreter as the driver unless told otherwise.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)

    log4j = conf_dir() / "log4j2.properties"
    if log4j.is_file() and "spark.driver.extraJavaOptions" not in settings["conf"]:
        # WARN from the first line of the driver's own log (it starts before setLogLevel can run)
        settings["conf"]["spark.driver.extraJavaOptions"] = f"-Dlog4j.configurationFile=file:{log4j}"
    builder = SparkSession.builder.appName(settings["app_name"])
    if settings.get("master"):
        builder = builder.master(settings["master"])
    if settings.get("driver_memory"):
        builder = builder.config("spark.driver.memory", settings["driver_memory"])
    for key, value in settings["conf"].items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(log_level)
    logger.debug("SparkSession %s on %s (profile %s)", spark.version, spark.sparkContext.master, settings["profile"])
    return spark
