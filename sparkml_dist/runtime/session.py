"""SparkSession from a named profile.

Profiles live in ``conf/spark/<name>.yaml``::

    master: local[*]          # omitted for databricks: the active session is reused, the master never set
    reuse_active: false
    driver_memory: auto       # auto = 40 % of this machine's RAM, at most 16g (local profiles only)
    local_ip: 127.0.0.1       # exported as SPARK_LOCAL_IP before the JVM starts
    conf: {spark.ui.enabled: false, ...}

Precedence, highest first: explicit arguments of :func:`get_spark` > environment (``SPARKML_DIST_MASTER``,
``SPARKML_DIST_CONF="k=v;k=v"``) > the profile file > :data:`DEFAULTS`.

The master ``local-standalone`` means the cluster that ``sparkml-dist cluster start`` recorded (its state directory,
see :mod:`sparkml_dist.runtime.cluster`), so nobody has to copy its port. One process has one SparkContext: asking
:func:`get_spark` for a different master than the running session's raises :class:`SessionConflictError` (stop the
session first); a request that agrees with it returns the running session.
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

#: Spark's switch for Arrow UDFs reading columnar batches directly (breaks on Vector columns; see DEFAULTS).
COLUMNAR_UDF_INPUT = "spark.sql.execution.arrow.pythonUDF.columnarInput.enabled"
#: Our Python worker daemon (:mod:`sparkml_dist.runtime.pydaemon`).
DAEMON_MODULE = "sparkml_dist.runtime.pydaemon"

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
        # Spark 4.3 feeds Arrow UDFs straight from a columnar scan (Parquet) when this is on, and that path cannot
        # carry a Vector (UDT) column: every model's transform of `spark.read.parquet(...)` failed with
        # UNSUPPORTED_DATATYPE. See :func:`row_based_arrow_input`.
        COLUMNAR_UDF_INPUT: "false",
        # pyspark's worker daemon minus the BrokenPipeError tracebacks of workers the JVM hung up on
        "spark.python.daemon.module": DAEMON_MODULE,
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


LOCAL_STANDALONE = "local-standalone"


class SessionConflictError(RuntimeError):
    """A SparkSession with another master already runs in this process (one SparkContext per process)."""


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
    if settings.get("master") == LOCAL_STANDALONE:
        from sparkml_dist.runtime.cluster import recorded_master_url

        settings["master"] = recorded_master_url()
    return settings


def _same_master(requested: str, running: str) -> bool:
    """``local[*]`` (the local profile's default) accepts any running ``local[...]`` session, e.g. a test's."""
    if requested == running:
        return True
    return requested == "local[*]" and running.startswith("local")


def _check_running_master(settings: dict[str, Any]) -> None:
    from pyspark import SparkContext

    sc = SparkContext._active_spark_context
    requested = settings.get("master")
    if sc is None or not requested:
        return
    running = sc.master or ""
    if not _same_master(requested, running):
        raise SessionConflictError(
            f"get_spark({settings['profile']!r}) asks for master {requested}, but this process already runs a "
            f"SparkSession on {running} (one per process): call spark.stop() first, then get_spark again")


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

    _check_running_master(settings)
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
    row_based_arrow_input(spark)  # also on a session that was already running (its conf was not ours)
    spark.sparkContext.setLogLevel(log_level)
    logger.debug("SparkSession %s on %s (profile %s)", spark.version, spark.sparkContext.master, settings["profile"])
    return spark


def row_based_arrow_input(spark) -> None:
    """Make the session's Arrow UDFs read rows, not columnar batches, so a ``Vector`` column can reach them.

    With ``spark.sql.execution.arrow.pythonUDF.columnarInput.enabled`` on (Spark 4.3's default), an Arrow UDF placed
    directly over a columnar scan (any Parquet input) converts the scan's batch to Arrow itself, and that converter
    has no case for user-defined types: ``transform`` of a model on ``spark.read.parquet(path)`` failed with
    ``UNSUPPORTED_DATATYPE UDT(...)`` while CSV and cached input worked. No plan shape avoids it (the optimizer
    collapses any projection placed in between), so every ``transform`` of this package calls this first; our own
    profiles already start with the setting off. The setting is a runtime SQL conf: it applies to the session's
    later queries and only changes how batches reach Python, not results.
    """
    try:
        if spark.conf.get(COLUMNAR_UDF_INPUT, "false").lower() != "false":
            spark.conf.set(COLUMNAR_UDF_INPUT, "false")
            logger.info("set %s=false on this session: Vector columns cannot take Spark's columnar Arrow path",
                        COLUMNAR_UDF_INPUT)
    except Exception as exc:  # a Spark without the setting has no columnar path to avoid
        logger.debug("could not read or set %s: %s", COLUMNAR_UDF_INPUT, exc)
