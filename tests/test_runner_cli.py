"""Job configs, the job harness (atomic outputs) and the ``sparkml-dist`` CLI."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from sparkml_dist import cli
from sparkml_dist.runner import ConfigError, JobResult, get_job, load_config, register_job, run_job

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_load_config_applies_typed_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"job": "generate", "input": {"generator": "blobs", "n_rows": 10}}))
    cfg = load_config(str(path), ["input.n_rows=25", "input.centers=3", "input.cluster_std=0.5"], "generate")
    assert cfg["input"] == {"generator": "blobs", "n_rows": 25, "centers": 3, "cluster_std": 0.5}
    # a new source replaces the file's (its generator keys would not fit a path)
    cfg = load_config(str(path), ["input.name=iris"], "generate")
    assert cfg["input"] == {"name": "iris"}


def test_config_errors_name_the_culprit(tmp_path):
    with pytest.raises(ConfigError, match="--config nope.yaml: no such file"):
        load_config("nope.yaml")
    with pytest.raises(ConfigError, match="override 'k': expected key=value"):
        load_config(None, ["k"], "generate")
    with pytest.raises(ConfigError, match="config is for job 'kmeans', not 'generate'"):
        load_config(None, ["job=kmeans"], "generate")
    with pytest.raises(ConfigError, match="unknown job 'nojob'; known jobs: .*quickstart"):
        get_job("nojob")


KMEANS = os.path.join(REPO, "conf", "jobs", "kmeans.yaml")


@pytest.mark.parametrize("overrides,message", [
    (["paramz.k=8"], r"paramz: unknown section for job 'kmeans' \(did you mean 'params'\?\)"),
    (["params.kk=8"], r"params.kk: not a Param of KMeans \(did you mean 'k'\?\)"),
    (["input.n_rowz=100"], r"input.n_rowz: unknown key \(did you mean 'n_rows'\?\)"),
    (["params.k=abc"], r"params: Invalid param value given for param \"k\"\. Could not convert abc to int"),
    (["input.n_rows=many"], r"input.n_rows='many': expected int, got str"),
    (["input.generator=blob"], r"input.generator='blob': unknown generator \(did you mean 'blobs'\?\)"),
    (["input=nowhere/data.parquet"], r"input.name='nowhere/data.parquet': neither a bundled dataset"),
    (["input.path=nowhere.csv"], r"input.path='nowhere.csv': no such file or directory"),
    (["overwrite=yes please"], r"overwrite='yes please': expected bool, got str"),
])
def test_whole_config_is_validated_against_the_job_schema(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(KMEANS, overrides, "kmeans")


def test_every_shipped_job_config_validates():
    for name in os.listdir(os.path.join(REPO, "conf", "jobs")):
        path = os.path.join(REPO, "conf", "jobs", name)
        with open(path) as fh:
            job = yaml.safe_load(fh)["job"]
        load_config(path, job=job)  # raises on any schema mistake


_NO_JVM = """
import sys, time
from sparkml_dist import cli
start = time.perf_counter()
rc = cli.main(sys.argv[1:])
from pyspark import SparkContext
assert SparkContext._gateway is None and SparkContext._active_spark_context is None, "a JVM was started"
sys.stderr.write(f"SECONDS {time.perf_counter() - start:.3f}\\n")
sys.exit(rc)
"""


@pytest.mark.parametrize("argv,message", [
    (["run", "kmeans", "paramz.k=8"], "paramz: unknown section for job 'kmeans' (did you mean 'params'?)"),
    (["run", "kmeans", "params.kk=8"], "params.kk: not a Param of KMeans (did you mean 'k'?)"),
    (["run", "kmeanz"], "unknown job 'kmeanz' (did you mean 'kmeans'?)"),
    (["run", "kmeans", "--config", "missing.yaml"], "--config missing.yaml: no such file"),
    (["run", "kmeans", "input.path=out/none-such"], "input.path='out/none-such': no such file or directory"),
    (["run", "generate", "--output", "conf"], "output conf exists: pass --overwrite"),
    (["datasets", "generate", "blobz", "--output", "out/x"], "unknown generator 'blobz' (did you mean 'blobs'?)"),
])
def test_cli_mistakes_are_one_line_before_spark_starts(argv, message):
    proc = subprocess.run([sys.executable, "-c", _NO_JVM, *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, PYTHONPATH=REPO))
    lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith("SECONDS ")]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and message in lines[0], proc.stderr
    seconds = float(proc.stderr.split("SECONDS ")[1].split()[0])
    # the JVM check above is the real one; the bound only catches a Spark start creeping in (importing an
    # estimator package loads torch and numba, seconds on a loaded machine)
    assert seconds < 60, seconds


def test_existing_output_needs_overwrite_and_is_kept_otherwise(spark, tmp_path):
    out = tmp_path / "out"
    run_job("_test_frames", {}, spark, str(out))
    (out / "marker").write_text("old")
    with pytest.raises(ConfigError, match="exists: pass --overwrite"):
        run_job("_test_frames", {}, spark, str(out))
    assert (out / "marker").read_text() == "old"  # refused: the old output is untouched
    run_job("_test_frames", {"overwrite": True}, spark, str(out))
    assert not (out / "marker").exists() and (out / "metrics.json").is_file()
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no temporary or old copies left beside it
    # the harness writes metrics.json through Hadoop's FileSystem: a file: URI works the same
    uri = f"file://{tmp_path}/uri-out"
    run_job("_test_frames", {}, spark, uri)
    assert json.loads((tmp_path / "uri-out" / "metrics.json").read_text())["n"] == 3
    assert not list((tmp_path / "uri-out").glob(".*.crc"))


def test_atomic_swap_keeps_the_old_output_until_the_new_one_is_complete(spark, tmp_path):
    from sparkml_dist.data.io import atomic_path, write_text

    target = f"file://{tmp_path}/result"
    with atomic_path(target, spark) as tmp:
        write_text(f"{tmp}/part", "v1", spark)
    seen = []
    with pytest.raises(RuntimeError, match="failed half way"):
        with atomic_path(target, spark) as tmp:
            write_text(f"{tmp}/part", "v2", spark)
            seen.append((tmp_path / "result" / "part").read_text())  # during the write: still the old output
            raise RuntimeError("failed half way")
    assert seen == ["v1"] and (tmp_path / "result" / "part").read_text() == "v1"
    with atomic_path(target, spark) as tmp:
        write_text(f"{tmp}/part", "v3", spark)
    assert (tmp_path / "result" / "part").read_text() == "v3"
    assert sorted(os.listdir(tmp_path)) == ["result"]


def test_quickstart_checks_the_engines_models_and_passes_when_partitions_equal_slots(spark, tmp_path):
    cfg = load_config(os.path.join(REPO, "conf", "jobs", "quickstart.yaml"),
                      ["input.n_rows=3000", "input.num_partitions=2", "params.maxIter=5", "params.adaboostRounds=3"],
                      "quickstart")
    metrics = run_job("quickstart", cfg, spark, str(tmp_path / "qs"))
    assert metrics["kmeans_engines_cost_relative_difference"] < 1e-6
    assert metrics["kmeans_mapreduce_cost"] == pytest.approx(metrics["kmeans_bsp_cost"], rel=1e-6)


def test_engine_agreement_check_fails_loudly_on_different_models(spark):
    from sparkml_dist.clustering import KMeans, KMeansModel
    from sparkml_dist.data.sources import from_numpy
    from sparkml_dist.quickstart import EnginesDisagreeError, check_kmeans_agree

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(c, 0.3, size=(100, 2)) for c in ((0, 0), (5, 5), (0, 5))])
    df = from_numpy(spark, X, num_partitions=2).cache()
    good = KMeans(k=3, seed=1).fit(df)
    # the same centres listed in another order agree (matched one to one)
    shuffled = KMeansModel(good.centers[::-1].copy(), good.summary)
    assert check_kmeans_agree(good, shuffled)["centre_max_abs_difference"] == 0.0
    # a k-means stopped after one random-init step is another model: costs and centres differ
    other = KMeans(k=3, seed=7, maxIter=1, initMode="random").fit(df)
    with pytest.raises(EnginesDisagreeError, match="MapReduce and BSP k-means disagree: costs"):
        check_kmeans_agree(good, other)
    moved = KMeansModel(good.centers + 1e-3, good.summary)  # same cost recorded, centres 1e-3 apart
    with pytest.raises(EnginesDisagreeError, match="centres up to 0.001 apart"):
        check_kmeans_agree(good, moved)
    df.unpersist()


def test_every_shipped_job_config_names_a_known_job():
    for name in os.listdir(os.path.join(REPO, "conf", "jobs")):
        with open(os.path.join(REPO, "conf", "jobs", name)) as fh:
            cfg = yaml.safe_load(fh)
        # a config is named after its job, or `<job>_<variant>` (rl_impala.yaml, rl_dppo.yaml: job rl)
        assert name[:-5] == cfg["job"] or name.startswith(cfg["job"] + "_"), name
        get_job(cfg["job"])


@register_job("_test_failing")
def _failing(spark, cfg):
    raise RuntimeError("the job broke half way")


@register_job("_test_frames")
def _frames(spark, cfg):
    return JobResult(metrics={"n": 3}, frames={"data": spark.range(3)})


def test_run_job_writes_outputs_atomically(spark, tmp_path):
    out = tmp_path / "ok"
    metrics = run_job("_test_frames", {}, spark, str(out))
    assert metrics["n"] == 3 and metrics["job"] == "_test_frames"
    assert json.loads((out / "metrics.json").read_text())["n"] == 3
    assert spark.read.parquet(str(out / "data")).count() == 3
    bad = tmp_path / "bad"
    with pytest.raises(RuntimeError, match="the job broke half way"):
        run_job("_test_failing", {}, spark, str(bad))
    assert sorted(os.listdir(tmp_path)) == ["ok"]  # nothing half-written beside it


def test_cli_datasets_list(capsys):
    assert cli.main(["datasets", "list"]) == 0
    out = capsys.readouterr().out
    assert "bundled    digits" in out and "generator  hastie_10_2" in out


def test_cli_generate_and_run_generate_job(spark, tmp_path):
    # the CLI reuses the running local session (getOrCreate), as a notebook would
    out = tmp_path / "hastie"
    assert cli.main(["datasets", "generate", "hastie_10_2", "--rows", "500", "--partitions", "2", "--seed", "3",
                     "--output", str(out)]) == 0
    df = spark.read.parquet(str(out))
    assert df.count() == 500 and set(df.columns) == {"features", "label"}
    assert cli.main(["datasets", "generate", "hastie_10_2", "--features", "3", "--output", str(tmp_path / "x")]) == 2
    # the existing output is refused without --overwrite and kept; with it, replaced
    assert cli.main(["datasets", "generate", "hastie_10_2", "--rows", "100", "--output", str(out)]) == 2
    assert spark.read.parquet(str(out)).count() == 500
    assert cli.main(["datasets", "generate", "hastie_10_2", "--rows", "100", "--output", str(out),
                     "--overwrite"]) == 0
    assert spark.read.parquet(str(out)).count() == 100


def test_cli_help_everywhere(capsys):
    for argv in (["--help"], ["datasets", "--help"], ["cluster", "start", "--help"], ["run", "--help"],
                 ["bench", "--help"]):
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 0
    assert "--profile" in capsys.readouterr().out


def test_cli_run_lists_jobs(capsys):
    assert cli.main(["run", "--list"]) == 0
    out = capsys.readouterr().out
    assert "quickstart" in out and "kmeans" in out and "adaboost" in out
