"""Benchmark (not a test): the classical fits of this checkout against an earlier revision, on the same machine in
one run: k-means seconds per Lloyd iteration, AdaBoost (``exact``, 1M x 10 rows, 10 rounds) fit seconds and CascadeSVC
(``cascade``, 100k rows) fit seconds, each on both engines, medians of ``--repeats``.

    .venv/bin/python -m sparkml_dist.bench.no_regression --before e363236 --repeats 3 --rounds 2

The earlier revision is checked out into a temporary git worktree; every measurement runs in a fresh Python process
that imports one tree or the other (``PYTHONPATH``), with both trees' runs interleaved family by family
(``--rounds`` pairs in ABBA order) so that a change in the machine's load hits both alike. Each side runs its own
``bench.clustering`` / ``bench.classification`` code (the same functions in both) on the same generated data and
seed; the baselines (MLlib, scikit-learn) are off: this compares us with ourselves. The load average is recorded
beside every figure.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time

logger = logging.getLogger("sparkml_dist.bench.no_regression")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: what one child process runs (``{...}`` filled from the arguments); prints one JSON line
CHILD = r"""
import json, logging, sys
from sparkml_dist.runtime import get_spark
logging.basicConfig(level=logging.WARNING)
spark = get_spark("local", master="local[2]", app_name="no-regression")
family, repeats, scale = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
if family == "kmeans":
    from sparkml_dist.bench.clustering import run
    r = run(spark, rows=int(1_000_000 * scale), dims=32, k=16, repeats=repeats, iters=10, mllib=False)
    m = r["medians"]
    out = {"mapreduce": m["mapreduce"]["iteration_seconds"], "bsp": m["bsp"]["iteration_seconds"]}
elif family == "adaboost":
    from sparkml_dist.bench.classification import bench_adaboost
    r = bench_adaboost(spark, rows=int(1_000_000 * scale), rounds=10, repeats=repeats, partitions=4, baselines=False)
    out = {e: r["ours_" + e]["fit_seconds"] for e in ("mapreduce", "bsp")}
    out.update({e + "_per_round": r["ours_" + e]["seconds_per_round"] for e in ("mapreduce", "bsp")})
else:
    from sparkml_dist.bench.classification import bench_svm
    n = int(100_000 * scale)
    r = bench_svm(spark, sizes=[n], repeats=repeats, partitions=4, class_sep=1.0, baselines=False,
                  variants=(("cascade", "cascade", "mapreduce"), ("cascade_bsp", "cascade", "bsp")))
    size = r["sizes"][str(n)]
    out = {"mapreduce": size["cascade"]["fit_seconds"], "bsp": size["cascade_bsp"]["fit_seconds"]}
print("RESULT " + json.dumps(out), flush=True)
spark.stop()
"""

FAMILIES = {"kmeans": "k-means seconds per iteration (1M x 32, k=16)",
            "adaboost": "AdaBoost exact fit seconds (1M x 10, 10 rounds)",
            "svm": "CascadeSVC cascade fit seconds (100k x 10)"}


def _load() -> float:
    return os.getloadavg()[0]


def _child(tree: str, family: str, repeats: int, scale: float) -> dict:
    env = dict(os.environ, PYTHONPATH=tree, SPARKML_DIST_PROGRESS="off")
    proc = subprocess.run([sys.executable, "-c", CHILD, family, str(repeats), str(scale)], env=env, cwd=tree, text=True,
                          capture_output=True, timeout=3600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{family} on {tree} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def run(before: str, repeats: int = 3, families: list[str] | None = None, scale: float = 1.0,
        rounds: int = 1) -> dict:
    families = families or list(FAMILIES)
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise ValueError(f"--only: unknown families {unknown}; choose from {sorted(FAMILIES)}")
    tmp = tempfile.mkdtemp(prefix="sparkml-dist-before-")
    tree = os.path.join(tmp, "tree")
    subprocess.run(["git", "-C", REPO, "worktree", "add", "--detach", tree, before], check=True,
                   capture_output=True)
    out: dict = {"before": before, "after": subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                                                           capture_output=True, text=True).stdout.strip(),
                 "repeats": repeats, "rounds": rounds, "scale": scale, "cores": os.cpu_count(), "families": {}}
    try:
        for family in families:
            rec: dict = {"what": FAMILIES[family], "rounds": []}
            for r in range(rounds):
                sides = [("before", tree), ("after", REPO)]
                for side, path in sides if r % 2 == 0 else sides[::-1]:  # ABBA: a load drift hits both alike
                    load = _load()
                    start = time.perf_counter()
                    value = _child(path, family, repeats, scale)
                    rec["rounds"].append({"side": side, **value, "load": [round(load, 2), round(_load(), 2)]})
                    logger.info("%s %s (round %d/%d): %s (%.0f s, load %.1f -> %.1f)", family, side, r + 1, rounds,
                                value, time.perf_counter() - start, load, _load())
            for side in ("before", "after"):
                mine = [x for x in rec["rounds"] if x["side"] == side]
                rec[side] = {e: statistics.median(x[e] for x in mine) for e in mine[0] if e not in ("side", "load")}
            rec["ratio_after_over_before"] = {e: rec["after"][e] / rec["before"][e] for e in rec["after"]}
            logger.info("%s after/before: %s", family, rec["ratio_after_over_before"])
            out["families"][family] = rec
    finally:
        subprocess.run(["git", "-C", REPO, "worktree", "remove", "--force", tree], capture_output=True)
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", default="e363236", help="the earlier revision (default: e363236, before the engine)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", nargs="*", help=f"families among {sorted(FAMILIES)}")
    p.add_argument("--rounds", type=int, default=1,
                   help="before/after pairs per family, in alternating order; figures are medians over rounds")
    p.add_argument("--scale", type=float, default=1.0, help="multiplies every data size (0.1 for a smoke run)")
    p.add_argument("--out", default="out/bench/no_regression.json")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.rounds < 1:
        p.error("--repeats and --rounds must be >= 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = run(args.before, args.repeats, args.only, args.scale, args.rounds)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=2)
    logger.info("wrote %s", args.out)
    return result


if __name__ == "__main__":
    main()
