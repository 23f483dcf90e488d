"""A real Spark standalone cluster on this machine: Master + Workers started with pyspark's own ``bin/spark-class``.

``sparkml-dist cluster start --workers 2 --cores 1 --memory 2g`` starts
``org.apache.spark.deploy.master.Master`` and N ``org.apache.spark.deploy.worker.Worker`` processes on 127.0.0.1
(the same classes and ports as ``docker-compose.yml``), waits until every worker is registered (the master's ``/json``
endpoint), and records pids, ports and log files in a state directory (``$SPARKML_DIST_STATE_DIR`` or
``~/.sparkml_dist/cluster``). ``cluster stop`` stops exactly those pids, each only after checking that it is still
the process that was started (same start time, a Spark Master/Worker command line): a pid the kernel has since
given to another program is left alone. ``cluster status`` reads the master's view. ``cluster start`` right after a
``cluster stop`` waits a few seconds for the requested port to be released before taking a free one, and prints the
master URL as its last line; ``--master local-standalone`` (:func:`recorded_master_url`) takes it from the state
directory. The test fixture ``standalone_cluster`` and ``.ci/run`` use the same class.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
HOST = "127.0.0.1"


def spark_home() -> str:
    """``SPARK_HOME``, or the Spark distribution inside the installed pyspark wheel."""
    env = os.environ.get("SPARK_HOME")
    if env and os.path.isfile(os.path.join(env, "bin", "spark-class")):
        return env
    import pyspark

    return os.path.dirname(pyspark.__file__)


def _port_free(port: int) -> bool:
    """Whether the master could listen on ``port``: with SO_REUSEADDR, as the JVM's server sockets have it, so a
    port whose previous listener just stopped (connections in TIME_WAIT) counts as free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
            return True
        except OSError:
            return False


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free ports (all sockets held open together, so the kernel cannot hand one out twice)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _wait_port_free(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if _port_free(port):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.25)


def default_state_dir() -> Path:
    return Path(os.environ.get("SPARKML_DIST_STATE_DIR", Path.home() / ".sparkml_dist" / "cluster"))


def recorded_master_url(state_dir: str | os.PathLike | None = None) -> str:
    """The master URL of the running cluster recorded in ``state_dir`` (``--master local-standalone``)."""
    cluster = LocalStandaloneCluster.attach(state_dir)
    if "master" not in cluster.alive_pids():
        raise RuntimeError(f"--master local-standalone: the cluster recorded in {cluster.state_dir} is not running "
                           "(start one with `sparkml-dist cluster start`)")
    return cluster.master_url


def _start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot; field 22 of /proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().decode(errors="replace").split("\0")
    except OSError:
        return []


def cluster_env() -> dict[str, str]:
    """Environment for master, workers and spark-submit: loopback, this interpreter for Python workers."""
    env = dict(os.environ)
    home = spark_home()
    env.update({
        "SPARK_HOME": home,
        "SPARK_LOCAL_IP": HOST,
        "SPARK_MASTER_HOST": HOST,
        "PYSPARK_PYTHON": env.get("PYSPARK_PYTHON", sys.executable),
        "PYSPARK_DRIVER_PYTHON": env.get("PYSPARK_DRIVER_PYTHON", sys.executable),
        "SPARK_NO_DAEMONIZE": "1",
    })
    # make the package importable by executors even when it is not installed (running from a checkout)
    repo = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH", "")) if p)
    return env


@dataclass
class ClusterState:
    master_port: int
    master_webui_port: int
    workers: int
    cores: int
    memory: str
    state_dir: str
    pids: dict[str, int] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    #: name -> the process's start time when it was spawned (see ``_start_time``), to recognise it at stop
    start_times: dict[str, int] = field(default_factory=dict)

    @property
    def master_url(self) -> str:
        return f"spark://{HOST}:{self.master_port}"

    @property
    def webui_url(self) -> str:
        return f"http://{HOST}:{self.master_webui_port}"


