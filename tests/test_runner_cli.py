"""Job configs, the job harness (atomic outputs) and the ``sparkml-dist`` CLI."""

import json
import os

import pytest
import yaml

from sparkml_dist import cli
from sparkml_dist.runner import JobResult, get_job, load_config, register_job, run_job

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_load_config_applies_typed_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"job": "generate", "input": {"generator": "blobs", "n_rows": 10}}))
    cfg = load_config(str(path), ["input.n_rows=25", "params.k=3", "params.name=abc"], "generate")
    assert cfg["input"] == {"generator": "blobs", "n_rows": 25}
    assert cfg["params"] == {"k": 3, "name": "abc"}


def test_config_errors_name_the_culprit(tmp_path):
    with pytest.raises(FileNotFoundError, match="--config nope.yaml: no such file"):
        load_config("nope.yaml")
    with pytest.raises(ValueError, match="override 'k': expected key=value"):
        load_config(None, ["k"], "generate")
    with pytest.raises(ValueError, match="config is for job 'kmeans', not 'generate'"):
        load_config(None, ["job=kmeans"], "generate")
    with pytest.raises(ValueError, match="unknown job 'nojob'; known jobs: .*quickstart"):
        get_job("nojob")


def test_every_shipped_job_config_names_a_known_job():
    for name in os.listdir(os.path.join(REPO, "conf", "jobs")):
        with open(os.path.join(REPO, "conf", "jobs", name)) as fh:
            cfg = yaml.safe_load(fh)
        assert cfg["job"] == name[:-5]
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
    with pytest.raises(SystemExit, match="hastie_10_2 always has 10 features"):
        cli.main(["datasets", "generate", "hastie_10_2", "--features", "3", "--output", str(tmp_path / "x")])


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
