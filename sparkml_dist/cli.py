"""``sparkml-dist``: the command-line entry point.

Every command takes ``--profile`` (a Spark profile in ``conf/spark/``), ``--master`` and repeated ``--conf key=value``.

    sparkml-dist datasets list
    sparkml-dist datasets generate blobs --rows 1000000 --features 32 --param centers=16 --output out/blobs
    sparkml-dist cluster start --workers 2 --cores 1 --memory 2g | status | stop
    sparkml-dist run kmeans --config conf/jobs/kmeans.yaml [--output out/km] [--overwrite] [params.k=8 ...]
    sparkml-dist bench [--suite quick|standard|full] [--only kmeans] [--workers 1,2,4] [--out out/bench]
    sparkml-dist bench compare out/bench-a/results.json out/bench-b/results.json
    sparkml-dist package --out dist/     # env.tar.gz for --archives, sparkml_dist.zip for --py-files

``--master local-standalone`` means the cluster ``sparkml-dist cluster start`` recorded (its URL is also the last
line ``cluster start`` prints). Mistakes in arguments or configs are one line and exit status 2, before Spark starts;
a failing command prints one line and its cause (exit status 1) and keeps the full trace in a log file
(``--verbose`` prints it instead).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

import yaml

logger = logging.getLogger("sparkml_dist.cli")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default=None, help="Spark profile from conf/spark/ (default: local, or "
                                                         "$SPARKML_DIST_PROFILE)")
    parser.add_argument("--master", default=None, help="Spark master URL (overrides the profile)")
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                        help="Spark conf entry; repeat for more")
    parser.add_argument("--log-level", default=None, help="logging level (default INFO)")
    parser.add_argument("--verbose", action="store_true", help="full tracebacks on stderr (default: in a log file)")


def _spark(args, app: str):
    """The session of ``--profile`` / ``--master`` / ``--conf`` for command ``app``."""
    from sparkml_dist.runtime import get_spark
    from sparkml_dist.runtime.session import parse_conf_pairs

    return get_spark(args.profile, master=args.master, app_name=f"sparkml-dist-{app}", **parse_conf_pairs(args.conf))


class _Session:
    """``with _Session(args, app) as spark``: the command's SparkSession, stopped at the end only if this command
    started it (a notebook's or a test's running session is reused, as ``getOrCreate`` does, and left running)."""

    def __init__(self, args, app: str):
        self.args, self.app, self.spark, self.owned = args, app, None, False

    def __enter__(self):
        from pyspark import SparkContext

        self.owned = SparkContext._active_spark_context is None
        self.spark = _spark(self.args, self.app)
        return self.spark

    def __exit__(self, *exc) -> None:
        if self.owned and self.spark is not None:
            self.spark.stop()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparkml-dist", description="Distributed machine learning on Apache Spark.")
    sub = parser.add_subparsers(dest="command", required=True)

    ds = sub.add_parser("datasets", help="list or generate datasets")
    ds_sub = ds.add_subparsers(dest="action", required=True)
    p = ds_sub.add_parser("list", help="bundled datasets and generators")
    _common(p)
    p = ds_sub.add_parser("generate", help="generate a synthetic dataset inside Spark and write it as Parquet")
    _common(p)
    p.add_argument("generator", help="blobs, classification or hastie_10_2")
    p.add_argument("--rows", type=int, default=100_000, help="number of rows")
    p.add_argument("--features", type=int, default=None, help="number of features (not for hastie_10_2)")
    p.add_argument("--partitions", type=int, default=None, help="partitions (default: the cluster's parallelism)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="generator parameter, e.g. centers=16 (values parsed as YAML)")
    p.add_argument("--output", required=True, help="output directory (written atomically)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")

    cl = sub.add_parser("cluster", help="a real Spark standalone cluster on 127.0.0.1")
    cl_sub = cl.add_subparsers(dest="action", required=True)
    p = cl_sub.add_parser("start", help="start a master and workers with pyspark's bin/spark-class")
    _common(p)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cores", type=int, default=1, help="cores per worker")
    p.add_argument("--memory", default="2g", help="memory per worker")
    p.add_argument("--port", type=int, default=7077,
                   help="master port (waits a few seconds for it after a `cluster stop`, then takes a free one)")
    p.add_argument("--webui-port", type=int, default=8080, help="master web UI port (a free one if busy)")
    p.add_argument("--state-dir", default=None, help="where pids and logs are kept")
    for action in ("status", "stop"):
        p = cl_sub.add_parser(action, help=f"{action} the recorded cluster")
        _common(p)
        p.add_argument("--state-dir", default=None)

    p = sub.add_parser("run", help="run a registered job from its YAML config")
    _common(p)
    p.add_argument("job", help="job name (see `sparkml-dist run --list`)", nargs="?")
    p.add_argument("--config", default=None, help="job config (default conf/jobs/JOB.yaml)")
    p.add_argument("--output", default=None, help="output directory (overrides the config)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (else refused, old kept)")
    p.add_argument("--list", action="store_true", help="list the registered jobs")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. params.k=8")

    from sparkml_dist.bench.suite import add_arguments as add_bench_arguments
    from sparkml_dist.packaging import add_arguments as add_package_arguments

    p = sub.add_parser("bench", help="run a benchmark suite and write its report, or compare two runs")
    _common(p)
    add_bench_arguments(p)

    p = sub.add_parser("package", help="pack the environment (--archives) and the package (--py-files)")
    add_package_arguments(p)
    return parser


def _datasets(args) -> int:
    from sparkml_dist.data.generators import GENERATORS
    from sparkml_dist.data.sources import BUNDLED

    if args.action == "list":
        for name, (_, kind) in sorted(BUNDLED.items()):
            sys.stdout.write(f"bundled    {name:16s} label: {kind}\n")
        for name in sorted(GENERATORS):
            sys.stdout.write(f"generator  {name}\n")
        return 0
    from sparkml_dist.data.io import write_dataframe
    from sparkml_dist.runner import ConfigError, check_output, did_you_mean, validate_input
    from sparkml_dist.runtime.session import parse_conf_pairs

    if args.generator not in GENERATORS:
        raise ConfigError(f"unknown generator {args.generator!r}{did_you_mean(args.generator, GENERATORS)} "
                          f"(known: {', '.join(sorted(GENERATORS))})")
    try:
        params = {k: yaml.safe_load(v) for k, v in parse_conf_pairs(args.param).items()}
    except ValueError as exc:
        raise ConfigError(str(exc).replace("--conf", "--param")) from None
    params.update(n_rows=args.rows, seed=args.seed, num_partitions=args.partitions)
    if args.features is not None:
        if args.generator == "hastie_10_2":
            raise ConfigError("--features: hastie_10_2 always has 10 features")
        params["n_features"] = args.features
    validate_input({"generator": args.generator, **params}, where="--param")
    check_output(args.output, args.overwrite)
    with _Session(args, "generate") as spark:
        check_output(args.output, args.overwrite, spark)
        df = GENERATORS[args.generator](spark, **params)
        write_dataframe(df, args.output, overwrite=args.overwrite)
    logger.info("wrote %s rows of %s to %s", f"{args.rows:,}", args.generator, args.output)
    return 0


def _cluster(args) -> int:
    from sparkml_dist.runtime.cluster import LocalStandaloneCluster

    if args.action == "start":
        cluster = LocalStandaloneCluster(args.workers, args.cores, args.memory, args.port, args.webui_port,
                                         args.state_dir).start()
        sys.stdout.write(json.dumps(cluster.status(), indent=2) + "\n")
        sys.stdout.write(cluster.master_url + "\n")  # the last line: `--master $(... | tail -1)` or local-standalone
        return 0
    try:
        cluster = LocalStandaloneCluster.attach(args.state_dir)
    except FileNotFoundError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1 if args.action == "status" else 0
    if args.action == "status":
        sys.stdout.write(json.dumps(cluster.status(), indent=2) + "\n")
    else:
        stopped = cluster.stop()
        sys.stdout.write(f"stopped pids {stopped}\n")
    return 0


def _run(args) -> int:
    from sparkml_dist.runner import JOBS, prepare, run_job

    if args.list or not args.job:
        for name, spec in sorted(JOBS.items()):
            sys.stdout.write(f"{name:14s} {spec.module}\n")
        return 0
    cfg = prepare(args.job, args.config, args.overrides, args.output, args.overwrite)  # all checks before Spark
    with _Session(args, args.job) as spark:
        metrics = run_job(args.job, cfg, spark, args.output, overwrite=args.overwrite or None)
    sys.stdout.write(json.dumps(metrics, indent=2, sort_keys=True, default=str) + "\n")
    return 0


def _bench(args) -> int:
    from sparkml_dist.bench.suite import main as bench_main

    return bench_main(args, lambda: _spark(args, "bench"))


def _package(args) -> int:
    from sparkml_dist.packaging import main as package_main

    return package_main(args)


def main(argv: list[str] | None = None) -> int:
    """``sparkml-dist ...``; returns the exit status (0, 1 for a failed command, 2 for a usage mistake)."""
    from sparkml_dist.runtime import setup_logging
    from sparkml_dist.runtime.logs import report_failure

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `run JOB --output x params.k=8`: overrides may follow options
    if extra and args.command == "run" and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = list(args.overrides) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    setup_logging(args.log_level)
    handler = {"datasets": _datasets, "cluster": _cluster, "run": _run, "bench": _bench,
               "package": _package}[args.command]
    try:
        return handler(args)
    except (Exception, KeyboardInterrupt) as exc:
        return report_failure(exc, verbose=args.verbose, prog=f"sparkml-dist {args.command}")


if __name__ == "__main__":
    sys.exit(main())
