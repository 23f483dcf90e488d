"""The benchmark report of `sparkml-dist bench` (tiny sizes: this checks the plumbing, not speed)."""

import json
import os

import pytest

from sparkml_dist.bench import suite


def test_data_suite_report(spark, tmp_path, monkeypatch):
    monkeypatch.setitem(suite.QUICK, "rows", 20_000)
    out = str(tmp_path / "bench")
    report = suite.run_suites(spark, ["data"], out, quick=True)
    body = json.loads(open(os.path.join(out, "report.json")).read())
    figures = body["suites"]["data"]["figures"]
    assert figures["rows"] == 20_000 and figures["to_blocks_seconds"] > 0
    assert figures["resident_vs_reshipped"] > 0
    text = open(report).read()
    assert "| to_blocks_seconds |" in text and "![data](data.png)" in text
    with open(os.path.join(out, "data.png"), "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_unknown_suite_is_named(spark, tmp_path):
    with pytest.raises(ValueError, match=r"--suite: unknown \['nosuch'\]"):
        suite.run_suites(spark, ["nosuch"], str(tmp_path / "b"))
    assert not os.path.exists(tmp_path / "b")
