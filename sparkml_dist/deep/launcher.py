"""Launch torch training on Spark: :func:`run` (every rank's result) and :class:`Distributor` (TorchDistributor's API).

Both go through the engine's one launcher, :func:`sparkml_dist.runtime.barrier.run_barrier`: one barrier stage of
``numWorkers`` tasks whose gloo group rendezvouses through the driver's ``TCPStore`` (~0.3 s warm, against 11-18 s
for ``TorchDistributor(local_mode=False)``, which starts ``torchrun`` in every task). On top of it each rank gets what
``torchrun`` would give it, so existing code runs unchanged:

* ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``GROUP_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``
  (rank 0's host and a free port there, for code that calls ``init_process_group("env://")`` itself);
* in :func:`run`, the default ``torch.distributed`` group already up: the launcher's gloo group on CPU, a
  ``cpu:gloo,cuda:nccl`` group on GPU (so CPU collectives keep working beside NCCL ones). Code that calls
  ``init_process_group`` itself guards it with ``if not dist.is_initialized()``, or runs through
  :class:`Distributor`, which leaves the group to the function as TorchDistributor does;
* GPUs: ``useGpu=True`` needs ``spark.task.resource.gpu.amount`` (or a ``ResourceProfile``); each task sees its
  Spark-assigned GPUs in ``CUDA_VISIBLE_DEVICES``;
* several local ranks per task (``processesPerTask=k``; with ``useGpu`` it defaults to the task's GPU count): the
  task starts ``k`` worker processes as ``torchrun`` does (``torch.multiprocessing.start_processes``, from a
  forkserver with torch preloaded, so only the first call of a Python worker pays for a torch import), local rank
  ``i`` on GPU ``i`` of the task (``CUDA_VISIBLE_DEVICES`` = that address), ``RANK = task * k + i``,
  ``WORLD_SIZE = tasks * k``, ``LOCAL_RANK = i``, ``LOCAL_WORLD_SIZE = k``, all in one process group (rendezvous
  through the same driver store). The task's input rows are split into ``k`` contiguous slices (an Arrow IPC file
  the local ranks memory-map). A raising local rank records its own failure (traceback, exception) through the
  launcher's error protocol, so the call fails with *its* traceback; the others are stopped. Without GPUs the same
  mechanism runs ``k`` gloo ranks per task (how it is tested on CPU);
* ``torch.set_num_threads(spark.task.cpus)`` in every rank, since a task owns that many cores (torch's default, all
  of the machine's cores per rank, oversubscribes every executor);
* :func:`get_context` returns a :class:`TorchContext` (rank, world size, device, this rank's partition as a feed,
  ``report(**metrics)`` for progress that the driver logs).

A raising rank fails the call with its traceback (:class:`~sparkml_dist.runtime.barrier.BarrierTaskError`), a hang
ends at ``timeout`` (:class:`TimeoutError`), and asking for more workers than free slots fails before any task runs
(:class:`~sparkml_dist.runtime.barrier.InsufficientSlotsError`).

Example::

    def train(lr):
        import torch, torch.distributed as dist
        model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 1))
        ...
        return dist.get_rank()

    run(train, 0.1, numWorkers=2)            # [0, 1]
    Distributor(2, local_mode=False, use_gpu=False).run(train, 0.1)   # 0, like TorchDistributor
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sparkml_dist.runtime.barrier import BarrierContext, BarrierResults, RankFailure, record_failure, run_barrier

logger = logging.getLogger(__name__)

_TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK", "MASTER_ADDR",
                 "MASTER_PORT", "CUDA_VISIBLE_DEVICES", "TORCHELASTIC_RESTART_COUNT")
_CURRENT: TorchContext | None = None


@dataclass
class TorchContext:
    """What a rank launched by :func:`run` knows about itself; ``get_context()`` inside the function."""

    rank: int
    world_size: int
    local_rank: int
    device: Any
    #: the launcher's barrier context (collectives on numpy arrays and Python objects, this rank's Arrow batches)
    barrier: BarrierContext
    gpus: list[str] = field(default_factory=list)
    progress: Any = None
    _arrays: dict | None = None

    def arrays(self, columns: Sequence[str] | None = None) -> dict:
        """This rank's partition of ``df`` as ``{column: numpy array}`` (read once, kept for later epochs)."""
        from sparkml_dist.data.feed import arrow_arrays

        if self._arrays is None:
            self._arrays = arrow_arrays(self.barrier.batches())
        if columns is None:
            return self._arrays
        missing = [c for c in columns if c not in self._arrays]
        if missing:
            raise KeyError(f"feed columns {missing} are not in the input (it has {sorted(self._arrays)})")
        return {c: self._arrays[c] for c in columns}

    def feed(self, batch_size: int, columns: Sequence[str] | None = None, *, shuffle: bool = True, seed: int = 0,
             equalize: str = "max"):
        """This rank's partition as a :class:`~sparkml_dist.data.feed.TensorFeed` with the same number of batches of
        ``batch_size`` rows on every rank (agreed through the group; see :func:`~sparkml_dist.data.feed.equal_steps`).
        """
        from sparkml_dist.data.feed import TensorFeed, equal_steps

        arrays = self.arrays(columns)
        rows = len(next(iter(arrays.values()))) if arrays else 0
        steps = equal_steps(rows, batch_size, equalize, self.barrier.allreduce)
        return TensorFeed(arrays, batch_size, steps, shuffle=shuffle, seed=seed, rank=self.rank, device=self.device)

    def report(self, **metrics) -> None:
        """Send one progress line (``epoch=1, step=20, loss=0.3``) to the driver's log."""
        if self.progress is not None:
            self.progress.report(**metrics)


