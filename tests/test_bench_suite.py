"""``sparkml-dist bench``: the registry, records, reports, compare and failure handling, on the ``quick`` suite's tiny
sizes (this checks the machinery, not speed)."""

from __future__ import annotations

import copy
import html
import json
import logging
import os
import subprocess
import sys

import pytest

from sparkml_dist.bench import calibration, compare, registry, suite

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSICAL = {"data/to_blocks/default", "clustering/kmeans/mapreduce", "clustering/kmeans/bsp",
             "clustering/fuzzy_cmeans/bsp", "classification/adaboost/bsp", "classification/adaboost/mapreduce",
             "classification/cascade_svm/cascade-bsp", "classification/cascade_svm/cascade-mapreduce"}


def _broken_case(ctx):
    raise RuntimeError("deliberately broken case")


@pytest.fixture(scope="module")
def quick_run(spark, tmp_path_factory):
    """The whole quick suite on the test session, with a deliberately failing case registered first."""
    broken = registry.Case("testing", "broken", "default", "none", _broken_case, {"quick": {"rows": 1}}, "accuracy")
    saved = dict(registry.load_cases())
    registry.CASES.clear()
    registry.CASES.update({broken.id: broken, **saved})
    logs = []
    handler = logging.Handler()
    handler.emit = lambda record: logs.append(record.getMessage())
    logging.getLogger("sparkml_dist.bench").addHandler(handler)
    out = str(tmp_path_factory.mktemp("bench") / "report")
    try:
        report, results = suite.run_bench(lambda n: (spark, lambda: None), "quick", out)
    finally:
        logging.getLogger("sparkml_dist.bench").removeHandler(handler)
        registry.CASES.clear()
        registry.CASES.update(saved)
    return {"out": out, "report": report, "results": results, "logs": logs}


def test_every_registered_case_yields_well_formed_records(quick_run):
    results = quick_run["results"]
    on_disk = json.loads(open(os.path.join(quick_run["out"], "results.json")).read())
    assert on_disk["records"] == json.loads(json.dumps(results["records"], default=str))
    by_case = {r["case"]: r for r in results["records"]}
    assert CLASSICAL <= set(by_case), set(by_case)
    assert set(results["cases"]) == set(by_case)
    for case_id in sorted(set(by_case) - {"testing/broken/default"}):  # every family's cases, deep and RL too
        r = by_case[case_id]
        assert r["status"] == "ok", (case_id, r.get("error"), r.get("traceback"))
        assert r["seconds"] > 0 and r["quality"] in r["metrics"] and r["baselines"], case_id
        assert r["calibration"]["single_seconds"] > 0 and r["machine"]["cpus"] >= 1
        assert r["versions"]["pyspark"] and r["seed"] == 0 and r["config"]["size"] == r["size"]
        for name, base in r["baselines"].items():
            assert base["seconds"] > 0
            assert r["ratios"][f"speedup_vs_{name}"] == pytest.approx(base["seconds"] / r["seconds"])
    # the figures are the right ones: from the same initial centres both engines reach scikit-learn's and MLlib's
    # cost on the same rows; the cascade reaches SVC's optimum
    for engine in ("mapreduce", "bsp"):
        km = by_case[f"clustering/kmeans/{engine}"]
        assert km["metrics"]["cost"] == pytest.approx(km["baselines"]["sklearn"]["cost"], rel=1e-9)
        assert km["metrics"]["cost"] == pytest.approx(km["baselines"]["mllib"]["cost"], rel=1e-6)
        assert len(km["curves"]["cost"]) == km["metrics"]["iterations"] and km["bytes"] > 0
    svm = by_case["classification/cascade_svm/cascade-bsp"]
    assert svm["metrics"]["dual_objective"] == pytest.approx(svm["baselines"]["sklearn_svc"]["dual_objective"],
                                                             rel=1e-3)
    assert by_case["data/to_blocks/default"]["metrics"]["sum_rel_error"] < 1e-12


