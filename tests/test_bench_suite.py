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


def test_svm_scaling_plot(tmp_path):
    from sparkml_dist.bench import classification

    sizes = {str(n): {"sklearn_svc": {"fit_seconds": t}, "cascade": {"fit_seconds": c}, "mrsmo": {"fit_seconds": m}}
             for n, t, c, m in ((20_000, 2.4, 5.0, 3.6), (100_000, 54.2, 14.4, 8.7))}
    names = classification.plot({"svm": {"class_sep": 1.0, "sizes": sizes}}, str(tmp_path))
    assert names == ["svm_scaling_sep1.png"]
    with open(tmp_path / "svm_scaling_sep1.png", "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    assert classification.plot({"adaboost": {}}, str(tmp_path / "none")) == []  # nothing to draw


def test_svm_variants_are_picked_by_name():
    from sparkml_dist.bench import classification

    assert classification.svm_variants(None) == classification.SVM_VARIANTS
    assert classification.svm_variants("cascade_bsp, dpsvm") == (("cascade_bsp", "cascade", "bsp"),
                                                                 ("dpsvm", "dpsvm", "mapreduce"))
    assert set(classification.SVM_LABELS) == {"sklearn_svc"} | {v[0] for v in classification.SVM_VARIANTS}
    with pytest.raises(ValueError, match=r"--svm-variants: unknown \['svc'\]; known: cascade, mrsmo"):
        classification.svm_variants("cascade,svc")