def get_context() -> TorchContext:
    """The :class:`TorchContext` of the running rank (only inside a function launched by :func:`run`)."""
    if _CURRENT is None:
        raise RuntimeError("get_context() works only inside a function launched by sparkml_dist.deep.run")
    return _CURRENT


@dataclass(kw_only=True, slots=True)
class _Launch:
    """What every rank needs besides the function (pickled once into the stage)."""

    mode: str
    """``"run"`` (default group up), ``"distributor"`` (the function initialises its own) or ``"script"``."""
    use_gpu: bool = False
    num_threads: int = 1
    progress_address: str | None = None
    local_ranks: int = 1
    """processes per task (``processesPerTask``): 1 runs the rank in the task's Python worker itself"""
    has_input: bool = False


@dataclass(kw_only=True, slots=True)
class _LocalSpec:
    """What a spawned local rank needs from its task (pickled into the spawn arguments)."""

    task_rank: int
    local_ranks: int
    world_size: int
    env: dict
    gpus: list
    store: tuple
    group_prefix: str
    call_id: str
    attempt_prefix: str
    attempt: int
    timeout: float
    partitions: tuple
    input_path: str | None
    workdir: str


class LocalRankError(RuntimeError):
    """A local rank spawned by a task failed; ``failure`` is its :class:`RankFailure` (global rank, traceback)."""

    def __init__(self, failure: RankFailure, local_rank: int):
        self.failure = failure
        self.local_rank = local_rank
        self.retryable = failure.retryable
        super().__init__(f"local rank {local_rank} (rank {failure.rank} of {failure.world_size}) failed:\n"
                         f"{failure.traceback.strip()}")

    def __reduce__(self):
        return (type(self), (self.failure, self.local_rank))


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _rank_host(ctx: BarrierContext) -> str:
    address = ctx.peers[0] if ctx.peers and ctx.peers[0] else ""
    host = address.rsplit(":", 1)[0] if address else ""
    return host or socket.gethostbyname(socket.gethostname())


