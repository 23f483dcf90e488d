"""pyspark's Python worker daemon, without the tracebacks of a JVM hanging up on its workers.

Spark starts this module instead of ``pyspark.daemon`` (``spark.python.daemon.module``, set by our profiles). It is
pyspark's own daemon, unchanged, except that a forked worker whose socket the JVM closed (``BrokenPipeError``,
``ConnectionResetError``: a task cancelled, a barrier stage aborted, a session stopped while workers were idle) no
longer prints a traceback on the driver's console: that is how a worker ends, not an error. Every other traceback is
printed as before.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

from pyspark import daemon as _daemon

#: Exceptions that only mean the JVM end of a worker's socket went away.
HANGUPS = (BrokenPipeError, ConnectionResetError)


def _hangup() -> bool:
    return isinstance(sys.exc_info()[1], HANGUPS)


class _QuietTraceback:
    """``traceback`` as the daemon sees it: ``print_exc`` skips hang-ups, everything else is the real module."""

    def print_exc(self, *args: Any, **kwargs: Any) -> None:
        if not _hangup():
            traceback.print_exc(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(traceback, name)


def _print(*args: Any, **kwargs: Any) -> None:
    # the daemon's only print: "PySpark daemon failed to flush the output to the worker process" + traceback
    if not _hangup():
        print(*args, **kwargs)


def install() -> None:
    """Patch the daemon module's ``traceback`` and ``print`` (inherited by every worker it forks)."""
    setattr(_daemon, "traceback", _QuietTraceback())  # noqa: B010 - a module attribute mypy types as a module
    setattr(_daemon, "print", _print)  # noqa: B010 - shadows the builtin inside pyspark.daemon only


if __name__ == "__main__":
    install()
    _daemon.manager()
