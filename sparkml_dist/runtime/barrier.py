"""Barrier collectives: the one launcher every distributed algorithm of this package uses.

:func:`run_barrier` runs a Python function on ``N`` Spark barrier tasks through
``DataFrame.mapInArrow(..., barrier=True)`` (which also works under Spark Connect, unlike ``rdd.barrier()``).
Inside, the function receives a :class:`BarrierContext` with its ``rank``, ``world_size`` and ``peers`` and can
``allgather`` / ``allreduce`` / ``broadcast`` Python objects and numpy arrays, and ``barrier()``.

Transport. Every collective runs over a ``torch.distributed`` gloo group that this module sets up for the call:
the driver hosts a ``TCPStore`` on ``spark.driver.host`` and the tasks rendezvous there, so the group is up in a few
hundred milliseconds. ``BarrierTaskContext.allGather`` was the first design for small messages, but measured here it
costs ~1 s per call (the task side polls its RPC once a second), which a 20-iteration algorithm cannot afford; it is
used only as the fallback rendezvous when the driver cannot host the store (``rendezvous="spark"``, e.g. Spark Connect,
where rank 0 hosts the store and publishes ``host:port`` through one ``allGather``).

What every rank returns comes back to the driver, ordered by rank. An exception on any rank fails the call with that
rank's traceback in :class:`BarrierTaskError`; ``timeout`` turns a hang into :class:`TimeoutError` (the Spark jobs are
cancelled, and in-task collectives time out too). A call asking for more tasks than the cluster has free task slots
fails at once with :class:`InsufficientSlotsError` instead of Spark's ten minutes of retries.

Example::

    def fn(ctx):
        local = np.full(3, ctx.rank, dtype=float)
        return ctx.allreduce(local)          # every rank gets [0+1, 0+1, 0+1]

    results = run_barrier(fn, num_tasks=2, spark=spark)
"""

from __future__ import annotations

import datetime
import logging
import os
import pickle
import re
import socket
import time
import traceback
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

logger = logging.getLogger(__name__)

_ERROR_MARK = "SPARKML_DIST_BARRIER_RANK_FAILED"
_REDUCE_OPS = ("sum", "max", "min")


class BarrierTaskError(RuntimeError):
    """A rank of a barrier call raised; ``rank`` and ``remote_traceback`` say where and what."""

    def __init__(self, rank: int, world_size: int, remote_traceback: str):
        self.rank = rank
        self.world_size = world_size
        self.remote_traceback = remote_traceback
        super().__init__(f"barrier task rank {rank} of {world_size} failed:\n{remote_traceback}")


class InsufficientSlotsError(RuntimeError):
    """The cluster has fewer concurrent task slots than a barrier call needs."""