@contextlib.contextmanager
def _torchrun_env(env: dict[str, str]):
    """Set torchrun's variables for the rank and put the Python worker's own back afterwards (workers are reused)."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _gpu_addresses(ctx: BarrierContext) -> list[str]:
    resources = ctx._task_ctx.resources() if ctx._task_ctx is not None else {}
    gpu = resources.get("gpu")
    return list(gpu.addresses) if gpu is not None else []


def _torchrun_vars(rank: int, world_size: int, local_rank: int, local_world_size: int, group_rank: int,
                   master: str, port: int) -> dict[str, str]:
    return {"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(local_rank),
            "LOCAL_WORLD_SIZE": str(local_world_size), "GROUP_RANK": str(group_rank), "ROLE_RANK": str(rank),
            "MASTER_ADDR": master, "MASTER_PORT": str(port), "TORCHELASTIC_RESTART_COUNT": "0"}


def _rank_main(ctx: BarrierContext, target: Any, args: tuple, kwargs: dict, launch: _Launch):
    """Runs inside each barrier task: torchrun's environment, the device, the group, then the user's code -- in the
    task's own Python worker (one rank per task) or in ``processesPerTask`` spawned local ranks."""
    host = _rank_host(ctx)
    port = ctx.broadcast(_free_port(host) if ctx.rank == 0 else None)
    master = ctx.broadcast(host if ctx.rank == 0 else None)
    k = launch.local_ranks
    gpus: list[str] = []
    if launch.use_gpu:
        gpus = _gpu_addresses(ctx)
        if not gpus:
            raise RuntimeError(f"rank {ctx.rank}: useGpu=True but Spark assigned this task no GPU "
                               "(set spark.task.resource.gpu.amount or use a ResourceProfile)")
        if len(gpus) < k:
            raise RuntimeError(f"task {ctx.rank}: processesPerTask={k} but Spark assigned this task {len(gpus)} "
                               f"GPU(s) ({', '.join(gpus)}); one local rank needs one GPU")
    if k > 1:
        return _spawn_local_ranks(ctx, target, args, kwargs, launch, master, port, gpus)
    env = _torchrun_vars(ctx.rank, ctx.world_size, 0, 1, ctx.rank, master, port)

    def group() -> None:  # the launcher's gloo group is the default group; GPU runs and Distributor replace it
        import torch.distributed as dist

        if launch.mode == "distributor" or launch.use_gpu:
            dist.destroy_process_group()  # the function (or the NCCL set-up below) owns the default group
        if launch.mode == "run" and launch.use_gpu:
            dist.init_process_group("cpu:gloo,cuda:nccl", init_method="env://", rank=ctx.rank,
                                    world_size=ctx.world_size)
            ctx._group = dist.group.WORLD

    return _run_rank(ctx, env, gpus, 0, target, args, kwargs, launch, group)


def _run_rank(ctx: BarrierContext, env: dict[str, str], gpus: list[str], local_rank: int, target: Any, args: tuple,
              kwargs: dict, launch: _Launch, setup_group: Callable[[], None]):
    """One rank (in the task's worker or in a spawned local rank): device, environment, group, the user's code."""
    global _CURRENT
    import torch

    device: Any = torch.device("cpu")
    env = dict(env)
    if launch.use_gpu:
        if torch.cuda.is_initialized():  # a reused worker: CUDA_VISIBLE_DEVICES no longer applies, index directly
            device = torch.device("cuda", int(gpus[0]))
        else:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
            device = torch.device("cuda", 0)
    threads = torch.get_num_threads()
    with _torchrun_env(env):
        if launch.use_gpu:
            torch.cuda.set_device(device)
        torch.set_num_threads(launch.num_threads)
        try:
            if launch.mode == "script":
                return _run_script(target, args, ctx.rank)
            setup_group()
            from sparkml_dist.deep.progress import ProgressClient

            _CURRENT = TorchContext(rank=ctx.rank, world_size=ctx.world_size, local_rank=local_rank, device=device,
                                    barrier=ctx, gpus=gpus, progress=ProgressClient(launch.progress_address, ctx.rank))
            return target(*args, **kwargs)
        finally:
            _CURRENT = None
            torch.set_num_threads(threads)


# --- several local ranks per task ---------------------------------------------------------------------------------
def _write_input(ctx: BarrierContext, path: str) -> str | None:
    """The task's rows (its partitions in order) as one Arrow IPC file its local ranks memory-map; None if empty."""
    import pyarrow as pa

    tables = ctx.partition_tables()
    parts = [tables[p] for p in ctx.partitions if tables.get(p) is not None]
    if not parts:
        return None
    table = pa.concat_tables(parts)
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return path


