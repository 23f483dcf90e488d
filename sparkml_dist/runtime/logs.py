"""One logging set-up for every entry point, progress for long loops, and the one way failures are shown.

Spark's own console progress bar is switched off by our profiles; long loops report through
:class:`ProgressReporter` instead (iteration, metric, rows/s). Where that shows is one switch,
:func:`set_progress` or the environment variable ``SPARKML_DIST_PROGRESS``:

``auto`` (default)
    a progress bar on stderr in interactive use (a terminal or a notebook) when logging is not configured; the
    per-iteration log line on the ``sparkml_dist`` logger otherwise (the CLI and jobs configure it).
``bar`` / ``log`` / ``off``
    always the bar, always the log line, nothing.

:func:`report_failure` turns an exception at the top of a command into one line and its cause on stderr; the full
trace goes to a log file (``$SPARKML_DIST_LOG_DIR`` or ``~/.sparkml_dist/logs``), or to stderr with ``--verbose``.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import time
import traceback
from pathlib import Path
from typing import TextIO

PROGRESS_ENV = "SPARKML_DIST_PROGRESS"
PROGRESS_MODES = ("auto", "bar", "log", "off")
_progress_mode: str | None = None
_open_bar: list[TextIO] = []  # the stream of a bar whose line is not finished yet


class UsageError(ValueError):
    """A mistake in what the user asked for (config, arguments, paths): shown as one line, exit status 2."""

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


def set_progress(mode: str | None) -> None:
    """Where :class:`ProgressReporter` shows progress: ``"auto"``, ``"bar"``, ``"log"`` or ``"off"``.

    ``None`` goes back to ``$SPARKML_DIST_PROGRESS`` (default ``auto``; see the module docstring).
    """
    global _progress_mode
    if mode is not None and mode not in PROGRESS_MODES:
        raise ValueError(f"progress mode {mode!r}: expected one of {', '.join(PROGRESS_MODES)}")
    _progress_mode = mode


def _interactive() -> bool:
    if "ipykernel" in sys.modules:  # a Jupyter / Databricks notebook
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _in_spark_task() -> bool:
    try:
        from pyspark import TaskContext

        return TaskContext.get() is not None
    except ImportError:
        return False


def progress_mode(logger: logging.Logger | None = None) -> str:
    """The mode in force for ``logger``: ``"bar"``, ``"log"`` or ``"off"`` (``auto`` resolved)."""
    mode = _progress_mode or os.environ.get(PROGRESS_ENV, "auto").strip().lower() or "auto"
    if mode not in PROGRESS_MODES:
        raise ValueError(f"${PROGRESS_ENV}={mode!r}: expected one of {', '.join(PROGRESS_MODES)}")
    if mode != "auto":
        return "log" if mode == "bar" and _in_spark_task() else mode  # a task's stderr is an executor log file
    if _in_spark_task() or (logger or logging.getLogger("sparkml_dist")).hasHandlers() or not _interactive():
        return "log"
    return "bar"


def _finish_bar() -> None:
    while _open_bar:
        stream = _open_bar.pop()
        try:
            stream.write("\n")
            stream.flush()
        except (OSError, ValueError):
            pass


atexit.register(_finish_bar)


class ProgressReporter:
    """Reports each step of a long loop: step, metrics, elapsed time and rows/s, as a bar or a log line.

    The log line goes to ``logger`` (default ``sparkml_dist.<name>``) at INFO; the bar is redrawn in place on
    stderr. :func:`set_progress` / ``$SPARKML_DIST_PROGRESS`` choose between them (module docstring).

    >>> progress = ProgressReporter("kmeans", total=20, rows=1_000_000)
    >>> progress.step(cost=12.5)        # doctest: +SKIP
    """

    def __init__(self, name: str, total: int | None = None, rows: int | None = None,
                 logger: logging.Logger | None = None, every: int = 1, stream: TextIO | None = None):
        self.name = name
        self.total = total
        self.rows = rows
        self.every = max(1, every)
        self.logger = logger or logging.getLogger(f"sparkml_dist.{name}")
        self.mode = progress_mode(self.logger)
        self.stream = stream
        self.iteration = 0
        self.history: list[dict] = []
        self._start = time.perf_counter()
        self._last = self._start
        self._width = 0
        if self.mode == "bar":
            _finish_bar()  # a previous loop that stopped early (converged) leaves its bar line open

    def step(self, **metrics: float) -> dict:
        now = time.perf_counter()
        self.iteration += 1
        dt = now - self._last
        self._last = now
        record = {"iteration": self.iteration, "seconds": dt, **metrics}
        self.history.append(record)
        from sparkml_dist.tracking import on_progress  # MLflow per-step metrics when a run is active (else no-op)

        on_progress(self.name, record)
        last = bool(self.total and self.iteration >= self.total)
        if self.mode == "off" or not (self.iteration % self.every == 0 or last or self.mode == "bar"):
            return record
        values = [f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()]
        rate = [f"{self.rows / dt:,.0f} rows/s"] if self.rows and dt > 0 else []
        if self.mode == "log":
            head = f"{self.name} iter {self.iteration}" + (f"/{self.total}" if self.total else "")
            self.logger.info(" ".join([head, *values, f"{dt:.3f}s", *rate]))
        else:
            self._draw(values, rate, last)
        return record

    def _draw(self, values: list[str], rate: list[str], last: bool) -> None:
        stream = self.stream or sys.stderr
        if self.total:
            done = int(20 * min(self.iteration, self.total) / self.total)
            head = f"{self.name} [{'#' * done}{'.' * (20 - done)}] {self.iteration}/{self.total}"
        else:
            head = f"{self.name} iter {self.iteration}"
        line = " ".join([head, *values, f"{self.elapsed:.1f}s", *rate])
        self._width = max(self._width, len(line))  # pad over a longer previous line
        stream.write("\r" + line.ljust(self._width) + ("\n" if last else ""))
        stream.flush()
        if last:
            if stream in _open_bar:
                _open_bar.remove(stream)
        elif stream not in _open_bar:
            _open_bar.append(stream)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._start


def _first_line(text: object) -> str:
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()
    return ""


def _cause(exc: BaseException) -> str:
    """The innermost cause worth a line: a barrier rank's own error, a Python worker's, or the exception chain's."""
    remote = getattr(exc, "remote_traceback", None)
    if remote:
        lines = [ln.strip() for ln in str(remote).splitlines() if ln.strip()]
        return lines[-1] if lines else ""
    inner = exc
    seen = {id(exc)}
    while (inner.__cause__ or inner.__context__) is not None and id(inner.__cause__ or inner.__context__) not in seen:
        inner = inner.__cause__ or inner.__context__  # type: ignore[assignment]
        seen.add(id(inner))
    text = str(exc)
    # a Python UDF's error travels inside the JVM's message: its last "XxxError: ..." line is the cause
    found = re.findall(r"^\s*(\w+(?:Error|Exception): .+)$", text, flags=re.MULTILINE)
    if inner is not exc:
        return f"{type(inner).__name__}: {_first_line(inner)}"
    if found and found[-1].strip() != _first_line(text):
        return found[-1].strip()
    return ""


