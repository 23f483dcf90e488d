"""One logging set-up and the progress reporter of long loops."""

import logging
import re

import pytest

from sparkml_dist.runtime.logs import ProgressReporter, setup_logging


def test_progress_reporter_logs_iteration_metric_and_throughput(caplog):
    setup_logging("INFO")
    logger = logging.getLogger("test_progress")  # outside the package logger, whose handler does not propagate
    progress = ProgressReporter("lloyd", total=3, rows=1_000_000, logger=logger)
    with caplog.at_level(logging.INFO, logger="test_progress"):
        for cost in (10.0, 5.0, 4.5):
            progress.step(cost=cost)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert lines[0].startswith("lloyd iter 1/3 cost=10 ")
    assert lines[2].startswith("lloyd iter 3/3 cost=4.5 ")
    assert all(line.endswith("rows/s") for line in lines)
    assert [h["cost"] for h in progress.history] == [10.0, 5.0, 4.5]
    assert progress.elapsed >= sum(h["seconds"] for h in progress.history) - 1e-6


def test_setup_logging_installs_one_handler():
    setup_logging("DEBUG")
    setup_logging("INFO")
    root = logging.getLogger("sparkml_dist")
    assert sum(getattr(h, "_sparkml_dist", False) for h in root.handlers) == 1
    assert root.level == logging.INFO


def test_progress_bar_in_interactive_use_and_one_switch(monkeypatch):
    import io

    from sparkml_dist.runtime import logs

    quiet = logging.getLogger("test_progress_quiet")  # no handler anywhere: a library user who set up nothing
    quiet.propagate = False
    monkeypatch.delenv("SPARKML_DIST_PROGRESS", raising=False)
    monkeypatch.setattr(logs, "_interactive", lambda: True)
    assert logs.progress_mode(quiet) == "bar"
    stream = io.StringIO()
    progress = ProgressReporter("fcm", total=3, logger=quiet, stream=stream)
    for value in (3.0, 2.0, 1.5):
        progress.step(xb=value)
    text = stream.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n")
    assert "fcm [####################] 3/3 xb=1.5" in text and "fcm [######" in text.split("\r")[1]
    monkeypatch.setattr(logs, "_interactive", lambda: False)
    assert logs.progress_mode(quiet) == "log"  # a batch job: the log line
    monkeypatch.setenv("SPARKML_DIST_PROGRESS", "off")
    assert logs.progress_mode(quiet) == "off"
    logs.set_progress("bar")  # the switch in code wins over the environment
    try:
        assert logs.progress_mode(quiet) == "bar"
    finally:
        logs.set_progress(None)
    with pytest.raises(ValueError, match="progress mode 'loud'"):
        logs.set_progress("loud")


def test_report_failure_is_one_line_and_its_cause_with_the_trace_in_a_file(spark, tmp_path, monkeypatch):
    import io

    from sparkml_dist.runtime.barrier import BarrierTaskError, run_barrier
    from sparkml_dist.runtime.logs import UsageError, report_failure

    monkeypatch.setenv("SPARKML_DIST_LOG_DIR", str(tmp_path))

    def broken(ctx):
        if ctx.rank == 1:
            raise ValueError("rank one has bad rows")
        return ctx.rank

    try:
        run_barrier(broken, 2, spark=spark)
    except BarrierTaskError as exc:
        failure = exc
    out = io.StringIO()
    assert report_failure(failure, prog="sparkml-dist run", stream=out) == 1
    lines = out.getvalue().splitlines()
    # the session has retries on: the rank fails on every attempt and the last attempt's failure is reported
    assert re.fullmatch(r"sparkml-dist run: BarrierTaskError: barrier task rank 1 of 2 failed \(stage attempt \d\):",
                        lines[0]), lines[0]
    assert lines[1] == "  cause: ValueError: rank one has bad rows"
    assert len(lines) == 3 and lines[2].startswith("  full trace: ")
    (log,) = tmp_path.glob("sparkml-dist_run-*.log")
    assert "Traceback" in log.read_text() and "rank one has bad rows" in log.read_text()
    out = io.StringIO()
    assert report_failure(UsageError("params.kk: not a Param"), stream=out) == 2
    assert out.getvalue() == "sparkml-dist: error: params.kk: not a Param\n"
    out = io.StringIO()
    assert report_failure(KeyboardInterrupt(), stream=out, verbose=True) == 130
    assert out.getvalue().splitlines()[-1] == "sparkml-dist: interrupted; Spark jobs cancelled"


def test_worker_daemon_drops_hangup_tracebacks_only(capsys):
    from sparkml_dist.runtime.pydaemon import _QuietTraceback

    quiet = _QuietTraceback()
    try:
        raise BrokenPipeError(32, "Broken pipe")
    except BrokenPipeError:
        quiet.print_exc()
    try:
        raise KeyError("a real bug")
    except KeyError:
        quiet.print_exc()
    err = capsys.readouterr().err
    assert "BrokenPipeError" not in err and "KeyError: 'a real bug'" in err
    assert quiet.format_exc  # every other name is the real traceback module's


_HANGUP_JOB = """
import time
from pyspark.sql import functions as F
from sparkml_dist.runtime import get_spark
spark = get_spark("local", master="local[2]")
for _ in range(3):  # a task fails while its sibling streams: the JVM hangs up on the sibling's worker
    try:
        spark.range(100000, numPartitions=2).withColumn("y", F.udf(lambda x: 1 / (x - 50000))("id")).collect()
    except Exception:
        pass
time.sleep(1)
spark.stop()
print("DONE")
"""


@pytest.mark.slow  # a session of its own in a subprocess (~30 s); the daemon's filter is unit-tested above
def test_spark_sessions_show_no_daemon_broken_pipe_tracebacks():
    import os
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", _HANGUP_JOB], capture_output=True, text=True, timeout=300,
                          cwd=repo, env=dict(os.environ, PYTHONPATH=repo))
    assert "DONE" in proc.stdout, proc.stderr[-3000:]
    assert "daemon.py" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr[-3000:]
