"""A real standalone master + workers (pyspark's bin/spark-class on loopback) and spark-submit against it."""

import json
import os
import subprocess
import sys

import pytest

from sparkml_dist.runtime.cluster import LocalStandaloneCluster, spark_submit

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.cluster


def _submit(cluster, script, *args, timeout=300):
    proc = spark_submit(os.path.join(REPO, "jobs", script), list(args), master=cluster.master_url,
                        conf={"spark.executor.memory": "768m"}, timeout=timeout, cwd=REPO)
    assert proc.returncode == 0, f"spark-submit {script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def test_cluster_registers_its_workers(standalone_cluster):
    status = standalone_cluster.status()
    assert status["status"] == "ALIVE"
    assert [w["state"] for w in status["workers"]] == ["ALIVE", "ALIVE"]
    assert all(w["cores"] == 1 for w in status["workers"])
    assert sorted(status["alive"]) == ["master", "worker-0", "worker-1"]


def test_work_runs_in_separate_executor_jvms(standalone_cluster, tmp_path):
    out = tmp_path / "diag"
    proc = _submit(standalone_cluster, "diagnose.py", "--output", str(out), "min_slots=2", "executors=2")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["master"] == standalone_cluster.master_url
    assert metrics["slots"] == 2 and metrics["executors"] == metrics["executors_expected"] == 2
    # spark-submit's launcher logs through conf/log4j2.properties (SPARK_CONF_DIR): no Spark INFO lines
    spark_info = [ln for ln in proc.stderr.splitlines() if " INFO " in ln and "sparkml_dist" not in ln]
    assert spark_info == [], spark_info[:5]
    executors = {tuple(e) for e in metrics["task_executors"]}
    assert len(executors) == 2, executors  # two executor JVMs, one per worker
    assert all(eid not in ("driver", "unknown") for eid, _ in executors)
    assert len({pid for _, pid in executors}) == 2
    assert metrics["driver_pid"] not in {pid for _, pid in executors}
    # the barrier stage spans both executors, and its gloo allreduce works across the JVMs
    assert len({tuple(e) for e in metrics["barrier_executors"]}) == 2
    assert metrics["barrier_allreduce"] == [2.0, 1.0]


@pytest.mark.slow  # ~1 min; `make run` runs the same job, the jobs tests submit to the cluster: `pytest -m slow`
def test_quickstart_job_by_spark_submit_writes_atomically(standalone_cluster, tmp_path):
    out = tmp_path / "qs"
    _submit(standalone_cluster, "quickstart.py", "--config", os.path.join(REPO, "conf/jobs/quickstart.yaml"),
            "--output", str(out), "input.n_rows=4000", "input.num_partitions=2", "params.maxIter=3",
            "params.adaboostRounds=5")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["rows"] == 4000 and metrics["features"] == 16
    assert metrics["engines_max_abs_difference"] < 1e-9
    assert metrics["kmeans_engines_cost_relative_difference"] < 1e-6  # the models agree, not only the moments
    assert [p for p in os.listdir(tmp_path) if "_tmp" in p] == []


def test_failed_submit_leaves_no_output(standalone_cluster, tmp_path):
    out = tmp_path / "bad"
    proc = spark_submit(os.path.join(REPO, "jobs", "generate_data.py"),
                        ["--output", str(out), "input.generator=nosuch"], master=standalone_cluster.master_url,
                        timeout=300, cwd=REPO)
    assert proc.returncode != 0
    assert "input.generator='nosuch': unknown" in proc.stdout + proc.stderr  # spark-submit merges them
    assert os.listdir(tmp_path) == []


def _start_output(proc):
    """``cluster start`` prints its status as JSON, then the master URL as the last line."""
    lines = proc.stdout.strip().splitlines()
    return json.loads("\n".join(lines[:-1])), lines[-1]


