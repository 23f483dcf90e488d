"""``sparkml-dist package``: the packed environment (``--archives``) and the zip (``--py-files``), built here, run by
a Python that does not have ``sparkml_dist`` installed, and submitted to a real standalone cluster whose executors
have neither the package nor (for the archive) its dependencies on their path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile

import pytest

from sparkml_dist import packaging

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_PYTHON = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
#: the dependencies a k-means job with the MapReduce engine does not import (keeps the archive ~150 MB)
LEAN = "torch,matplotlib,gymnasium,ale-py,numba,llvmlite"


def _bare_env() -> dict:
    """This process's environment without anything that could put sparkml_dist on a child's path."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run([sys.executable, "-m", "sparkml_dist.cli", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_base_python_does_not_have_the_package():
    proc = subprocess.run([BASE_PYTHON, "-c", "import sparkml_dist"], env=_bare_env(), capture_output=True,
                          text=True, cwd="/")
    assert proc.returncode != 0 and "No module named 'sparkml_dist'" in proc.stderr


def test_zip_imports_in_a_python_without_the_package(tmp_path):
    out = packaging.build_zip(str(tmp_path / "sparkml_dist.zip"))
    names = zipfile.ZipFile(out["path"]).namelist()
    assert "sparkml_dist/__init__.py" in names and "sparkml_dist/runner.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import sparkml_dist.bench.registry as r; "
            "print(r.__file__)")
    proc = subprocess.run([BASE_PYTHON, "-c", code, out["path"]], env=_bare_env(), capture_output=True, text=True,
                          cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith(out["path"])  # imported from inside the zip


def test_packed_env_is_relocatable(tmp_path):
    """A small environment (only PyYAML besides the package) unpacked elsewhere: its python finds its own
    site-packages, not this venv's."""
    everything_but_yaml = [d.metadata["Name"] for d in packaging.dependency_closure()
                           if d.metadata["Name"].lower() != "pyyaml"]
    info = packaging.build_env(str(tmp_path / "env.tar.gz"), tuple(everything_but_yaml) + packaging.DEFAULT_EXCLUDE)
    assert [d.split("==")[0].lower() for d in info["distributions"]] == ["pyyaml"]
    with tarfile.open(info["path"]) as tar:
        names = tar.getnames()
        assert {"pyvenv.cfg", "bin/python", "bin/activate"} <= set(names)
        tar.extractall(tmp_path / "moved" / "environment", filter="fully_trusted")
    python = tmp_path / "moved" / "environment" / "bin" / "python"
    code = "import sys, yaml, sparkml_dist; print(sys.prefix); print(sparkml_dist.__file__); import numpy"
    proc = subprocess.run([str(python), "-c", code], env=_bare_env(), capture_output=True, text=True, cwd="/")
    prefix, location = proc.stdout.split()[:2]
    assert prefix == str(tmp_path / "moved" / "environment")
    assert location.startswith(prefix)
    assert "No module named 'numpy'" in proc.stderr  # left out: not this venv's


def test_package_cli_refuses_to_overwrite_and_names_bad_input(tmp_path):
    (tmp_path / "sparkml_dist.zip").write_bytes(b"old")
    proc = _cli("package", "--out", str(tmp_path), "--only", "zip")
    assert proc.returncode != 0 and "already exist" in proc.stderr and "--overwrite" in proc.stderr
    assert (tmp_path / "sparkml_dist.zip").read_bytes() == b"old"
    with pytest.raises(FileNotFoundError, match="--interpreter /no/such/python"):
        packaging.build_env(str(tmp_path / "e.tar.gz"), interpreter="/no/such/python")
    assert not os.path.exists(tmp_path / "e.tar.gz")


# -- the two routes on a real standalone cluster -----------------------------------------------------------------
@pytest.fixture(scope="module")
def artefacts(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    proc = _cli("package", "--out", str(out), "--exclude", LEAN)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--archives" in proc.stdout and "--py-files" in proc.stdout
    # the executors of the --py-files route: a Python that has the dependencies, not the package
    deps = out / "deps"
    packaging.build_env(str(out / "deps.tar.gz"), packaging.DEFAULT_EXCLUDE + tuple(LEAN.split(",")),
                        include_package=False)
    with tarfile.open(out / "deps.tar.gz") as tar:
        tar.extractall(deps, filter="fully_trusted")
    return {"env": str(out / "env.tar.gz"), "zip": str(out / "sparkml_dist.zip"), "deps_python": str(deps / "bin" /
                                                                                                       "python")}


@pytest.fixture(scope="module")
def bare_cluster(tmp_path_factory):
    """Master + 2 workers whose environment has no path to sparkml_dist, and whose default Python is the base
    interpreter (which does not have it either)."""
    from sparkml_dist.runtime import cluster as cluster_mod

    real = cluster_mod.cluster_env

    def bare():
        env = real()
        env.pop("PYTHONPATH", None)
        env["PYSPARK_PYTHON"] = BASE_PYTHON
        return env

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cluster_mod, "cluster_env", bare)
        c = cluster_mod.LocalStandaloneCluster(workers=2, cores=1, memory="1g", master_port=None, webui_port=None,
                                               state_dir=tmp_path_factory.mktemp("bare-standalone")).start(timeout=180)
    yield c
    c.stop()


def _submit_kmeans(cluster, out, conf):
    from sparkml_dist.runtime.cluster import spark_submit

    return spark_submit(os.path.join(REPO, "jobs", "train_kmeans.py"),
                        ["--config", os.path.join(REPO, "conf/jobs/kmeans.yaml"), "--output", str(out),
                         "input.n_rows=2000", "params.engine=mapreduce", "params.maxIter=5"],
                        master=cluster.master_url, timeout=600,
                        # the driver runs this interpreter (client mode); only the executors get the shipped code
                        conf={"spark.executor.memory": "768m", "spark.task.maxFailures": "1",
                              "spark.pyspark.driver.python": sys.executable, **conf},
                        cwd=REPO)


@pytest.mark.cluster
@pytest.mark.slow
def test_submit_with_packed_env_and_with_zip(bare_cluster, artefacts, tmp_path):
    # control: executors without the package fail, naming it
    proc = _submit_kmeans(bare_cluster, tmp_path / "none", {"spark.pyspark.python": artefacts["deps_python"]})
    assert proc.returncode != 0
    assert "No module named 'sparkml_dist'" in proc.stdout + proc.stderr
    assert not os.path.exists(tmp_path / "none")
    # --py-files sparkml_dist.zip: the dependencies are there, the package comes in the zip
    proc = _submit_kmeans(bare_cluster, tmp_path / "zip", {"spark.pyspark.python": artefacts["deps_python"],
                                                           "spark.submit.pyFiles": artefacts["zip"]})
    assert proc.returncode == 0, proc.stderr[-4000:]
    # --archives env.tar.gz#environment with PYSPARK_PYTHON=./environment/bin/python: everything comes in it
    proc = _submit_kmeans(bare_cluster, tmp_path / "env", {"spark.pyspark.python": "./environment/bin/python",
                                                           "spark.archives": artefacts["env"] + "#environment"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    zipped = json.loads((tmp_path / "zip" / "metrics.json").read_text())
    packed = json.loads((tmp_path / "env" / "metrics.json").read_text())
    assert zipped["rows"] == packed["rows"] == 2000
    assert zipped["adjusted_rand_index"] > 0.9  # 5 well-separated blobs found
    # same job, same data, same seed: the same model whichever way the package travelled
    assert zipped["summary"]["trainingCost"] == pytest.approx(packed["summary"]["trainingCost"], rel=1e-12)


# -- every spark-submit entry script fails with a reason and a non-zero exit -------------------------------------
@pytest.mark.parametrize("script", sorted(os.path.basename(p) for p in __import__("glob").glob(
    os.path.join(REPO, "jobs", "*.py"))))
def test_every_job_script_exits_nonzero_with_the_reason_last(script, tmp_path):
    """A missing ``--config`` file: exit code != 0 and the reason (naming the file) as the last line of stderr, before
    any Spark work. (``jobs/bench.py`` takes suites, not configs: an unknown suite, in exactly one line.)"""
    args = ["--suite", "nosuch"] if script == "bench.py" else ["--config", str(tmp_path / "missing.yaml")]
    proc = subprocess.run([sys.executable, os.path.join(REPO, "jobs", script), *args], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=REPO), cwd=REPO, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0, proc.stderr
    if script == "bench.py":
        assert lines == ["jobs/bench.py: --suite 'nosuch': unknown; known: quick, standard, full (pick families or "
                         "cases with --only, e.g. --only clustering,adaboost)"]
    else:
        assert "missing.yaml" in lines[-1] and "no such file" in lines[-1].lower(), lines[-3:]
    assert "SparkContext" not in proc.stderr
