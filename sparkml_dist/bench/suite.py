"""``sparkml-dist bench``: run the registered cases of a suite and write one report.

    sparkml-dist bench --suite quick|standard|full [--only clustering,adaboost] [--workers 1,2,4] [--out out/bench]
    sparkml-dist bench compare out/bench-a/results.json out/bench-b/results.json     # exit 1 on a regression

Every run first measures the machine (:mod:`~sparkml_dist.bench.calibration`), then runs each case of
:mod:`~sparkml_dist.bench.registry` ``repeats`` times with its baselines in the same process on the same data,
logging ``case i/N``, its quality and the elapsed time. A failing case is recorded with its error and the rest still
run; the exit code is 1 when one failed. With ``--workers 1,2,4`` the suite runs once per count on a local
standalone cluster of that many 1-core workers (speedup and scaling efficiency in the report); without it, on the
session of ``--profile``/``--master`` (``local[*]`` by default). The output directory (written atomically) holds
``results.json`` (one record per case, repeat and worker count), ``report.md`` and a self-contained ``report.html``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from sparkml_dist.bench import calibration as calib
from sparkml_dist.bench.registry import DEFAULT_REPEATS, SUITES, Case, CaseContext, select

logger = logging.getLogger(__name__)

SCHEMA = "sparkml-dist-bench/1"


def native_blas_available() -> bool:
    """Whether MLlib (netlib via dev.ludovic.netlib) can load a native BLAS on this machine."""
    import ctypes.util

    dirs = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib")
    return ctypes.util.find_library("blas") is not None or any(
        os.path.exists(os.path.join(d, "libblas.so.3")) for d in dirs)


def versions() -> dict[str, str]:
    """Versions of what the figures depend on (from package metadata: nothing heavy is imported)."""
    out = {"python": platform.python_version()}
    for dist in ("pyspark", "numpy", "scikit-learn", "pyarrow", "torch", "numba", "gymnasium", "sparkml_dist"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    try:
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        out["git"] = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"], capture_output=True,
                                    text=True, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        out["git"] = "unknown"
    return out


def machine(spark=None) -> dict:
    info = {"platform": platform.platform(), "cpus": os.cpu_count(), "native_blas": native_blas_available()}
    if spark is not None:
        info.update(spark=spark.version, master=spark.sparkContext.master,
                    default_parallelism=spark.sparkContext.defaultParallelism)
    return info


def _numbers(d: dict | None) -> dict:
    return {k: (float(v) if not isinstance(v, bool) else v) for k, v in (d or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _record(case: Case, suite: str, ctx: CaseContext, out: dict | None, error: BaseException | None,
            seconds: float, mach: dict, calibration: dict, vers: dict) -> dict:
    rec: dict[str, Any] = {
        "schema": SCHEMA, "case": case.id, "family": case.family, "name": case.name, "variant": case.variant,
        "dataset": case.dataset, "suite": suite, "size": ctx.size, "workers": ctx.workers, "repeat": ctx.repeat,
        "seed": ctx.seed, "quality": case.quality, "higher_is_better": case.higher_is_better,
        "config": {"size": ctx.size, "variant": case.variant, "seed": ctx.seed},
        "machine": mach, "calibration": calibration, "versions": vers, "wall_seconds": seconds,
    }
    if error is not None:
        rec.update(status="error", error=f"{type(error).__name__}: {error}",
                   traceback="".join(traceback.format_exception(error))[-4000:])
        return rec
    if not isinstance(out, dict) or not isinstance(out.get("seconds"), (int, float)):
        rec.update(status="error", error=f"case returned {type(out).__name__} without a numeric 'seconds'")
        return rec
    metrics = _numbers(out.get("metrics"))
    if case.quality not in metrics:
        rec.update(status="error", error=f"case returned no {case.quality!r} metric (its declared quality)")
        return rec
    baselines = {name: _numbers(b) for name, b in (out.get("baselines") or {}).items()}
    ratios: dict[str, float] = {}
    for name, b in baselines.items():
        if b.get("seconds"):
            ratios[f"speedup_vs_{name}"] = b["seconds"] / out["seconds"]
        if case.quality in b:
            ratios[f"{case.quality}_delta_vs_{name}"] = metrics[case.quality] - b[case.quality]
    rec.update(status="ok", seconds=float(out["seconds"]), metrics=metrics, baselines=baselines, ratios=ratios,
               curves={k: [float(x) for x in v] for k, v in (out.get("curves") or {}).items()},
               bytes=int(out["bytes"]) if out.get("bytes") is not None else None)
    return rec


def run_cases(spark, cases: list[Case], suite: str, seed: int = 0, repeats: int | None = None,
              workers: int | None = None, calibration: dict | None = None, start_index: int = 0,
              total: int | None = None, started: float | None = None) -> list[dict]:
    """Run ``cases`` on ``spark`` and return their records (a case that raises becomes an ``error`` record)."""
    repeats = repeats or DEFAULT_REPEATS[suite]
    total = total or len(cases) * repeats
    started = started or time.perf_counter()
    mach, vers = machine(spark), versions()
    shared: dict = {}
    records = []
    i = start_index
    from sparkml_dist.runtime.barrier import available_slots

    slots = available_slots(spark)
    for case in cases:
        if case.min_slots > slots:  # e.g. a 2-rank launch on a 1-worker cluster: not a failure of the case
            logger.warning("bench case %s%s skipped: it needs %d task slots at once, the session has %d", case.id,
                           f" workers={workers}" if workers else "", case.min_slots, slots)
            i += repeats
            continue
        for rep in range(repeats):
            i += 1
            ctx = CaseContext(spark, dict(case.sizes[suite]), seed, case.variant, workers, rep, shared, case.name)
            t = time.perf_counter()
            out, error = None, None
            try:
                out = case.fn(ctx)
            except Exception as exc:  # recorded; the rest of the suite still runs
                error = exc
            rec = _record(case, suite, ctx, out, error, time.perf_counter() - t, mach, calibration or {}, vers)
            records.append(rec)
            where = f" workers={workers}" if workers else ""
            if rec["status"] == "ok":
                logger.info("bench case %d/%d %s%s repeat %d: %s=%.6g, %.2fs (elapsed %.0fs)", i, total, case.id,
                            where, rep + 1, case.quality, rec["metrics"][case.quality], rec["seconds"],
                            time.perf_counter() - started)
            else:
                logger.error("bench case %d/%d %s%s repeat %d FAILED: %s (elapsed %.0fs)", i, total, case.id, where,
                             rep + 1, rec["error"], time.perf_counter() - started)
    return records


def write_outputs(out: str, results: dict, overwrite: bool = False) -> str:
    """``results.json``, ``report.md`` and ``report.html`` into ``out``, atomically; returns report.md's path."""
    from sparkml_dist.bench.report import render_html, render_markdown
    from sparkml_dist.data.io import atomic_path, json_default

    with atomic_path(out, overwrite=overwrite) as tmp:  # a failure while rendering keeps the old report
        os.makedirs(tmp)
        with open(os.path.join(tmp, "results.json"), "w") as fh:
            json.dump(results, fh, indent=1, sort_keys=True, default=json_default)
        with open(os.path.join(tmp, "report.md"), "w") as fh:
            fh.write(render_markdown(results, tmp))
        with open(os.path.join(tmp, "report.html"), "w") as fh:
            fh.write(render_html(results))
    logger.info("bench report written to %s (results.json, report.md, report.html)", out)
    return os.path.join(out, "report.md")


