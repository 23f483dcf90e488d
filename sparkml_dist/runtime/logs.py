"""One logging set-up for every entry point, and a progress reporter for long loops.

Spark's own console progress bar is switched off by our profiles; long loops report through
:class:`ProgressReporter` instead (iteration, metric, rows/s), on the ``sparkml_dist`` logger.
"""

from __future__ import annotations

import logging
import os
import time

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str | int | None = None) -> None:
    """Configure the ``sparkml_dist`` logger once (level from the argument, ``SPARKML_DIST_LOG_LEVEL`` or INFO)."""
    level = level or os.environ.get("SPARKML_DIST_LOG_LEVEL", "INFO")
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
    root = logging.getLogger("sparkml_dist")
    root.setLevel(level)
    if not any(getattr(h, "_sparkml_dist", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler._sparkml_dist = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        root.propagate = False
    # py4j logs every gateway call at INFO/DEBUG; keep it quiet.
    logging.getLogger("py4j").setLevel(logging.WARNING)


class ProgressReporter:
    """Logs one line per step of a long loop: step, metrics, elapsed time and rows/s.

    >>> progress = ProgressReporter("kmeans", total=20, rows=1_000_000)
    >>> progress.step(cost=12.5)        # doctest: +SKIP
    """

    def __init__(self, name: str, total: int | None = None, rows: int | None = None,
                 logger: logging.Logger | None = None, every: int = 1):
        self.name = name
        self.total = total
        self.rows = rows
        self.every = max(1, every)
        self.logger = logger or logging.getLogger(f"sparkml_dist.{name}")
        self.iteration = 0
        self.history: list[dict] = []
        self._start = time.perf_counter()
        self._last = self._start

    def step(self, **metrics: float) -> dict:
        now = time.perf_counter()
        self.iteration += 1
        dt = now - self._last
        self._last = now
        record = {"iteration": self.iteration, "seconds": dt, **metrics}
        self.history.append(record)
        from sparkml_dist.tracking import on_progress  # MLflow per-step metrics when a run is active (else no-op)

        on_progress(self.name, record)
        if self.iteration % self.every == 0 or (self.total and self.iteration == self.total):
            parts = [f"{self.name} iter {self.iteration}" + (f"/{self.total}" if self.total else "")]
            parts += [f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()]
            parts.append(f"{dt:.3f}s")
            if self.rows and dt > 0:
                parts.append(f"{self.rows / dt:,.0f} rows/s")
            self.logger.info(" ".join(parts))
        return record

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._start