def test_cli_start_status_stop_manages_exactly_its_pids(tmp_path):
    from sparkml_dist.runtime.cluster import _free_ports

    env = dict(os.environ, SPARKML_DIST_STATE_DIR=str(tmp_path / "state"))
    cli = [sys.executable, "-m", "sparkml_dist.cli", "cluster"]
    port, ui = _free_ports(2)
    start_args = ["start", "--workers", "1", "--cores", "1", "--memory", "512m", "--port", str(port),
                  "--webui-port", str(ui)]
    start = subprocess.run(cli + start_args, env=env, capture_output=True, text=True, timeout=180)
    assert start.returncode == 0, start.stderr
    info, url = _start_output(start)
    assert url == info["master_url"] == f"spark://127.0.0.1:{port}"
    pids = list(info["pids"].values())
    try:
        assert len(pids) == 2 and all(_alive(p) for p in pids)
        status = subprocess.run(cli + ["status"], env=env, capture_output=True, text=True, timeout=60)
        assert json.loads(status.stdout)["workers"][0]["state"] == "ALIVE"
        again = subprocess.run(cli + ["start", "--workers", "1", "--port", "0", "--webui-port", "0"], env=env,
                               capture_output=True, text=True, timeout=60)
        assert again.returncode != 0 and "is still running" in again.stderr
    finally:
        stop = subprocess.run(cli + ["stop"], env=env, capture_output=True, text=True, timeout=60)
    assert stop.returncode == 0
    assert not any(_alive(p) for p in pids)
    assert subprocess.run(cli + ["status"], env=env, capture_output=True, text=True).returncode == 1
    # start right after stop: the same port again (it waits for the old master's port), URL on the last line
    restart = subprocess.run(cli + start_args, env=env, capture_output=True, text=True, timeout=180)
    try:
        assert restart.returncode == 0, restart.stderr
        assert _start_output(restart)[1] == f"spark://127.0.0.1:{port}"
    finally:
        subprocess.run(cli + ["stop"], env=env, capture_output=True, text=True, timeout=60)


def test_stop_never_signals_a_pid_that_is_no_longer_ours(tmp_path):
    """Pids are reused: a recorded pid now held by another program (other command line, or other start time)
    is left alone."""
    from sparkml_dist.runtime.cluster import ClusterState, _start_time

    stranger = subprocess.Popen(["sleep", "60"])
    try:
        cluster = LocalStandaloneCluster(workers=1, state_dir=tmp_path)
        cluster.state = ClusterState(7077, 8080, 1, 1, "1g", str(tmp_path), pids={"worker-0": stranger.pid},
                                     start_times={"worker-0": _start_time(stranger.pid)})
        assert not cluster.is_ours("worker-0")  # alive, same start time, but not a Spark Worker
        assert cluster.stop(timeout=1) == [] and stranger.poll() is None
        cluster.state.start_times["worker-0"] = _start_time(stranger.pid) - 1  # a recycled pid
        assert not cluster.is_ours("worker-0")
    finally:
        stranger.kill()
        stranger.wait()


def test_port_wait_outlasts_a_listener_that_is_going_away():
    import socket
    import threading

    from sparkml_dist.runtime.cluster import _free_ports, _port_free, _wait_port_free

    port = _free_ports(1)[0]
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen()
    assert not _port_free(port)
    threading.Timer(1.0, holder.close).start()
    assert _wait_port_free(port, timeout=10)


def test_bad_cluster_arguments(tmp_path):
    with pytest.raises(ValueError, match="--workers must be >= 1"):
        LocalStandaloneCluster(workers=0, state_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="no cluster recorded"):
        LocalStandaloneCluster.attach(tmp_path / "none")


def test_wait_until_ready_outlasts_a_web_ui_still_starting(tmp_path):
    """While the master's UI is starting, ``/json`` can fall through to its HTML page (seen in CI under load): the
    wait retries until the master's own JSON arrives, and never accepts JSON from another master."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from sparkml_dist.runtime.cluster import ClusterState, MasterNotReady

    answers = ["<!DOCTYPE html><html>starting</html>", "<!DOCTYPE html><html>starting</html>"]
    seen = []

    class UI(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)
            body = answers.pop(0) if answers else json.dumps({"url": "spark://127.0.0.1:7", "status": "ALIVE",
                                                               "workers": [{"state": "ALIVE"}]})
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), UI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cluster = LocalStandaloneCluster(workers=1, state_dir=tmp_path)
        cluster.state = ClusterState(7, server.server_port, 1, 1, "1g", str(tmp_path))
        info = cluster.wait_until_ready(timeout=20)
        assert info["workers"] == [{"state": "ALIVE"}] and seen == ["/json"] * 3
        cluster.state = ClusterState(8, server.server_port, 1, 1, "1g", str(tmp_path))  # a different master's UI
        with pytest.raises(MasterNotReady, match="not the master at spark://127.0.0.1:8"):
            cluster.master_json()
        with pytest.raises(TimeoutError, match="did not register 1 workers within 1.5 s.*not the master"):
            cluster.wait_until_ready(timeout=1.5)
    finally:
        server.shutdown()


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