def _read_input(path: str | None, local_rank: int, local_ranks: int):
    """Local rank ``i``'s contiguous slice ``[n i / k, n (i + 1) / k)`` of its task's rows, as record batches."""
    import pyarrow as pa

    if path is None:
        return iter(())
    table = pa.ipc.open_file(pa.memory_map(path, "r")).read_all()
    n = table.num_rows
    lo, hi = n * local_rank // local_ranks, n * (local_rank + 1) // local_ranks
    return iter(table.slice(lo, hi - lo).to_batches())


def _spawn_local_ranks(ctx: BarrierContext, target: Any, args: tuple, kwargs: dict, launch: _Launch, master: str,
                       port: int, gpus: list[str]) -> list:
    """Start ``launch.local_ranks`` processes (``torch.multiprocessing.start_processes``, as torchrun's local agent
    does), wait for them within the call's timeout, and return their results in local-rank order."""
    import cloudpickle
    from torch.multiprocessing import start_processes
    from torch.multiprocessing.spawn import ProcessException

    k = launch.local_ranks
    token = ctx.broadcast(uuid.uuid4().hex[:8] if ctx.rank == 0 else None)
    workdir = tempfile.mkdtemp(prefix="sparkml_dist-local-")
    try:
        input_path = _write_input(ctx, os.path.join(workdir, "input.arrow")) if launch.has_input else None
        spec = _LocalSpec(task_rank=ctx.rank, local_ranks=k, world_size=ctx.world_size * k,
                          env={**os.environ, "MASTER_ADDR": master, "MASTER_PORT": str(port)}, gpus=list(gpus),
                          store=(ctx._store.host, int(ctx._store.port)), group_prefix=f"{ctx._prefix}/local-{token}",
                          call_id=ctx._call_id, attempt_prefix=ctx._prefix, attempt=ctx.attempt,
                          timeout=ctx.timeout, partitions=ctx.partitions, input_path=input_path, workdir=workdir,
                          )
        payload = cloudpickle.dumps((target, args, kwargs, launch))
        procs = start_processes(_local_rank_entry, args=(spec, payload), nprocs=k, join=False,
                                start_method=_start_method())
        deadline = time.monotonic() + ctx.timeout
        try:
            while not procs.join(timeout=0.2):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"task {ctx.rank}: its {k} local ranks did not finish within {ctx.timeout} s")
        except ProcessException as exc:
            failure = _first_local_failure(workdir, k)
            if failure is None:
                raise RuntimeError(f"task {ctx.rank}: a local rank died: {exc}") from exc
            raise LocalRankError(*failure) from None
        finally:
            for proc in procs.processes:
                if proc.is_alive():
                    proc.kill()
                proc.join()
        results = []
        for i in range(k):
            with open(os.path.join(workdir, f"result-{i}.pkl"), "rb") as fh:
                results.append(pickle.load(fh))
        return results
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _start_method() -> str:
    """``forkserver`` with torch preloaded: the first call of a Python worker starts one server process (one torch
    import), later calls fork their local ranks from it in milliseconds. Like spawn, and unlike a plain fork of the
    task's process, no thread or lock of the task (its gloo group, Spark's worker) is copied into a local rank."""
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "torch.distributed", "cloudpickle", "sparkml_dist.deep.launcher"])
    return "forkserver"


def _first_local_failure(workdir: str, k: int) -> tuple[RankFailure, int] | None:
    """The earliest failure a local rank of this task recorded (the others usually fail because it did)."""
    found = []
    for i in range(k):
        path = os.path.join(workdir, f"failure-{i}.pkl")
        if os.path.exists(path):
            with open(path, "rb") as fh:
                when, failure = pickle.load(fh)
            found.append((when, i, failure))
    if not found:
        return None
    _, i, failure = min(found, key=lambda f: f[:2])
    return failure, i


