"""The memory ceiling (``memoryLimitMB``): checked against the config before any actor starts, then watched.

Before start, :func:`check_budget` adds what the run is sure to hold: the driver as it is now, a Python worker per
Spark actor (~250 MB measured here with torch and gymnasium imported; 200 MB is counted), the learner's queue bound
(``queueSize`` payloads of the algorithm's size), and the replays (Ape-X's central one on the learner, GORILA's one
per actor-learner), and fails naming ``memoryLimitMB`` and the parameters to shrink when that does not fit.

While running, :class:`MemoryWatch` reads the resident set size of the driver and of every actor's Python worker on
this host from ``/proc/<pid>/status`` (no psutil) at most once a second, keeps the peak, and raises
:class:`MemoryLimitError` once the sum passes the limit, so a leaking run stops with a clear error instead of
swapping the machine. Actors on other hosts are not read (their executors' own memory settings bound them).
"""

from __future__ import annotations

import os
import socket
import time

#: counted per Spark actor process before start (a Python worker with torch + gymnasium: ~250 MB measured here)
ACTOR_PROCESS_MB = 200.0
MB = 1024.0 * 1024.0


class MemoryLimitError(RuntimeError):
    """The run's processes passed ``memoryLimitMB``."""


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size of ``pid`` in MB from ``/proc/<pid>/status`` (0 when the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        pass
    return 0.0


def check_budget(algo) -> dict[str, float]:
    """What the config needs before it learns anything (MB per part); ``ValueError`` naming ``memoryLimitMB`` when
    the sum does not fit. Returns the parts (``{}`` when there is no limit)."""
    c = algo.config
    if not c.memoryLimitMB:
        return {}
    spark = c.runner == "spark"
    parts = {"driver now": rss_mb(),
             f"{c.numActors} actor processes": c.numActors * ACTOR_PROCESS_MB if spark else 0.0,
             f"queueSize={c.queueSize} payloads": c.queueSize * algo.payload_bytes() / MB,
             "replay": algo.replay_bytes() / MB}
    need = sum(parts.values())
    if need > c.memoryLimitMB:
        detail = ", ".join(f"{name} {mb:.1f} MB" for name, mb in parts.items() if mb)
        raise ValueError(f"memoryLimitMB={c.memoryLimitMB} cannot hold this config: it needs ~{need:.0f} MB before "
                         f"learning ({detail}); raise memoryLimitMB or lower queueSize, the replay's bufferSize, "
                         f"envsPerActor or numActors")
    return parts


class MemoryWatch:
    """Sums the RSS of the driver and the actors' workers (``pids``: actor id -> pid) every ``every`` seconds.

    A sample reads ``/proc/<pid>/status`` once per process (~20 us each), so sampling five times a second costs
    nothing measurable and bounds how far a fast leak (a replay or queue filling) overshoots the limit before the run
    stops.
    """

    def __init__(self, limit_mb: float, every: float = 0.2):
        self.limit = float(limit_mb)
        self.every = every
        self.host = socket.gethostname()
        self.peak = 0.0
        self.samples = 0
        self._last = -float("inf")

    def check(self, pids: dict[int, int] | None = None, hosts: dict[int, str] | None = None) -> float | None:
        """The total RSS in MB when sampled (``None`` when the last sample is recent); raises past the limit."""
        now = time.perf_counter()
        if not self.limit or now - self._last < self.every:
            return None
        self._last = now
        driver = rss_mb()
        local = {a: pid for a, pid in (pids or {}).items()
                 if (hosts or {}).get(a, self.host) == self.host and pid != os.getpid()}
        actors = {a: rss_mb(pid) for a, pid in sorted(local.items())}
        total = driver + sum(actors.values())
        self.peak = max(self.peak, total)
        self.samples += 1
        if total > self.limit:
            per_actor = ", ".join(f"actor {a} (pid {local[a]}) {mb:.0f} MB" for a, mb in actors.items())
            raise MemoryLimitError(f"memoryLimitMB={self.limit:g} exceeded: the driver and its actors hold "
                                   f"{total:.0f} MB (driver {driver:.0f} MB" + (f"; {per_actor}" if per_actor else "")
                                   + "); the run stops here rather than swap the machine: raise memoryLimitMB or "
                                   "lower queueSize, bufferSize or envsPerActor")
        return total

    def stats(self) -> dict:
        return {"memory_peak_mb": self.peak, "memory_samples": self.samples} if self.limit else {}
