"""Machine calibration: how fast CPU-bound work runs in one process against N processes in parallel.

Every distributed-versus-single-node ratio of a benchmark run depends on it: on one machine here two processes each
ran at 0.46 of one's speed (no parallel speedup at all, so a 2-worker run is biased by ~2x against us), while other
machines of the same kind gave close to 2x. The bench measures it first and states it beside every ratio.

The work is a pure-Python integer loop in fresh interpreters (no BLAS threads, no shared memory, no JVM), started
together: each child sleeps until a common start time and times only its own loop.
"""

from __future__ import annotations

import logging
import os
import statistics
import subprocess
import sys
import time

logger = logging.getLogger(__name__)

_CHILD = """
import sys, time
start, loops = float(sys.argv[1]), int(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
t = time.perf_counter()
x = 0
for i in range(loops):
    x += i * i
print(time.perf_counter() - t)
"""


def _run_together(n: int, loops: int) -> list[float]:
    start = time.time() + 0.3 + 0.05 * n  # every child is up before the common start
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, repr(start), str(loops)], stdout=subprocess.PIPE,
                              text=True) for _ in range(n)]
    out = []
    for proc in procs:
        stdout, _ = proc.communicate(timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"calibration child exited with {proc.returncode}")
        out.append(float(stdout.strip()))
    return out


def measure(parallel: tuple[int, ...] = (2,), loops: int = 2_000_000, repeats: int = 3) -> dict:
    """One process against each ``n`` of ``parallel`` at once; medians of ``repeats``.

    Returns ``single_seconds`` (one process's loop), and per ``n``: ``relative_speed`` (each process's speed against
    the lone one: 1.0 = no slowdown) and ``speedup`` (``n * relative_speed``: the ceiling for an ``n``-way parallel
    speedup on this machine now), with a ``summary`` line.
    """
    single = statistics.median(_run_together(1, loops)[0] for _ in range(repeats))
    result: dict = {"method": f"pure-Python loop of {loops:,} iterations per process, medians of {repeats}",
                    "cpus": os.cpu_count(), "single_seconds": single, "parallel": {}}
    for n in sorted(set(parallel)):
        runs = [statistics.mean(_run_together(n, loops)) for _ in range(repeats)]
        each = statistics.median(runs)
        speed = single / each
        result["parallel"][str(n)] = {"seconds_each": each, "relative_speed": speed, "speedup": n * speed}
    if result["parallel"]:
        n = "2" if "2" in result["parallel"] else next(iter(result["parallel"]))
        p = result["parallel"][n]
        result["summary"] = (f"{n} processes each ran at {p['relative_speed']:.2f} of one's speed "
                             f"(parallel speedup ceiling {p['speedup']:.2f}x of {n})")
    else:
        result["summary"] = "single process only"
    logger.info("machine calibration: %s", result["summary"])
    return result


def ceiling(calibration: dict | None, workers: int | None) -> float | None:
    """The parallel-speedup ceiling for ``workers`` processes (measured, else interpolated from the nearest)."""
    if not calibration or not workers or workers <= 1:
        return 1.0 if workers == 1 else None
    par = calibration.get("parallel") or {}
    if str(workers) in par:
        return par[str(workers)]["speedup"]
    if not par:
        return None
    nearest = min(par, key=lambda k: abs(int(k) - workers))
    return workers * par[nearest]["relative_speed"]


def note(calibration: dict | None, workers: int | None = 2) -> str:
    """The few words written beside a ratio: the measured ceiling of a ``workers``-way speedup."""
    c = ceiling(calibration, workers or 2)
    return "n/a" if c is None else f"{c:.2f}x/{workers or 2}"