def run_bench(spark_factory: Callable[[int | None], Any], suite: str, out: str, only: list[str] | None = None,
              workers: list[int] | None = None, seed: int = 0, repeats: int | None = None,
              overwrite: bool = False, calibrate: bool = True) -> tuple[str, dict]:
    """Run a suite (once per worker count) and write the report. ``spark_factory(workers)`` returns a session
    (``workers=None``: the default session) and a callable that releases it.

    Returns the report path and the results; ``results["failed"]`` counts the failed records.
    """
    cases = select(suite, only)  # unknown suite / pattern: an error before any Spark work
    if os.path.exists(out) and not overwrite:
        raise FileExistsError(f"--out {out}: already exists (pass --overwrite to replace it)")
    if workers and any(w < 1 for w in workers):
        raise ValueError(f"--workers: counts must be >= 1, got {workers}")
    repeats = repeats or DEFAULT_REPEATS[suite]
    if repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {repeats}")
    if not native_blas_available():
        logger.warning("no libblas.so.3: MLlib falls back to Java BLAS (~20% slower), which flatters us; install "
                       "Debian's libopenblas0-pthread for a fair baseline")
    counts = list(workers) if workers else [None]
    parallel = tuple(sorted({2, *[w for w in counts if w and w > 1]}))
    calibration = calib.measure(parallel) if calibrate else {}
    started = time.perf_counter()
    total = len(cases) * repeats * len(counts)
    records: list[dict] = []
    for n in counts:
        spark, release = spark_factory(n)
        try:
            records += run_cases(spark, cases, suite, seed, repeats, n, calibration, len(records), total, started)
        finally:
            release()
    results = {"schema": SCHEMA, "suite": suite, "seed": seed, "repeats": repeats, "workers": workers,
               "only": only, "machine": records[0]["machine"] if records else machine(), "calibration": calibration,
               "versions": versions(), "cases": [c.id for c in cases], "records": records,
               "failed": sum(r["status"] != "ok" for r in records), "seconds": time.perf_counter() - started}
    return write_outputs(out, results, overwrite), results


