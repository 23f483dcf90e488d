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
  Spark-assigned GPUs in ``CUDA_VISIBLE_DEVICES`` and trains on the first (``LOCAL_RANK=0``);
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
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sparkml_dist.runtime.barrier import BarrierContext, run_barrier

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


def _rank_main(ctx: BarrierContext, target: Any, args: tuple, kwargs: dict, launch: _Launch):
    """Runs inside each barrier task: torchrun's environment, the device, the group, then the user's code."""
    global _CURRENT
    import torch
    import torch.distributed as dist

    host = _rank_host(ctx)
    port = ctx.broadcast(_free_port(host) if ctx.rank == 0 else None)
    master = ctx.broadcast(host if ctx.rank == 0 else None)
    env = {"RANK": str(ctx.rank), "WORLD_SIZE": str(ctx.world_size), "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
           "GROUP_RANK": str(ctx.rank), "ROLE_RANK": str(ctx.rank), "MASTER_ADDR": master, "MASTER_PORT": str(port),
           "TORCHELASTIC_RESTART_COUNT": "0"}
    gpus: list[str] = []
    device: Any = torch.device("cpu")
    if launch.use_gpu:
        gpus = _gpu_addresses(ctx)
        if not gpus:
            raise RuntimeError(f"rank {ctx.rank}: useGpu=True but Spark assigned this task no GPU "
                               "(set spark.task.resource.gpu.amount or use a ResourceProfile)")
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
            if launch.mode == "distributor" or launch.use_gpu:
                dist.destroy_process_group()  # the function (or the NCCL set-up below) owns the default group
            if launch.mode == "run" and launch.use_gpu:
                dist.init_process_group("cpu:gloo,cuda:nccl", init_method="env://", rank=ctx.rank,
                                        world_size=ctx.world_size)
                ctx._group = dist.group.WORLD
            from sparkml_dist.deep.progress import ProgressClient

            _CURRENT = TorchContext(rank=ctx.rank, world_size=ctx.world_size, local_rank=0, device=device,
                                    barrier=ctx, gpus=gpus, progress=ProgressClient(launch.progress_address, ctx.rank))
            return target(*args, **kwargs)
        finally:
            _CURRENT = None
            torch.set_num_threads(threads)


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


def launch(target: Any, args: tuple = (), kwargs: dict | None = None, *, mode: str = "run",
           numWorkers: int | None = None, useGpu: bool = False, df=None, timeout: float | None = 600.0, spark=None,
           progress: bool = True) -> list:
    """The shared body of :func:`run` and :meth:`Distributor.run`; every rank's result, in rank order.

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
    server = None
    if progress:
        from sparkml_dist.deep.progress import ProgressServer

        host = spark.sparkContext.getConf().get("spark.driver.host", None) or socket.gethostname()
        server = ProgressServer(host)
    spec = _Launch(mode=mode, use_gpu=useGpu, num_threads=_task_cpus(spark),
                   progress_address=server.address if server else None)
    try:
        results = run_barrier(_rank_main, numWorkers, spark=spark, df=df,
                              args=(target, tuple(args), dict(kwargs or {}), spec), timeout=timeout)
    finally:
        if server is not None:
            server.close()
    return results


def run(fn: Callable[..., Any] | str, *args, numWorkers: int | None = None, useGpu: bool = False, df=None,
        timeout: float | None = 600.0, spark=None, **kwargs) -> list:
    """Run ``fn(*args, **kwargs)`` on ``numWorkers`` torch ranks (one Spark barrier task each); every rank's result.

    Parameters
    ----------
    fn : callable or str
        The training function (cloudpickled to the tasks; import heavy modules inside it), or the path of a
        torchrun-style script, run in a child process with ``args`` as its command line (result: its output).
    numWorkers : int, optional
        World size; defaults to the partitions of ``df``, else the cluster's task slots. More than the free slots
        fails at once.
    useGpu : bool
        One GPU per rank from Spark's task resources and an NCCL (``cpu:gloo,cuda:nccl``) default group.
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
                  spark=spark)


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
        results = launch(train_object, args, kwargs, mode=mode, numWorkers=self.num_processes, useGpu=self.use_gpu,
                         timeout=self.timeout, spark=spark)
        return None if mode == "script" else results[0]