def test_a_failing_case_is_recorded_and_the_rest_still_run(quick_run):
    results, logs = quick_run["results"], quick_run["logs"]
    records = results["records"]
    assert records[0]["case"] == "testing/broken/default" and records[0]["status"] == "error"
    assert records[0]["error"] == "RuntimeError: deliberately broken case"
    assert "_broken_case" in records[0]["traceback"]
    assert results["failed"] == 1 and all(r["status"] == "ok" for r in records[1:])
    total = len(records)
    assert any(f"bench case 1/{total} testing/broken/default" in m and "FAILED" in m for m in logs)
    assert any(m.startswith(f"bench case {total}/{total} ") and "elapsed" in m for m in logs)


def test_reports_show_every_case_and_the_calibration(quick_run):
    out = quick_run["out"]
    md = open(quick_run["report"]).read()
    page = open(os.path.join(out, "report.html")).read()
    summary = quick_run["results"]["calibration"]["summary"]
    for case_id in CLASSICAL | {"testing/broken/default"}:
        assert case_id in page and case_id in md, case_id
    assert summary in md and html.escape(summary) in page
    assert "| case | dataset | size | workers | ours s |" in md and "machine ceiling" in md
    assert "## failures" in md and "deliberately broken case" in page
    assert page.count("<svg") >= 4  # quality/time per family, curves, bytes
    # self-contained: no external scripts, styles or images
    assert "<script" not in page and "<link" not in page and "src=\"http" not in page and "<img" not in page
    for png in ("quality_time_clustering.png", "quality_time_classification.png", "curves.png", "bytes.png"):
        with open(os.path.join(out, png), "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n", png
        assert f"]({png})" in md


def test_same_seed_and_suite_give_the_same_quality(spark, quick_run):
    cases = registry.select("quick", ["clustering/kmeans/bsp", "adaboost/bsp"])
    again = suite.run_cases(spark, cases, "quick", seed=0)
    first = {r["case"]: r for r in quick_run["results"]["records"]}
    for r in again:
        assert r["metrics"][r["quality"]] == first[r["case"]]["metrics"][r["quality"]], r["case"]


def test_a_case_needing_more_slots_than_the_session_has_is_skipped_not_failed(spark, caplog):
    """A 2-rank case on a 1-worker cluster (``--workers 1``) cannot run: it is skipped with the reason logged, not
    recorded as a failure; here a case needing 99 slots on the 2-slot test session."""
    calls = []
    big = registry.Case("testing", "wide", "default", "none", lambda ctx: calls.append(1), {"quick": {}}, "seconds",
                        min_slots=99)
    with caplog.at_level(logging.WARNING, logger="sparkml_dist.bench"):
        records = suite.run_cases(spark, [big], "quick")
    assert records == [] and calls == []
    assert "testing/wide/default skipped: it needs 99 task slots at once, the session has 2" in caplog.text


def test_compare_flags_an_injected_regression(quick_run, tmp_path, capsys):
    from sparkml_dist.cli import main

    base = os.path.join(quick_run["out"], "results.json")
    assert main(["bench", "compare", base, base]) == 0
    assert "0 regression(s)" in capsys.readouterr().out
    results = json.loads(open(base).read())
    slower, worse = copy.deepcopy(results), copy.deepcopy(results)
    for r in slower["records"]:
        if r["case"] == "clustering/kmeans/bsp":
            r["seconds"] *= 2
    for r in worse["records"]:
        if r["case"] == "classification/adaboost/bsp":
            r["metrics"]["accuracy"] -= 0.05
    for name, data in (("slower", slower), ("worse", worse)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(data))
        assert main(["bench", "compare", base, str(path)]) == 1, name
        text = capsys.readouterr().out
        assert "1 regression(s)" in text
    assert "worse    classification/adaboost/bsp" in text
    findings = compare.compare(results, slower)
    assert [f["case"] for f in findings if f["status"] == "slower"] == ["clustering/kmeans/bsp"]
    missing = copy.deepcopy(results)
    missing["records"] = [r for r in missing["records"] if r["case"] != "data/to_blocks/default"]
    assert [f["status"] for f in compare.compare(results, missing) if f["case"] == "data/to_blocks/default"] == [
        "missing"]
    with pytest.raises(ValueError, match="cannot read /no/such.json"):
        compare.main(["/no/such.json", base])


def _cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "sparkml_dist.cli", "bench", *args], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=REPO), cwd=REPO, timeout=timeout)