def _local_rank_entry(local_rank: int, spec: _LocalSpec, payload: bytes) -> None:
    """A spawned local rank: torchrun's variables, its GPU, one group over every task's local ranks, the function;
    its result (or its failure, also recorded in the driver's store) goes to the task's work directory."""
    if sys.platform == "linux":  # a killed task (cancelled stage) must not leave its local ranks running
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the forkserver (which dies with the task) is already gone
            os._exit(1)
    os.environ.update(spec.env)  # the task's environment (a forkserver's children start from the server's)
    import cloudpickle
    import torch.distributed as dist

    k = spec.local_ranks
    rank = spec.task_rank * k + local_rank
    env = _torchrun_vars(rank, spec.world_size, local_rank, k, spec.task_rank, spec.env["MASTER_ADDR"],
                         int(spec.env["MASTER_PORT"]))
    gpus = [spec.gpus[local_rank]] if spec.gpus else []
    ctx = BarrierContext(rank=rank, world_size=spec.world_size, peers=[], timeout=spec.timeout, attempt=spec.attempt,
                         partitions=spec.partitions, _call_id=spec.call_id, _prefix=spec.attempt_prefix)
    try:
        target, args, kwargs, launch = cloudpickle.loads(payload)
        delta = datetime.timedelta(seconds=spec.timeout)
        ctx._store = dist.TCPStore(spec.store[0], spec.store[1], None, False, delta)
        ctx._batches = _read_input(spec.input_path, local_rank, k)

        def group() -> None:
            if launch.mode == "run":
                backend = "cpu:gloo,cuda:nccl" if launch.use_gpu else "gloo"
                dist.init_process_group(backend, store=dist.PrefixStore(spec.group_prefix, ctx._store), rank=rank,
                                        world_size=spec.world_size, timeout=delta)
                ctx._group = dist.group.WORLD

        threads = max(1, launch.num_threads // k)
        launch = _Launch(mode=launch.mode, use_gpu=launch.use_gpu, num_threads=threads,
                         progress_address=launch.progress_address, local_ranks=k, has_input=launch.has_input)
        result = _run_rank(ctx, env, gpus, local_rank, target, args, kwargs, launch, group)
        with open(os.path.join(spec.workdir, f"result-{local_rank}.pkl"), "wb") as fh:
            fh.write(cloudpickle.dumps(result))
    except BaseException as exc:  # noqa: BLE001 - reported through the launcher's error protocol, then re-raised
        failure = RankFailure.capture(exc, rank, spec.world_size, spec.attempt)
        record_failure(ctx._store, spec.attempt_prefix, spec.call_id, failure)
        with open(os.path.join(spec.workdir, f"failure-{local_rank}.pkl"), "wb") as fh:
            pickle.dump((time.time(), failure), fh)
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _run_script(path: str, args: tuple, rank: int) -> str:
    """Run a torchrun-style script in a child process with this rank's environment; its output is the result."""
    def die_with_parent():  # a cancelled Spark task kills its Python worker; the child must not outlive it
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

    proc = subprocess.run([sys.executable, path, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, env=dict(os.environ),
                          preexec_fn=die_with_parent if sys.platform == "linux" else None)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-100:])
        raise RuntimeError(f"script {path} exited with status {proc.returncode} on rank {rank}; its last output:\n"
                           f"{tail}")
    return proc.stdout


def _check_picklable(target: Any) -> None:
    import cloudpickle

    try:
        cloudpickle.dumps(target)
    except Exception as exc:  # noqa: BLE001 - re-raised with what to do
        raise TypeError(f"the training function {getattr(target, '__name__', target)!r} cannot be pickled for the "
                        f"Spark tasks ({type(exc).__name__}: {exc}); import heavy objects inside it instead of "
                        "capturing them") from exc


def _task_cpus(spark) -> int:
    return int(spark.sparkContext.getConf().get("spark.task.cpus", "1"))


def _check_gpu_conf(spark) -> None:
    conf = spark.sparkContext.getConf()
    if float(conf.get("spark.task.resource.gpu.amount", "0")) <= 0:
        raise RuntimeError("useGpu=True needs GPUs assigned to Spark tasks: set spark.task.resource.gpu.amount "
                           "(and spark.executor.resource.gpu.amount with a discovery script), or pass useGpu=False")