@dataclass
class BarrierContext:
    """What a function launched by :func:`run_barrier` sees: its rank, the world and the collectives."""

    rank: int
    world_size: int
    peers: list[str]
    timeout: float = 600.0
    _task_ctx: Any = None
    _batches: Iterator | None = None
    bytes_sent: int = 0
    messages: int = 0
    _group: Any = None

    # --- data -------------------------------------------------------------------------------------------------
    def batches(self) -> Iterator:
        """The Arrow ``RecordBatch`` es of this rank's partition of the input DataFrame (once)."""
        if self._batches is None:
            return iter(())
        batches, self._batches = self._batches, None
        return batches

    # --- collectives ------------------------------------------------------------------------------------------
    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier(group=self._group)

    def allgather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (any picklable object), ordered by rank."""
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self._group)
        self.messages += 1
        self.bytes_sent += len(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)) * (self.world_size - 1)
        return out

    def broadcast(self, obj: Any = None, root: int = 0) -> Any:
        """``obj`` of rank ``root`` on every rank."""
        import torch.distributed as dist

        box = [obj if self.rank == root else None]
        dist.broadcast_object_list(box, src=root, group=self._group)
        self.messages += 1
        if self.rank == root:
            self.bytes_sent += len(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)) * (self.world_size - 1)
        return box[0]

    def allreduce(self, array: np.ndarray, op: str = "sum") -> np.ndarray:
        """Element-wise ``sum``/``max``/``min`` of a numpy array over all ranks (same shape and dtype everywhere).

        The caller's array is not modified.
        """
        import torch
        import torch.distributed as dist

        if op not in _REDUCE_OPS:
            raise ValueError(f"allreduce op must be one of {_REDUCE_OPS}, got {op!r}")
        tensor = torch.from_numpy(np.array(array, copy=True, order="C"))
        dist.all_reduce(tensor, op=getattr(dist.ReduceOp, op.upper()), group=self._group)
        # a ring allreduce sends about 2 (n-1)/n of the buffer from every rank
        self.bytes_sent += int(2 * tensor.numel() * tensor.element_size() * (self.world_size - 1) / self.world_size)
        self.messages += 1
        return tensor.numpy()

    def torch_group(self):
        """The gloo process group of this call (the default group of ``torch.distributed`` in the task)."""
        return self._group

    def stats(self) -> dict:
        return {"rank": self.rank, "bytes_sent": self.bytes_sent, "messages": self.messages}


def _init_group(ctx: BarrierContext, store_address: str | None, call_id: str, timeout: float) -> None:
    """Join the call's gloo group: through the driver's TCPStore, or one that rank 0 hosts (Spark rendezvous)."""
    import torch.distributed as dist

    if dist.is_initialized():  # a reused Python worker must not carry a group from an earlier task
        dist.destroy_process_group()
    delta = datetime.timedelta(seconds=timeout)
    if store_address is None:
        host = ctx.peers[0].rsplit(":", 1)[0] if ctx.peers and ctx.peers[0] else "127.0.0.1"
        if ctx.rank == 0:
            store = dist.TCPStore(host, 0, ctx.world_size, True, delta, wait_for_workers=False)
            address = f"{host}:{store.port}"
        else:
            address = ""
        store_address = list(ctx._task_ctx.allGather(address))[0]
        if ctx.rank != 0:
            h, p = store_address.rsplit(":", 1)
            store = dist.TCPStore(h, int(p), ctx.world_size, False, delta)
    else:
        h, p = store_address.rsplit(":", 1)
        store = dist.TCPStore(h, int(p), None, False, delta)
    host = store_address.rsplit(":", 1)[0]
    if host.startswith("127.") or host == "localhost":
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", store=dist.PrefixStore(call_id, store), rank=ctx.rank,
                            world_size=ctx.world_size, timeout=delta)
    ctx._group = dist.group.WORLD
    ctx._store = store  # keep the client alive as long as the group


def _close_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


class BarrierResults(list):
    """Per-rank return values (ordered by rank), with ``stats`` (bytes, messages, seconds per rank)."""

    stats: list[dict]
    seconds: float


def available_slots(spark, wait: float = 0.0, at_least: int = 1) -> int:
    """Concurrent task slots of the cluster; waits up to ``wait`` seconds for ``at_least`` slots to register."""
    sc = spark.sparkContext
    master = sc.master
    task_cpus = int(sc.getConf().get("spark.task.cpus", "1"))
    if master == "local":
        return 1
    m = re.match(r"local\[(\*|\d+)", master)
    if m:
        n = (os.cpu_count() or 1) if m.group(1) == "*" else int(m.group(1))
        return max(1, n // task_cpus)
    deadline = time.monotonic() + wait
    while True:
        try:
            jsc = sc._jsc.sc()
            rp = jsc.resourceProfileManager().defaultResourceProfile()
            slots = int(jsc.maxNumConcurrentTasks(rp))
        except Exception:  # noqa: BLE001 - Spark Connect or an API change: fall back to the scheduler's view
            slots = int(sc.defaultParallelism) // task_cpus
        if slots >= at_least or time.monotonic() >= deadline:
            return slots
        time.sleep(0.25)


def _make_task(fn: Callable, args: tuple, kwargs: dict, timeout: float, store_address: str | None, call_id: str):
    """The mapInArrow function shipped to every barrier task."""

    def task(batches):
        import pyarrow as pa
        from pyspark import BarrierTaskContext

        tctx = BarrierTaskContext.get()
        rank = tctx.partitionId()
        infos = tctx.getTaskInfos()
        ctx = BarrierContext(rank=rank, world_size=len(infos), peers=[i.address for i in infos], timeout=timeout,
                             _task_ctx=tctx, _batches=batches)
        start = time.perf_counter()
        try:
            _init_group(ctx, store_address, call_id, timeout)
            result = fn(ctx, *args, **kwargs)
            # drain whatever input the function did not read, so the Python worker can be reused
            for _ in ctx.batches():
                pass
        except BaseException as exc:  # noqa: BLE001 - re-raised with the rank attached
            message = f"{_ERROR_MARK}[{rank}/{len(infos)}]<<<{traceback.format_exc()}>>>"
            store = getattr(ctx, "_store", None)
            if store is not None:
                # first failure wins: peers that fail afterwards (their gloo pair closed) do not mask the cause
                try:
                    store.compare_set(f"{call_id}/first_error", "", message)
                except Exception:  # noqa: BLE001 - the store may be gone; the Spark error still carries the cause
                    pass
            raise RuntimeError(message) from exc
        finally:
            _close_group()
        stats = ctx.stats()
        stats["seconds"] = time.perf_counter() - start
        payload = pickle.dumps((result, stats), protocol=pickle.HIGHEST_PROTOCOL)
        yield pa.RecordBatch.from_arrays([pa.array([rank], pa.int32()), pa.array([payload], pa.binary())],
                                         names=["rank", "payload"])

    return task


def _raise_rank_error(exc: BaseException, first: str | None = None) -> None:
    text = first or str(exc)
    m = re.search(re.escape(_ERROR_MARK) + r"\[(\d+)/(\d+)\]<<<(.*?)>>>", text, re.S)
    if m:
        raise BarrierTaskError(int(m.group(1)), int(m.group(2)), m.group(3).strip()) from None
    raise exc


def run_barrier(fn: Callable[..., Any], num_tasks: int | None = None, *, spark=None, df=None,
                args: tuple = (), kwargs: dict | None = None, timeout: float | None = 600.0,
                slot_wait: float = 10.0, rendezvous: str = "driver") -> BarrierResults:
    """Run ``fn(ctx, *args, **kwargs)`` on ``num_tasks`` barrier tasks and return every rank's result.

    Parameters
    ----------
    fn : callable
        Receives a :class:`BarrierContext`; must be picklable by cloudpickle.
    num_tasks : int, optional
        World size. Defaults to the partitions of ``df``, else the cluster's task slots.
    spark : SparkSession, optional
        Defaults to the active session.
    df : DataFrame, optional
        Input; it is repartitioned to ``num_tasks`` if needed and each rank reads its partition with ``ctx.batches()``.
    timeout : float, optional
        Seconds before the stage is cancelled and :class:`TimeoutError` raised; ``None`` waits forever.
    rendezvous : {"driver", "spark"}
        Where the gloo group's TCPStore lives: on the driver (fast), or on rank 0 with its address shared through
        ``BarrierTaskContext.allGather`` (for drivers the executors cannot reach, such as Spark Connect clients).
    """
    from pyspark import InheritableThread
    from pyspark.sql import SparkSession

    spark = spark or (df.sparkSession if df is not None else SparkSession.getActiveSession())
    if spark is None:
        raise RuntimeError("run_barrier needs a SparkSession: pass spark= or create one with get_spark()")
    slots = available_slots(spark)
    if num_tasks is None:
        num_tasks = df.rdd.getNumPartitions() if df is not None else slots
    if not isinstance(num_tasks, int) or num_tasks < 1:
        raise ValueError(f"num_tasks must be a positive integer, got {num_tasks!r}")
    if slots < num_tasks:
        slots = available_slots(spark, wait=slot_wait, at_least=num_tasks)
    if slots < num_tasks:
        raise InsufficientSlotsError(
            f"barrier stage needs {num_tasks} concurrent task slots but the cluster ({spark.sparkContext.master}) "
            f"has {slots}; lower num_tasks or add executors/cores")

    if df is None:
        source = spark.range(0, num_tasks, 1, num_tasks)
    else:
        source = df if df.rdd.getNumPartitions() == num_tasks else df.repartition(num_tasks)
    if rendezvous not in ("driver", "spark"):
        raise ValueError(f"rendezvous must be 'driver' or 'spark', got {rendezvous!r}")
    sc = spark.sparkContext
    call_id = uuid.uuid4().hex[:12]
    group = f"sparkml_dist-barrier-{call_id}"
    store = None
    store_address = None
    task_timeout = float(timeout or 24 * 3600)
    if rendezvous == "driver":
        import torch.distributed as dist

        host = sc.getConf().get("spark.driver.host", None) or socket.gethostname()
        store = dist.TCPStore(host, 0, None, True, datetime.timedelta(seconds=task_timeout), wait_for_workers=False)
        store_address = f"{host}:{store.port}"
    task = _make_task(fn, tuple(args), dict(kwargs or {}), task_timeout, store_address, call_id)
    out_df = source.mapInArrow(task, "rank int, payload binary", barrier=True)
    box: dict[str, Any] = {}

    def collect():
        try:
            sc.setJobGroup(group, f"sparkml_dist barrier x{num_tasks}", interruptOnCancel=True)
            box["rows"] = out_df.collect()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = exc

    start = time.perf_counter()
    thread = InheritableThread(target=collect, daemon=True)
    thread.start()
    thread.join(timeout)
    alive = thread.is_alive()
    if alive:
        sc.cancelJobGroup(group)
        thread.join(30)
    if alive:
        del store
        raise TimeoutError(f"barrier stage with {num_tasks} tasks did not finish within {timeout} s; its jobs were "
                           "cancelled")
    if "error" in box:
        first = None
        if store is not None:
            try:
                if store.check([f"{call_id}/first_error"]):
                    first = store.get(f"{call_id}/first_error").decode()
            except Exception:  # noqa: BLE001
                first = None
        _raise_rank_error(box["error"], first)
    rows = sorted(box["rows"], key=lambda r: r["rank"])
    results = BarrierResults()
    results.stats = []
    for row in rows:
        value, stats = pickle.loads(row["payload"])
        results.append(value)
        results.stats.append(stats)
    results.seconds = time.perf_counter() - start
    del store  # the driver's TCPStore lives exactly as long as the call
    logger.debug("barrier x%d finished in %.2fs", num_tasks, results.seconds)
    return results