@pytest.mark.parametrize("args, message", [
    (["--suite", "clustering"], "--suite 'clustering': unknown; known: quick, standard, full"),
    (["--suite", "quick", "--only", "nosuch"], "--only 'nosuch': no case of suite 'quick' matches"),
    (["--suite", "quick", "--workers", "1,two"], "--workers '1,two': expected comma-separated integers"),
    (["--suite", "quick", "--workers", "0"], "--workers: counts must be >= 1"),
    (["compare", "only-one.json"], "expected two results.json files"),
])
def test_bench_cli_bad_input_fails_before_spark(args, message, tmp_path):
    proc = _cli(*args, "--out", str(tmp_path / "out"))
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr[-2000:]
    assert "SparkContext" not in proc.stderr and not os.path.exists(tmp_path / "out")


def test_bench_cli_refuses_an_existing_out_and_lists_cases(tmp_path):
    (tmp_path / "out").mkdir()
    proc = _cli("--suite", "quick", "--out", str(tmp_path / "out"))
    assert proc.returncode != 0 and "already exists (pass --overwrite" in proc.stderr
    listing = _cli("--suite", "quick", "--list")
    assert listing.returncode == 0 and all(c in listing.stdout for c in CLASSICAL)


def test_registry_picks_cases_by_family_name_variant_or_glob():
    ids = lambda only: sorted(c.id for c in registry.select("quick", only))  # noqa: E731
    assert ids(["clustering"]) == ["clustering/fuzzy_cmeans/bsp", "clustering/kmeans/bsp",
                                   "clustering/kmeans/mapreduce"]
    assert ids(["kmeans/bsp", "adaboost"]) == ["classification/adaboost/bsp", "classification/adaboost/mapreduce",
                                               "clustering/kmeans/bsp"]
    assert ids(["*/cascade_svm/*-bsp"]) == ["classification/cascade_svm/cascade-bsp"]
    with pytest.raises(ValueError, match="unknown suites"):
        registry.bench_case("x", "y", dataset="d", sizes={"tiny": {}}, quality="q")


def test_calibration_measures_one_against_two_processes():
    cal = calibration.measure((2,), loops=300_000, repeats=1)
    two = cal["parallel"]["2"]
    assert cal["single_seconds"] > 0 and 0 < two["relative_speed"] < 3
    assert two["speedup"] == pytest.approx(2 * two["relative_speed"])
    assert calibration.ceiling(cal, 2) == two["speedup"] and calibration.ceiling(cal, 1) == 1.0
    assert calibration.ceiling(cal, 4) == pytest.approx(4 * two["relative_speed"])  # nearest measured
    assert f"{two['relative_speed']:.2f} of one's speed" in cal["summary"]


@pytest.mark.cluster
@pytest.mark.slow
def test_workers_run_on_standalone_clusters_and_report_scaling(tmp_path):
    out = tmp_path / "scaling"
    proc = _cli("--suite", "quick", "--only", "clustering/kmeans/bsp", "--workers", "1,2", "--out", str(out),
                "--worker-memory", "1g", timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((out / "results.json").read_text())
    records = {r["workers"]: r for r in results["records"]}
    assert set(records) == {1, 2} and all(r["status"] == "ok" for r in records.values())
    assert records[1]["machine"]["master"].startswith("spark://") and records[1]["machine"]["master"] != \
        records[2]["machine"]["master"]
    # the same data and initial centres on 1 and 2 workers: the same model
    assert records[1]["metrics"]["cost"] == pytest.approx(records[2]["metrics"]["cost"], rel=1e-9)
    md = (out / "report.md").read_text()
    assert "## scaling against workers" in md and "speedup vs 1" in md
    assert "speedup_workers.png" in md


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