class LocalStandaloneCluster:
    """Start/stop a standalone Master and Workers on loopback; use as a context manager in tests."""

    def __init__(self, workers: int = 2, cores: int = 1, memory: str = "2g", master_port: int | None = 7077,
                 webui_port: int | None = 8080, state_dir: str | os.PathLike | None = None):
        if workers < 1:
            raise ValueError(f"--workers must be >= 1, got {workers}")
        if cores < 1:
            raise ValueError(f"--cores must be >= 1, got {cores}")
        self.state_dir = Path(state_dir or default_state_dir())
        self.state_file = self.state_dir / "cluster.json"
        self.workers = workers
        self.cores = cores
        self.memory = memory
        self.master_port = master_port
        self.webui_port = webui_port
        self.state: ClusterState | None = None

    # -- state ------------------------------------------------------------------------------------------------
    @classmethod
    def attach(cls, state_dir: str | os.PathLike | None = None) -> LocalStandaloneCluster:
        """The cluster recorded in ``state_dir`` (started earlier, possibly by another process)."""
        self = cls(state_dir=state_dir)
        if not self.state_file.exists():
            raise FileNotFoundError(f"no cluster recorded in {self.state_dir} (start one with `sparkml-dist cluster "
                                    "start`)")
        self.state = ClusterState(**json.loads(self.state_file.read_text()))  # older files lack start_times
        return self

    def _save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self._st), indent=2))
        os.replace(tmp, self.state_file)

    @property
    def master_url(self) -> str:
        return self._st.master_url

    @property
    def _st(self) -> ClusterState:
        """The recorded state (started or attached), or a clear error."""
        if self.state is None:
            raise RuntimeError("the cluster is not started (call start() or attach())")
        return self.state

    # -- lifecycle --------------------------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> int:
        log = self.state_dir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [os.path.join(spark_home(), "bin", "spark-class"), *args]
        with open(log, "ab") as fh:
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                    start_new_session=True)
        self._st.pids[name] = proc.pid
        self._st.logs[name] = str(log)
        started = _start_time(proc.pid)
        if started is not None:
            self._st.start_times[name] = started
        self._save()
        return proc.pid

    def start(self, timeout: float = 90.0, port_wait: float = 10.0) -> LocalStandaloneCluster:
        if self.state_file.exists():
            try:
                existing = LocalStandaloneCluster.attach(self.state_dir)
                if existing.alive_pids():
                    raise RuntimeError(f"a cluster recorded in {self.state_dir} is still running "
                                       f"({existing.master_url}); stop it first with `sparkml-dist cluster stop`")
            except (json.JSONDecodeError, TypeError):
                pass
            self.state_file.unlink(missing_ok=True)
        # right after `cluster stop` the old master's ports can take a moment to be released: wait for them
        wanted, wanted_ui = self.master_port or 0, self.webui_port or 0  # 0 / None: any free port
        spare = [p for p in _free_ports(4 + self.workers) if p not in (wanted, wanted_ui)]  # distinct ones
        master_port = wanted if wanted and _wait_port_free(wanted, port_wait) else spare.pop()
        webui_port = (wanted_ui if wanted_ui and _wait_port_free(wanted_ui, port_wait if master_port == wanted else 0)
                      else spare.pop())
        if self.master_port and master_port != self.master_port:
            logger.warning("port %d is busy; the master listens on %d", self.master_port, master_port)
        self.state = ClusterState(master_port, webui_port, self.workers, self.cores, self.memory,
                                  str(self.state_dir))
        env = cluster_env()
        try:
            self._spawn("master", [MASTER_CLASS, "--host", HOST, "--port", str(master_port), "--webui-port",
                                   str(webui_port)], env)
            for i in range(self.workers):
                self._spawn_worker(i, spare.pop(), env)
            self.wait_until_ready(timeout)
        except BaseException:
            self.stop()
            raise
        logger.info("standalone cluster up: %s with %d workers x %d cores (web UI %s)", self.master_url,
                    self.workers, self.cores, self._st.webui_url)
        return self

    def _spawn_worker(self, i: int, webui_port: int, env: dict[str, str]) -> int:
        work_dir = self.state_dir / f"work-{i}"
        work_dir.mkdir(parents=True, exist_ok=True)
        return self._spawn(f"worker-{i}", [WORKER_CLASS, "--host", HOST, "--cores", str(self.cores), "--memory",
                                           self.memory, "--webui-port", str(webui_port), "--work-dir",
                                           str(work_dir), self._st.master_url], env)

    def restart_worker(self, i: int, timeout: float = 90.0) -> int:
        """Start ``worker-i`` again after it died (a replaced host) and wait until the master lists it alive."""
        name = f"worker-{i}"
        if name in self.alive_pids():
            raise RuntimeError(f"{name} is still running (pid {self._st.pids[name]})")
        port = _free_ports(1)[0]
        pid = self._spawn_worker(i, port, cluster_env())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # the dead worker can stay listed ALIVE until spark.worker.timeout
            if not _alive(pid):
                raise RuntimeError(f"{name} exited during start-up; see {self._st.logs[name]}:\n"
                                   + _tail(self._st.logs[name]))
            try:
                if any(w.get("state") == "ALIVE" and str(w.get("webuiaddress", "")).endswith(f":{port}")
                       for w in self.master_json().get("workers", [])):
                    return pid
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{name} did not register with {self.master_url} within {timeout} s")

    def master_json(self) -> dict:
        """The master's ``/json`` view. While the web UI is still starting its handlers, ``/json`` can fall
        through to the HTML status page (seen under load); that surfaces as ``MasterNotReady`` (an ``OSError``)."""
        assert self.state is not None
        url = f"{self._st.webui_url}/json"
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=5) as resp:
            body = resp.read().decode(errors="replace")
        try:
            info = json.loads(body)
        except ValueError:
            raise MasterNotReady(f"{url} answered with something other than JSON: {body[:60]!r}...") from None
        if not isinstance(info, dict) or info.get("url") != self._st.master_url:
            raise MasterNotReady(f"{url} is not the master at {self._st.master_url} (it reports "
                                 f"{info.get('url') if isinstance(info, dict) else info!r})")
        return info

    def wait_until_ready(self, timeout: float = 90.0) -> dict:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            dead = [name for name, pid in self._st.pids.items() if not _alive(pid)]
            if dead:
                raise RuntimeError(f"{', '.join(dead)} exited during start-up; see {self._st.logs[dead[0]]}:\n"
                                   + _tail(self._st.logs[dead[0]]))
            try:
                info = self.master_json()
                alive = [w for w in info.get("workers", []) if w.get("state") == "ALIVE"]
                if len(alive) >= self._st.workers:
                    return info
            except OSError as exc:
                last_error = exc
            time.sleep(0.5)
        raise TimeoutError(f"the standalone cluster did not register {self._st.workers} workers within {timeout} s "
                           f"(last error: {last_error}); logs in {self.state_dir / 'logs'}")

    def alive_pids(self) -> dict[str, int]:
        return {n: p for n, p in (self._st.pids if self.state else {}).items() if _alive(p)}

    def status(self) -> dict:
        out: dict[str, Any] = {"master_url": self.master_url, "webui": self._st.webui_url, "pids": self._st.pids,
                               "alive": sorted(self.alive_pids())}
        try:
            info = self.master_json()
            out["workers"] = [{"id": w["id"], "state": w["state"], "cores": w["cores"], "memory": w["memory"]}
                              for w in info.get("workers", [])]
            out["status"] = info.get("status")
        except OSError as exc:
            out["status"] = f"unreachable ({exc})"
        return out

    def is_ours(self, name: str) -> bool:
        """Whether the recorded pid of ``name`` is still the process we started: alive, the same start time, and a
        Spark Master/Worker command line (pids are reused: never signal a stranger)."""
        assert self.state is not None
        pid = self._st.pids.get(name)
        if pid is None or not _alive(pid):
            return False
        recorded = self._st.start_times.get(name)
        if recorded is not None and _start_time(pid) != recorded:
            return False
        expected = MASTER_CLASS if name == "master" else WORKER_CLASS
        return any(expected in arg for arg in _cmdline(pid))

    def stop(self, timeout: float = 20.0) -> list[int]:
        """Stop exactly the recorded pids (workers first) that are still ours, SIGKILL what outlives ``timeout``."""
        if self.state is None:
            return []
        names = sorted(self._st.pids, key=lambda n: n == "master")
        signalled: list[tuple[str, int]] = []
        for name in names:
            pid = self._st.pids[name]
            if not _alive(pid):
                continue
            if not self.is_ours(name):
                logger.warning("pid %d (%s) is no longer the process this cluster started; left alone", pid, name)
                continue
            try:
                os.kill(pid, signal.SIGTERM)
                signalled.append((name, pid))
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        for name, pid in signalled:
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if self.is_ours(name):
                os.kill(pid, signal.SIGKILL)
        self.state_file.unlink(missing_ok=True)
        stopped = [pid for _, pid in signalled]
        logger.info("stopped standalone cluster (pids %s)", stopped)
        return stopped

    def __enter__(self) -> LocalStandaloneCluster:
        return self.start() if self.state is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


