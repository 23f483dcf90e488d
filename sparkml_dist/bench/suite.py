"""``sparkml-dist bench``: run the benchmark suites on the same Spark session and write one report.

Each suite is a module of :mod:`sparkml_dist.bench` with ``run(spark, **sizes) -> dict``; ``quick`` picks small
sizes for a smoke run. The report directory (written atomically) holds ``report.json`` (every figure), ``report.md``
(the tables), one PNG per suite plotting its ``*_seconds`` figures, and the plots a suite draws itself (a module-level
``plot(figures, directory) -> [file names]``, e.g. the SVM's time-against-rows curve).
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import os
import platform
import time

logger = logging.getLogger(__name__)

SUITES = {
    "data": "sparkml_dist.bench.data",
    "clustering": "sparkml_dist.bench.clustering",
    "classification": "sparkml_dist.bench.classification",
    "rl": "sparkml_dist.bench.rl",
}

#: sizes for ``--quick`` (keys that a suite's ``run`` does not take are ignored)
QUICK = {"rows": 100_000, "dims": 16, "k": 8, "repeats": 2, "iters": 5, "adaboost_rows": 50_000,
         "svm_sizes": (5_000, 10_000), "rounds": 10}


def _flatten(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out[prefix] = value


def _plot(name: str, figures: dict, path: str) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    flat: dict = {}
    _flatten("", figures, flat)
    secs = {k: v for k, v in flat.items() if k.endswith("seconds") and "samples" not in k}
    if not secs:
        return False
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(secs) + 1.2))
    labels = list(secs)
    ax.barh(labels, [secs[k] for k in labels], color="#4477aa")
    ax.set_xlabel("seconds (median)")
    ax.set_title(f"sparkml-dist bench: {name}")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def native_blas_available() -> bool:
    """Whether MLlib (netlib via dev.ludovic.netlib) can load a native BLAS on this machine."""
    import ctypes.util

    dirs = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib")
    return ctypes.util.find_library("blas") is not None or any(
        os.path.exists(os.path.join(d, "libblas.so.3")) for d in dirs)


def run_suites(spark, suites: list[str], out: str, quick: bool = False) -> str:
    from sparkml_dist.data.io import atomic_path

    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        raise ValueError(f"--suite: unknown {unknown}; known: {', '.join(SUITES)}")
    native_blas = native_blas_available()
    if not native_blas:
        logger.warning("no libblas.so.3: MLlib falls back to Java BLAS (~20%% slower), which flatters us; install "
                       "Debian's libopenblas0-pthread for a fair baseline")
    report = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "native_blas": native_blas,
                          "spark": spark.version, "master": spark.sparkContext.master},
              "quick": quick, "suites": {}}
    for name in suites:
        module = importlib.import_module(SUITES[name])
        kwargs = {}
        if quick:
            params = inspect.signature(module.run).parameters
            kwargs = {k: v for k, v in QUICK.items() if k in params}
        logger.info("bench suite %s %s", name, kwargs)
        start = time.perf_counter()
        report["suites"][name] = {"figures": module.run(spark, **kwargs), "seconds": time.perf_counter() - start}
    with atomic_path(out) as tmp:
        os.makedirs(tmp)
        with open(os.path.join(tmp, "report.json"), "w") as fh:
            json.dump(report, fh, indent=2, sort_keys=True, default=str)
        lines = ["# sparkml-dist benchmark report", "",
                 f"Spark {spark.version} on `{spark.sparkContext.master}`, {os.cpu_count()} CPUs"
                 + (" (quick sizes)" if quick else ""), ""]
        for name, body in report["suites"].items():
            flat: dict = {}
            _flatten("", body["figures"], flat)
            lines += [f"## {name}", "", "| figure | value |", "| --- | --- |"]
            lines += [f"| {k} | {v:.4g} |" for k, v in flat.items() if "samples" not in k]
            if _plot(name, body["figures"], os.path.join(tmp, f"{name}.png")):
                lines += ["", f"![{name}]({name}.png)"]
            module = importlib.import_module(SUITES[name])
            for png in module.plot(body["figures"], tmp) if hasattr(module, "plot") else []:
                lines += ["", f"![{png}]({png})"]
            lines.append("")
        with open(os.path.join(tmp, "report.md"), "w") as fh:
            fh.write("\n".join(lines))
    logger.info("bench report written to %s", out)
    return os.path.join(out, "report.md")