# -- command line ---------------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``sparkml-dist bench`` (the CLI adds ``--profile``/``--master``/``--conf``)."""
    parser.add_argument("action", nargs="?", choices=("run", "compare"), default="run",
                        help="run (default) the suite, or compare two results.json files")
    parser.add_argument("files", nargs="*", help="compare: BASELINE.json NEW.json")
    parser.add_argument("--suite", default="standard", help=f"{' | '.join(SUITES)} (default standard)")
    parser.add_argument("--quick", action="store_true", help="same as --suite quick")
    parser.add_argument("--only", default=None, help="comma-separated families, names, name/variant or globs")
    parser.add_argument("--workers", default=None, help="comma-separated worker counts, e.g. 1,2,4: run on a local "
                                                         "standalone cluster of that many 1-core workers")
    parser.add_argument("--worker-memory", default="2g", help="memory per worker with --workers")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per case (default: quick 1, else 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="out/bench", help="report directory (written atomically)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--list", action="store_true", help="list the cases of the suite and exit")
    parser.add_argument("--time-tolerance", type=float, default=0.25,
                        help="compare: a case more than this fraction slower is a regression")
    parser.add_argument("--quality-tolerance", type=float, default=0.01,
                        help="compare: quality worse by more than this fraction is a regression")


def _parse_workers(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(w) for w in text.split(",") if w.strip()]
    except ValueError:
        raise ValueError(f"--workers {text!r}: expected comma-separated integers, e.g. 1,2,4") from None


def main(args: argparse.Namespace, make_session: Callable[[], Any]) -> int:
    """``sparkml-dist bench``; ``make_session()`` builds the session of ``--profile``/``--master``/``--conf``."""
    if args.action == "compare":
        from sparkml_dist.bench.compare import main as compare_main

        return compare_main(args.files, args.time_tolerance, args.quality_tolerance)
    if args.files:
        raise ValueError(f"bench: unexpected arguments {args.files} (did you mean `bench compare A.json B.json`?)")
    suite = "quick" if args.quick else args.suite
    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
    if args.list:
        for case in select(suite, only):
            sys.stdout.write(f"{case.id:40s} {case.dataset:22s} {json.dumps(case.sizes[suite])}\n")
        return 0
    workers = _parse_workers(args.workers)

    def factory(n: int | None):
        if n is None:
            spark = make_session()
            return spark, spark.stop
        return _cluster_session(n, args.worker_memory, args.conf)

    report, results = run_bench(factory, suite, args.out, only, workers, args.seed, args.repeats, args.overwrite)
    sys.stdout.write(f"report: {report}\n")
    if results["failed"]:
        failed = sorted({r["case"] for r in results["records"] if r["status"] != "ok"})
        sys.stdout.write(f"{results['failed']} case run(s) failed: {', '.join(failed)} (errors in "
                         f"{args.out}/results.json)\n")
        return 1
    return 0


def _cluster_session(workers: int, memory: str, conf_pairs: list[str] | None = None):
    """A local standalone cluster of ``workers`` 1-core workers and a session on it; returns (spark, release)."""
    import tempfile

    from sparkml_dist.runtime import get_spark
    from sparkml_dist.runtime.cluster import LocalStandaloneCluster
    from sparkml_dist.runtime.session import parse_conf_pairs

    state = tempfile.mkdtemp(prefix=f"sparkml-dist-bench-{workers}w-")
    cluster = LocalStandaloneCluster(workers=workers, cores=1, memory=memory, master_port=None, webui_port=None,
                                     state_dir=state).start(timeout=180)
    try:
        mem_mb = _megabytes(memory)
        conf = {"spark.executor.memory": f"{max(512, int(mem_mb * 0.7))}m", "spark.executor.cores": "1",
                **parse_conf_pairs(conf_pairs)}
        spark = get_spark("standalone", master=cluster.master_url, app_name=f"sparkml-dist-bench-{workers}w",
                          conf=conf)
        from sparkml_dist.runtime.barrier import available_slots

        available_slots(spark, wait=60, at_least=workers)  # every executor registered before anything is timed
    except BaseException:
        cluster.stop()
        raise

    def release():
        try:
            spark.stop()
        finally:
            cluster.stop()

    return spark, release


def _megabytes(memory: str) -> int:
    unit = memory[-1].lower()
    value = float(memory[:-1]) if unit in "kmgt" else float(memory) / 2**20
    return int(value * {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024**2}.get(unit, 1))


def script_main(argv: list[str] | None = None) -> int:
    """Entry of ``jobs/bench.py`` (``spark-submit jobs/bench.py --suite quick --out DIR``, e.g. from the Airflow
    DAG): the session is the one spark-submit configured (its master and deploy settings, never a profile's)."""
    from sparkml_dist.runtime import setup_logging

    parser = argparse.ArgumentParser(prog="jobs/bench.py", description="Run a sparkml-dist benchmark suite.")
    add_arguments(parser)
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    setup_logging()

    def submitted_session():
        from pyspark.sql import SparkSession

        return SparkSession.builder.appName("sparkml-dist-bench").getOrCreate()

    try:
        return main(args, submitted_session)
    except (ValueError, OSError, RuntimeError) as exc:  # one line and a non-zero exit, not a traceback
        sys.stderr.write(f"jobs/bench.py: {exc}\n")
        return 2