class MasterNotReady(OSError):
    """The master's web UI answered, but not (yet) with its JSON view."""


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # reap our own children so they do not linger as zombies
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie of another parent still answers kill(0)
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _tail(path: str, lines: int = 30) -> str:
    try:
        return "".join(Path(path).read_text(errors="replace").splitlines(keepends=True)[-lines:])
    except OSError:
        return ""


def spark_submit(script: str, args: list[str] | None = None, master: str = "local[2]",
                 conf: dict[str, str] | None = None, timeout: float = 600.0,
                 cwd: str | None = None) -> subprocess.CompletedProcess:
    """Run ``spark-submit`` (pyspark's own) on ``script``; returns the completed process (output captured).

    ``SPARK_CONF_DIR`` points at the repository's ``conf/`` (unless set), so spark-submit's own launcher logs through
    ``conf/log4j2.properties`` (WARN) instead of Spark's built-in INFO configuration, as the README's
    ``export SPARK_CONF_DIR=$PWD/conf`` does for commands typed by hand.
    """
    log4j = Path(__file__).resolve().parents[2] / "conf" / "log4j2.properties"
    cmd = [os.path.join(spark_home(), "bin", "spark-submit"), "--master", master,
           "--conf", f"spark.driver.host={HOST}", "--conf", f"spark.driver.bindAddress={HOST}",
           "--conf", "spark.ui.enabled=false", "--conf", "spark.ui.showConsoleProgress=false"]
    if log4j.is_file():
        cmd += ["--driver-java-options", f"-Dlog4j.configurationFile=file:{log4j}"]
    for key, value in (conf or {}).items():
        cmd += ["--conf", f"{key}={value}"]
    cmd += [script, *(args or [])]
    env = cluster_env()
    if log4j.is_file():
        env.setdefault("SPARK_CONF_DIR", str(log4j.parent))
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)
