"""One logging set-up and the progress reporter of long loops."""

import logging

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