def log_dir() -> Path:
    """Where full tracebacks are written: ``$SPARKML_DIST_LOG_DIR`` or ``~/.sparkml_dist/logs``."""
    return Path(os.environ.get("SPARKML_DIST_LOG_DIR", Path.home() / ".sparkml_dist" / "logs"))


def report_failure(exc: BaseException, verbose: bool = False, prog: str = "sparkml-dist",
                   stream: TextIO | None = None) -> int:
    """Show ``exc`` as one line plus its cause, keep the full trace; return the exit status.

    :class:`UsageError` (a wrong config, argument or path) is one line, status 2. ``KeyboardInterrupt`` is one line,
    status 130. Anything else is its first line and cause, status 1, with the full trace written to a file under
    :func:`log_dir` (or to the stream with ``verbose``).
    """
    stream = stream or sys.stderr
    _finish_bar()
    if isinstance(exc, UsageError):
        stream.write(f"{prog}: error: {_first_line(exc)}\n")
        return 2
    # py4j and pyspark log their own view of an interrupted or failed call; ours is the one shown
    logging.getLogger("py4j").setLevel(logging.CRITICAL)
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    where = ""
    if verbose:
        stream.write(trace)
    else:
        try:
            folder = log_dir()
            folder.mkdir(parents=True, exist_ok=True)
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", prog)
            path = folder / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
            path.write_text(trace)
            where = f" (full trace: {path}; --verbose prints it)"
        except OSError:
            where = " (--verbose prints the full trace)"
    if isinstance(exc, KeyboardInterrupt):
        stream.write(f"{prog}: interrupted; Spark jobs cancelled{where}\n")
        return 130
    cause = _cause(exc)
    stream.write(f"{prog}: {type(exc).__name__}: {_first_line(exc)}\n")
    if cause:
        stream.write(f"  cause: {cause}\n")
    if where:
        stream.write(f"  {where.strip(' ()')}\n")
    return 1