def _gpus_per_task(spark) -> float:
    return float(spark.sparkContext.getConf().get("spark.task.resource.gpu.amount", "0"))


def local_ranks(spark, useGpu: bool, processesPerTask: int | None) -> int:
    """Processes per barrier task: ``processesPerTask``, or with ``useGpu`` the GPUs each task gets (1 otherwise).
    Checked on the driver: a positive integer, and with ``useGpu`` no more than the task's GPUs."""
    gpus = int(_gpus_per_task(spark)) if useGpu else 0
    if processesPerTask is None:
        return max(1, gpus)
    if isinstance(processesPerTask, bool) or not isinstance(processesPerTask, int) or processesPerTask < 1:
        raise ValueError(f"processesPerTask={processesPerTask!r}: must be a positive integer")
    if useGpu and processesPerTask > max(1, gpus):
        raise ValueError(f"processesPerTask={processesPerTask} but each task gets "
                         f"spark.task.resource.gpu.amount={_gpus_per_task(spark):g} GPU(s); one local rank needs "
                         "one GPU")
    return processesPerTask


def launch(target: Any, args: tuple = (), kwargs: dict | None = None, *, mode: str = "run",
           numWorkers: int | None = None, useGpu: bool = False, df=None, timeout: float | None = 600.0, spark=None,
           progress: bool = True, processesPerTask: int | None = None) -> list:
    """The shared body of :func:`run` and :meth:`Distributor.run`; every rank's result, in rank order
    (``numWorkers * processesPerTask`` of them).

    A stage that fails on some rank is re-attempted by Spark (``run_barrier`` runs it as a retryable barrier stage,
    up to ``spark.stage.maxConsecutiveAttempts`` / the task failures the master allows); training code that
    checkpoints (:mod:`sparkml_dist.deep.checkpoint`) resumes from its last checkpoint there. Timeouts and bad
    input are not retried.
    """
    from pyspark.sql import SparkSession

    if mode == "script":
        if not isinstance(target, str) or not os.path.isfile(target):
            raise FileNotFoundError(f"training script {target!r} does not exist")
    elif not callable(target):
        raise TypeError(f"run expects a function or a script path, got {type(target).__name__}")
    else:
        _check_picklable(target)
    if numWorkers is not None and (not isinstance(numWorkers, int) or numWorkers < 1):
        raise ValueError(f"numWorkers={numWorkers!r}: must be a positive integer")
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout={timeout!r}: must be > 0 seconds (or None)")
    spark = spark or (df.sparkSession if df is not None else SparkSession.getActiveSession())
    if spark is None:
        raise RuntimeError("no active SparkSession: create one (sparkml_dist.runtime.get_spark) or pass spark=")
    if useGpu:
        _check_gpu_conf(spark)
    k = local_ranks(spark, useGpu, processesPerTask)
    server = None
    if progress:
        from sparkml_dist.deep.progress import ProgressServer

        host = spark.sparkContext.getConf().get("spark.driver.host", None) or socket.gethostname()
        server = ProgressServer(host)
    spec = _Launch(mode=mode, use_gpu=useGpu, num_threads=_task_cpus(spark),
                   progress_address=server.address if server else None, local_ranks=k, has_input=df is not None)
    try:
        results = run_barrier(_rank_main, numWorkers, spark=spark, df=df,
                              args=(target, tuple(args), dict(kwargs or {}), spec), timeout=timeout)
    finally:
        if server is not None:
            server.close()
    if k == 1:
        return results
    flat = BarrierResults(value for task in results for value in task)  # task t's local ranks are t*k .. t*k+k-1
    flat.stats, flat.seconds, flat.layout = results.stats, results.seconds, results.layout
    return flat


def run(fn: Callable[..., Any] | str, *args, numWorkers: int | None = None, useGpu: bool = False, df=None,
        timeout: float | None = 600.0, spark=None, processesPerTask: int | None = None, **kwargs) -> list:
    """Run ``fn(*args, **kwargs)`` on ``numWorkers`` Spark barrier tasks of ``processesPerTask`` torch ranks each;
    every rank's result.

    Parameters
    ----------
    fn : callable or str
        The training function (cloudpickled to the tasks; import heavy modules inside it), or the path of a
        torchrun-style script, run in a child process with ``args`` as its command line (result: its output).
    numWorkers : int, optional
        Barrier tasks; defaults to the partitions of ``df``, else the cluster's task slots. More than the free slots
        fails at once.
    useGpu : bool
        One GPU per rank from Spark's task resources and an NCCL (``cpu:gloo,cuda:nccl``) default group.
    processesPerTask : int, optional
        Local ranks per task (spawned processes; world size ``numWorkers * processesPerTask``). Default: the GPUs
        each task gets with ``useGpu`` (``spark.task.resource.gpu.amount``), else 1 (the rank runs in the task).
    df : DataFrame, optional
        Input; rank ``r`` reads partition ``r`` through ``get_context().feed(...)`` (repartitioned to ``numWorkers``
        first when the counts differ).
    timeout : float, optional
        Seconds before the stage is cancelled and :class:`TimeoutError` raised.

    Returns
    -------
    list
        ``fn``'s return value on every rank, in rank order (with ``.stats``: bytes, messages, seconds per rank).
    """
    mode = "script" if isinstance(fn, str) else "run"
    return launch(fn, args, kwargs, mode=mode, numWorkers=numWorkers, useGpu=useGpu, df=df, timeout=timeout,
                  spark=spark, processesPerTask=processesPerTask)


class Distributor:
    """Drop-in for ``pyspark.ml.torch.distributor.TorchDistributor``: same constructor, ``run`` returns rank 0's value.

    ``from sparkml_dist.deep import Distributor as TorchDistributor`` is the whole migration. The function
    initialises its own process group (``dist.init_process_group("gloo")`` reads the ``MASTER_*`` variables set
    here), as it does under TorchDistributor; a script path runs on every rank with ``args`` as its command line and
    returns ``None``, as TorchDistributor's file mode does.

    Parameters
    ----------
    num_processes : int
        Ranks (one Spark barrier task each).
    local_mode : bool
        TorchDistributor runs ``local_mode=True`` ranks on the driver node. Here every rank is a barrier task
        (on ``local[*]`` masters those run on the driver's machine anyway); on a cluster ``local_mode=True`` logs
        that the ranks run on executors.
    use_gpu : bool
        TorchDistributor's default is ``True``; it needs ``spark.task.resource.gpu.amount``.
    """

    def __init__(self, num_processes: int = 1, local_mode: bool = True, use_gpu: bool = True, *, spark=None,
                 timeout: float | None = 600.0):
        if not isinstance(num_processes, int) or num_processes < 1:
            raise ValueError(f"num_processes={num_processes!r}: must be a positive integer")
        self.num_processes = num_processes
        self.local_mode = local_mode
        self.use_gpu = use_gpu
        self.spark = spark
        self.timeout = timeout

    def run(self, train_object: Callable[..., Any] | str, *args, **kwargs) -> Any:
        """Run ``train_object`` on every rank; rank 0's return value (``None`` for a script)."""
        from pyspark.sql import SparkSession

        spark = self.spark or SparkSession.getActiveSession()
        if self.local_mode and spark is not None and not spark.sparkContext.master.startswith("local"):
            logger.info("Distributor(local_mode=True): ranks run as barrier tasks on the executors")
        mode = "script" if isinstance(train_object, str) else "distributor"
        # num_processes counts processes, as in TorchDistributor: tasks with several GPUs run one rank per GPU
        k = local_ranks(spark, self.use_gpu, None) if spark is not None else 1
        k = k if self.num_processes % k == 0 else 1
        results = launch(train_object, args, kwargs, mode=mode, numWorkers=self.num_processes // k,
                         useGpu=self.use_gpu, timeout=self.timeout, spark=spark, processesPerTask=k)
        return None if mode == "script" else results[0]
