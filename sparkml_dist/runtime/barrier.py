"""Barrier collectives: the one launcher every distributed algorithm of this package uses.

:func:`run_barrier` runs a Python function on ``N`` Spark barrier tasks through
``DataFrame.mapInArrow(..., barrier=True)`` (which also works under Spark Connect, unlike ``rdd.barrier()``).
Inside, the function receives a :class:`BarrierContext` with its ``rank``, ``world_size``, ``peers`` and ``attempt``
and can ``allgather`` / ``allreduce`` / ``broadcast`` Python objects and numpy arrays, and ``barrier()``.

Transport. Every collective runs over a ``torch.distributed`` gloo group that this module sets up for the call:
the driver hosts a ``TCPStore`` on ``spark.driver.host`` and the tasks rendezvous there, so the group is up in a few
hundred milliseconds. ``BarrierTaskContext.allGather`` was the first design for small messages, but measured here it
costs ~1 s per call (the task side polls its RPC once a second), which a 20-iteration algorithm cannot afford; it is
used only as the fallback rendezvous when the driver cannot host the store (``rendezvous="spark"``, e.g. Spark Connect,
where rank 0 hosts the store and publishes ``host:port`` through one ``allGather``).

Input. With ``df``, the stage's partitions follow one :class:`~sparkml_dist.runtime.layout.Layout`: a rank hosts
whole partitions of ``df`` (several, contiguous, when it has more partitions than free slots), never a round-robin
mixture; ``ctx.partitions`` says which, ``ctx.batches()`` yields their rows and ``ctx.partition_tables()`` one Arrow
table per hosted partition. Only ``num_tasks`` *above* the partition count splits rows (``repartition``, logged).

Retries. Spark re-runs a whole barrier stage when one of its tasks fails (``spark.task.maxFailures`` > 1, and in
local mode ``local[N,F]``) -- but only a barrier *shuffle-map* stage ("Could not recover from a failed barrier
ResultStage"), so the ranks' results go through a one-partition exchange before they are collected. Every stage
attempt rendezvouses under its own store prefix (``call/a<attempt>``), so a retried attempt never sees the keys, the
half-built gloo group or the ``first_error`` of the attempt before it. PySpark's task context does not expose the
stage attempt, so the driver tells each task: while the stage runs it maps every task id of the stage to its attempt
(the scheduler's status store, ``taskList(stage, attempt)``) and publishes ``call/tid/<task id> = attempt`` in the
store, and a task waits for its own key (milliseconds) -- an exact answer, where counting joins or guessing from task
ids would mis-assign a task of a half-started attempt. ``ctx.attempt`` tells the function which attempt it is (deep
learning resumes from its checkpoint there; -1 under ``rendezvous="spark"``, where every attempt's store is new).

Errors: one protocol. A rank that raises records a :class:`RankFailure` (rank, attempt, traceback and the pickled
exception) in the driver's store, first failure of the attempt wins (peers failing afterwards, their gloo pairs
closed, do not mask the cause). An exception that says ``retryable = False`` (input errors such as
``DataValidationError``: every attempt would fail the same way) also marks the call fatal: the driver cancels the
stage at once and re-raises *that exception itself*, its type intact, with the rank's traceback as a note. Anything
else fails the task, Spark retries the stage, and once the attempts are spent the driver raises
:class:`BarrierTaskError` carrying the last attempt's first failure (``.exception`` is the original).
``timeout`` turns a hang into :class:`TimeoutError` (the Spark jobs are cancelled, and in-task collectives time out
too). A call asking for more tasks than the cluster has *free* task slots (the JVM scheduler's count) fails at once
with :class:`InsufficientSlotsError` instead of Spark's minutes of slot-check retries.

Example::

    def fn(ctx):
        local = np.full(3, ctx.rank, dtype=float)
        return ctx.allreduce(local)          # every rank gets [0+1, 0+1, 0+1]

    results = run_barrier(fn, num_tasks=2, spark=spark)
"""

from __future__ import annotations

import base64
import datetime
import logging
import os
import pickle
import re
import socket
import struct
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sparkml_dist.runtime.layout import PARTITION_COLUMN, ROUTE_COLUMN, Layout

logger = logging.getLogger(__name__)

_FAILURE_MARK = "SPARKML_DIST_RANK_FAILURE"
_FAILURE_RE = re.compile(re.escape(_FAILURE_MARK) + r"<<<([A-Za-z0-9+/=]+)>>>")
_REDUCE_OPS = ("sum", "max", "min")
_NP_REDUCE = {"sum": np.add, "max": np.maximum, "min": np.minimum}
#: up to this many bytes over all ranks, :meth:`BarrierContext.allreduce` reduces on rank 0 over plain TCP
_STAR_REDUCE_BYTES = 512 * 1024
#: stage attempts the driver looks at for a failure record (Spark's spark.stage.maxConsecutiveAttempts is 4)
_MAX_ATTEMPTS_SCANNED = 16


# --- the error protocol ------------------------------------------------------------------------------------------
@dataclass
class RankFailure:
    """What a failing rank reports to the driver (pickled into the store and into the task's error message)."""

    rank: int
    world_size: int
    attempt: int
    traceback: str
    type_name: str
    retryable: bool = True
    exception: bytes | None = None
    """the pickled exception (None when it does not pickle)"""

    @classmethod
    def capture(cls, exc: BaseException, rank: int, world_size: int, attempt: int) -> RankFailure:
        try:
            blob = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
            pickle.loads(blob)  # some exceptions pickle but do not unpickle (required __init__ arguments)
        except Exception:  # noqa: BLE001 - the traceback text still carries the cause
            blob = None
        return cls(rank, world_size, attempt, traceback.format_exc(), type(exc).__name__,
                   bool(getattr(exc, "retryable", True)), blob)

    def encode(self) -> str:
        return base64.b64encode(pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)).decode("ascii")

    @staticmethod
    def decode(text: str) -> RankFailure:
        return pickle.loads(base64.b64decode(text))

    @staticmethod
    def find(text: str) -> RankFailure | None:
        """The last failure record embedded in an error text (Spark wraps the task's message in its own)."""
        found = _FAILURE_RE.findall(text or "")
        return RankFailure.decode(found[-1]) if found else None

    def original(self) -> BaseException | None:
        if self.exception is None:
            return None
        try:
            return pickle.loads(self.exception)
        except Exception:  # noqa: BLE001
            return None


class BarrierTaskError(RuntimeError):
    """A rank of a barrier call raised; ``rank``, ``attempt``, ``remote_traceback`` and ``exception`` (the
    original exception, when it could be pickled) say where and what."""

    def __init__(self, rank: int, world_size: int, remote_traceback: str, exception: BaseException | None = None,
                 attempt: int = 0):
        self.rank = rank
        self.world_size = world_size
        self.remote_traceback = remote_traceback
        self.exception = exception
        self.attempt = attempt
        super().__init__(f"barrier task rank {rank} of {world_size} failed (stage attempt {attempt}):\n"
                         f"{remote_traceback}")

    @classmethod
    def from_failure(cls, failure: RankFailure) -> BarrierTaskError:
        return cls(failure.rank, failure.world_size, failure.traceback.strip(), failure.original(), failure.attempt)


class InsufficientSlotsError(RuntimeError):
    """The cluster has fewer free concurrent task slots than a barrier call needs."""


# --- what a rank sees --------------------------------------------------------------------------------------------
@dataclass
class BarrierContext:
    """What a function launched by :func:`run_barrier` sees: its rank, the world, its input and the collectives."""

    rank: int
    world_size: int
    peers: list[str]
    timeout: float = 600.0
    attempt: int = 0
    """Spark's stage attempt number: 0 first, 1.. on a retried stage (-1: unknown, ``rendezvous="spark"``)"""
    partitions: tuple[int, ...] = ()
    """the input partitions this rank hosts (see :class:`~sparkml_dist.runtime.layout.Layout`)"""
    layout: Layout | None = None
    _task_ctx: Any = None
    _batches: Iterator | None = None
    _tagged: bool = False
    bytes_sent: int = 0
    messages: int = 0
    _group: Any = None
    _store: Any = field(default=None, repr=False)
    _star: Any = field(default=None, repr=False)
    _call_id: str = ""
    _prefix: str = ""

    # --- data -------------------------------------------------------------------------------------------------
    def _raw_batches(self) -> Iterator:
        if self._batches is None:
            return iter(())
        batches, self._batches = self._batches, None
        return batches

    def batches(self) -> Iterator:
        """The Arrow ``RecordBatch`` es of the partitions this rank hosts (once)."""
        if not self._tagged:
            return self._raw_batches()
        return (b.drop_columns([PARTITION_COLUMN]) for b in self._raw_batches())

    def partition_tables(self) -> dict[int, Any]:
        """One Arrow table per hosted partition (``{partition id: Table}``, empty tables included), rows in their
        partition's order. Raises :class:`~sparkml_dist.runtime.layout.LayoutError` if rows of a partition this
        rank does not host arrived."""
        import pyarrow as pa

        batches = list(self._raw_batches())
        if not self._tagged:
            table = pa.Table.from_batches(batches) if batches else None
            return {self.partitions[0]: table}
        if not batches:
            return {p: None for p in self.partitions}
        table = pa.Table.from_batches(batches)
        pids = table.column(PARTITION_COLUMN).to_numpy()
        if self.layout is not None:
            self.layout.check_received(self.rank, np.unique(pids))
        table = table.drop_columns([PARTITION_COLUMN])
        order = np.argsort(pids, kind="stable")  # rows of one partition keep their order
        pids = pids[order]
        table = table.take(pa.array(order))
        out = {}
        for p in self.partitions:
            lo, hi = np.searchsorted(pids, [p, p + 1])
            out[p] = table.slice(int(lo), int(hi - lo)) if hi > lo else table.schema.empty_table()
        return out

    # --- collectives ------------------------------------------------------------------------------------------
    def _need_group(self) -> None:
        if self._group is None:
            raise RuntimeError("this barrier stage was launched with collectives=False (no gloo group): "
                               "pass collectives=True to run_barrier to use barrier/allgather/broadcast/allreduce")

    def barrier(self) -> None:
        self._need_group()
        import torch.distributed as dist

        dist.barrier(group=self._group)

    def allgather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (any picklable object), ordered by rank."""
        self._need_group()
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self._group)
        self.messages += 1
        self.bytes_sent += len(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)) * (self.world_size - 1)
        return out

    def broadcast(self, obj: Any = None, root: int = 0) -> Any:
        """``obj`` of rank ``root`` on every rank."""
        self._need_group()
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
        self._need_group()
        import torch
        import torch.distributed as dist

        if op not in _REDUCE_OPS:
            raise ValueError(f"allreduce op must be one of {_REDUCE_OPS}, got {op!r}")
        local = np.array(array, copy=True, order="C")
        self.messages += 1
        if self.world_size == 1:
            return local
        if local.nbytes * self.world_size <= _STAR_REDUCE_BYTES and local.dtype.kind in "fiu":
            # small arrays: rank 0 reduces over plain TCP (see _Star): ~0.15 ms per call here where gloo's
            # allreduce and allgather both cost ~1.6 ms between compute steps
            if self._star is None:
                self._star = _Star(self)
            self.bytes_sent += local.nbytes * (self.world_size - 1 if self.rank == 0 else 1)
            return self._star.reduce(local, op)
        tensor = torch.from_numpy(local)
        dist.all_reduce(tensor, op=getattr(dist.ReduceOp, op.upper()), group=self._group)
        # a ring allreduce sends about 2 (n-1)/n of the buffer from every rank
        self.bytes_sent += int(2 * tensor.numel() * tensor.element_size() * (self.world_size - 1) / self.world_size)
        return tensor.numpy()

    def torch_group(self):
        """The gloo process group of this call (the default group of ``torch.distributed`` in the task)."""
        self._need_group()
        return self._group

    def stats(self) -> dict:
        return {"rank": self.rank, "bytes_sent": self.bytes_sent, "messages": self.messages,
                "attempt": self.attempt}


def _attempt_prefix(call_id: str, attempt: int) -> str:
    return f"{call_id}/a{attempt}"


def record_failure(store, prefix: str, call_id: str, failure: RankFailure) -> str:
    """Record ``failure`` in the call's store: the first failure of the attempt wins, and a non-retryable one also
    tells the driver to stop at once. Used by the task wrapper and by processes a task starts itself (local ranks),
    so a failure there is reported as itself, not as its peers' broken connections. Returns the encoded record."""
    encoded = failure.encode()
    if store is not None:
        try:
            store.compare_set(f"{prefix}/first_error", "", encoded)
            if not failure.retryable:
                store.compare_set(f"{call_id}/fatal", "", encoded)
        except Exception:  # noqa: BLE001 - the store may be gone; the Spark error still carries the record
            pass
    return encoded


def _init_group(ctx: BarrierContext, store_address: str | None, call_id: str, timeout: float) -> str:
    """Join this attempt's gloo group: through the driver's TCPStore, or one that rank 0 hosts (Spark rendezvous).
    Sets ``ctx.attempt`` and returns the attempt's store prefix."""
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
        key = f"{call_id}/tid/{ctx._task_ctx.taskAttemptId()}"
        store.wait([key], delta)  # the driver publishes which stage attempt this task belongs to
        ctx.attempt = int(store.get(key).decode())
    ctx._store = store  # keep the client alive as long as the group (and let a failure be recorded)
    prefix = _attempt_prefix(call_id, ctx.attempt)
    ctx._call_id, ctx._prefix = call_id, prefix
    host = store_address.rsplit(":", 1)[0]
    if host.startswith("127.") or host == "localhost":
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", store=dist.PrefixStore(prefix, store), rank=ctx.rank,
                            world_size=ctx.world_size, timeout=delta)
    ctx._group = dist.group.WORLD
    return prefix


class _Star:
    """Small allreduces over plain TCP: every rank sends its array to rank 0, which reduces in rank order and sends
    the result back, so every rank gets the same bits.

    Measured here (2 ranks, 4,610 float32, a DPPO-sized torch step between calls): gloo's ``all_reduce`` and
    ``all_gather`` each cost ~1.6 ms per call and slowed the compute between them by ~1.35x; this costs ~0.15 ms.
    Rank 0 listens on its executor's host and publishes ``host:port`` in the attempt's store; the others connect on
    their first small allreduce. A message is a 16-byte header (payload bytes, dtype, op) and the raw array; rank 0
    checks that every rank sent the same size, dtype and op.
    """

    _HEADER = struct.Struct("!Q4s4s")

    def __init__(self, ctx: BarrierContext):
        self.rank, self.world = ctx.rank, ctx.world_size
        key = f"{ctx._prefix}/star"
        delta = datetime.timedelta(seconds=ctx.timeout)
        if self.rank == 0:
            host = ctx.peers[0].rsplit(":", 1)[0] if ctx.peers and ctx.peers[0] else "127.0.0.1"
            server = socket.create_server((host, 0))
            server.settimeout(ctx.timeout)
            ctx._store.set(key, f"{host}:{server.getsockname()[1]}")
            conns: dict[int, socket.socket] = {}
            try:
                while len(conns) < self.world - 1:
                    conn, _ = server.accept()
                    conn.settimeout(ctx.timeout)
                    conns[int(struct.unpack("!I", recv_exact(conn, 4))[0])] = conn
            finally:
                server.close()
            self.socks = [conns[r] for r in range(1, self.world)]
        else:
            ctx._store.wait([key], delta)
            host, port = ctx._store.get(key).decode().rsplit(":", 1)
            conn = socket.create_connection((host, int(port)), timeout=ctx.timeout)
            conn.sendall(struct.pack("!I", self.rank))
            self.socks = [conn]
        for sock in self.socks:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def reduce(self, local: np.ndarray, op: str) -> np.ndarray:
        header = self._HEADER.pack(local.nbytes, local.dtype.str.encode().ljust(4), op.encode().ljust(4))
        if self.rank != 0:
            self.socks[0].sendall(header + local.tobytes())
            out = np.frombuffer(recv_exact(self.socks[0], local.nbytes), dtype=local.dtype)
            return out.reshape(local.shape).copy()
        out = local
        for rank, sock in enumerate(self.socks, start=1):
            theirs = recv_exact(sock, self._HEADER.size)
            if theirs != header:
                nbytes, dtype, their_op = self._HEADER.unpack(theirs)
                raise ValueError(f"allreduce: rank {rank} sent {nbytes} bytes of {dtype.strip().decode()} "
                                 f"({their_op.strip().decode()}), rank 0 {local.nbytes} bytes of {local.dtype.str} "
                                 f"({op}): every rank must pass the same shape, dtype and op")
            other = np.frombuffer(recv_exact(sock, local.nbytes), dtype=local.dtype).reshape(local.shape)
            out = _NP_REDUCE[op](out, other)
        payload = out.tobytes()
        for sock in self.socks:
            sock.sendall(payload)
        return out

    def close(self) -> None:
        for sock in self.socks:
            try:
                sock.close()
            except OSError:
                pass


def recv_exact(sock: socket.socket, n: int) -> bytes:
    """Exactly ``n`` bytes from ``sock`` (the engine's TCP allreduce and the RL side channel read through it)."""
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise ConnectionError(f"the peer closed its connection after {got} of {n} bytes")
        got += k
    return bytes(buf)


def _close_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


class BarrierResults(list):
    """Per-rank return values (ordered by rank), with ``stats`` (bytes, messages, seconds, attempt per rank) and
    the ``layout`` the stage ran with."""

    stats: list[dict]
    seconds: float
    layout: Layout | None


def _jvm_slots(sc) -> tuple[int, int]:
    """(total, running) task slots as the JVM scheduler sees them (py4j; raises under Spark Connect)."""
    jsc = sc._jsc.sc()
    rp = jsc.resourceProfileManager().defaultResourceProfile()
    total = int(jsc.maxNumConcurrentTasks(rp))
    infos = jsc.statusTracker().getExecutorInfos()
    running = sum(int(info.numRunningTasks()) for info in infos)
    return total, running


def available_slots(spark, wait: float = 0.0, at_least: int = 1) -> int:
    """*Free* concurrent task slots: the JVM scheduler's ``maxNumConcurrentTasks`` (cores / ``spark.task.cpus``
    over the registered executors, ``local[*]`` resolved by the JVM) minus the tasks running now. Waits up to
    ``wait`` seconds for ``at_least`` free slots (executors registering, other jobs finishing)."""
    sc = spark.sparkContext
    task_cpus = int(sc.getConf().get("spark.task.cpus", "1"))
    deadline = time.monotonic() + wait
    while True:
        try:
            total, running = _jvm_slots(sc)
            free = max(0, total - running)  # a running task holds spark.task.cpus cores, i.e. one slot
        except Exception:  # noqa: BLE001 - Spark Connect or an API change: fall back to the scheduler's view
            free = int(sc.defaultParallelism) // task_cpus
        if free >= at_least or time.monotonic() >= deadline:
            return free
        time.sleep(0.25)


def _make_task(fn: Callable, args: tuple, kwargs: dict, timeout: float, store_address: str | None, call_id: str,
               layout: Layout | None, tagged: bool, collectives: bool = True):
    """The mapInArrow function shipped to every barrier task."""

    def task(batches):
        import pyarrow as pa
        from pyspark import BarrierTaskContext

        tctx = BarrierTaskContext.get()
        rank = tctx.partitionId()
        infos = tctx.getTaskInfos()
        hosted = layout.groups[rank] if layout is not None else (rank,)
        ctx = BarrierContext(rank=rank, world_size=len(infos), peers=[i.address for i in infos], timeout=timeout,
                             attempt=-1, partitions=tuple(hosted), layout=layout, _task_ctx=tctx,
                             _batches=batches, _tagged=tagged)
        prefix = _attempt_prefix(call_id, -1)
        start = time.perf_counter()
        try:
            if collectives:
                prefix = _init_group(ctx, store_address, call_id, timeout)
            result = fn(ctx, *args, **kwargs)
            # drain whatever input the function did not read, so the Python worker can be reused
            for _ in ctx._raw_batches():
                pass
        except BaseException as exc:  # noqa: BLE001 - reported through the one error protocol, then re-raised
            failure = RankFailure.capture(exc, rank, len(infos), ctx.attempt)
            encoded = record_failure(ctx._store, prefix, call_id, failure)
            raise RuntimeError(f"rank {rank}/{len(infos)} (stage attempt {ctx.attempt}) failed: "
                               f"{type(exc).__name__}: {exc}\n{_FAILURE_MARK}<<<{encoded}>>>") from exc
        finally:
            if ctx._star is not None:
                ctx._star.close()
            if collectives:
                _close_group()
        stats = ctx.stats()
        stats["seconds"] = time.perf_counter() - start
        payload = pickle.dumps((result, stats), protocol=pickle.HIGHEST_PROTOCOL)
        yield pa.RecordBatch.from_arrays([pa.array([rank], pa.int32()), pa.array([payload], pa.binary())],
                                         names=["rank", "payload"])

    return task


class _AttemptPublisher:
    """Driver side of the per-attempt namespaces: publishes ``call/tid/<task id> = stage attempt`` for every task
    of the call's jobs, from the scheduler's status store (py4j)."""

    def __init__(self, sc, group: str, store, call_id: str):
        self.sc, self.group, self.store, self.call_id = sc, group, store, call_id
        self.status = sc._jsc.sc().statusStore()
        self.done: set[tuple[int, int]] = set()

    def poll(self) -> bool:
        """Publish what is new; True if something was (a stage attempt starting: poll again soon)."""
        new = False
        tracker = self.sc.statusTracker()
        for job in tracker.getJobIdsForGroup(self.group):
            info = tracker.getJobInfo(job)
            for sid in (info.stageIds if info else ()):
                stage = tracker.getStageInfo(sid)
                if stage is None:
                    continue
                for attempt in range(stage.currentAttemptId + 1):
                    if (sid, attempt) in self.done:
                        continue
                    tasks = self.status.taskList(sid, attempt, 1 << 20)
                    n = int(tasks.size())
                    for i in range(n):
                        self.store.set(f"{self.call_id}/tid/{int(tasks.apply(i).taskId())}", str(attempt))
                    new = new or n > 0
                    if n >= stage.numTasks or attempt < stage.currentAttemptId:
                        self.done.add((sid, attempt))
        return new


def _store_get(store, key: str) -> str | None:
    try:
        if store.check([key]):
            value = store.get(key).decode()
            return value or None
    except Exception:  # noqa: BLE001 - a store that is gone has nothing to say
        return None
    return None


def _last_failure(store, call_id: str) -> RankFailure | None:
    """The first failure of the latest stage attempt that recorded one."""
    if store is None:
        return None
    for attempt in range(_MAX_ATTEMPTS_SCANNED - 1, -1, -1):
        text = _store_get(store, f"{_attempt_prefix(call_id, attempt)}/first_error")
        if text:
            return RankFailure.decode(text)
    return None


def _raise_failure(failure: RankFailure) -> None:
    """The protocol's driver side: a non-retryable exception is raised as itself, anything else as
    :class:`BarrierTaskError`."""
    original = failure.original()
    if original is not None and not failure.retryable:
        original.add_note(f"raised on barrier rank {failure.rank} of {failure.world_size} (stage attempt "
                          f"{failure.attempt}):\n{failure.traceback.strip()}")
        raise original.with_traceback(None) from None
    raise BarrierTaskError.from_failure(failure) from None


def _stage_input(df, num_tasks: int, free: int) -> tuple[Any, Layout | None, bool]:
    """The DataFrame the stage maps over, the layout it follows and whether rows carry their partition id."""
    from pyspark.sql import functions as F

    parts = df.rdd.getNumPartitions()
    if parts == num_tasks:
        return df, Layout.plan(parts, max(free, num_tasks), num_tasks), False
    if parts > num_tasks:
        layout = Layout.plan(parts, max(free, num_tasks), num_tasks)
        keys = layout.routing_keys()
        tagged = df.withColumn(PARTITION_COLUMN, F.spark_partition_id())
        route = F.element_at(F.array(*[F.lit(k) for k in keys]), F.col(PARTITION_COLUMN) + 1)
        moved = tagged.withColumn(ROUTE_COLUMN, route.cast("int")).repartition(num_tasks, ROUTE_COLUMN)
        logger.info("barrier input: %s", layout.describe())
        return moved.drop(ROUTE_COLUMN), layout, True
    logger.warning("barrier input: %d partitions for %d ranks; rows are dealt round-robin (repartition) so that "
                   "every rank gets some -- pass num_tasks <= partitions to keep partitions whole", parts, num_tasks)
    return df.repartition(num_tasks), None, False


def run_barrier(fn: Callable[..., Any], num_tasks: int | None = None, *, spark=None, df=None,
                args: tuple = (), kwargs: dict | None = None, timeout: float | None = 600.0,
                slot_wait: float = 10.0, rendezvous: str = "driver", collectives: bool = True) -> BarrierResults:
    """Run ``fn(ctx, *args, **kwargs)`` on ``num_tasks`` barrier tasks and return every rank's result.

    Parameters
    ----------
    fn : callable
        Receives a :class:`BarrierContext`; must be picklable by cloudpickle.
    num_tasks : int, optional
        World size. Defaults to ``min(partitions of df, free slots)``, else the free task slots.
    spark : SparkSession, optional
        Defaults to the active session.
    df : DataFrame, optional
        Input. With more partitions than ``num_tasks`` each rank hosts several whole partitions (see
        :class:`~sparkml_dist.runtime.layout.Layout`); ``ctx.batches()`` / ``ctx.partition_tables()`` read them.
    timeout : float, optional
        Seconds before the stage (all its attempts) is cancelled and :class:`TimeoutError` raised; ``None`` waits
        forever.
    rendezvous : {"driver", "spark"}
        Where the gloo group's TCPStore lives: on the driver (fast), or on rank 0 with its address shared through
        ``BarrierTaskContext.allGather`` (for drivers the executors cannot reach, such as Spark Connect clients).
    collectives : bool
        ``False``: no gloo group and no driver store, so the tasks never import torch (the RL actors that only act:
        they talk to the driver over their own channel). The collectives then raise; ``ctx.attempt`` is -1, and a
        rank's failure reaches the driver through Spark's error (the same encoded record, the same exceptions).

    Raises
    ------
    BarrierTaskError
        A rank failed with a retryable error on the last stage attempt.
    Exception
        A rank's non-retryable exception (``retryable = False``, e.g. ``DataValidationError``), as itself.
    InsufficientSlotsError, TimeoutError, ValueError
    """
    from pyspark import InheritableThread
    from pyspark.sql import SparkSession

    spark = spark or (df.sparkSession if df is not None else SparkSession.getActiveSession())
    if spark is None:
        raise RuntimeError("run_barrier needs a SparkSession: pass spark= or create one with get_spark()")
    if rendezvous not in ("driver", "spark"):
        raise ValueError(f"rendezvous must be 'driver' or 'spark', got {rendezvous!r}")
    free = available_slots(spark)
    if num_tasks is None and df is not None:
        parts = df.rdd.getNumPartitions()
        num_tasks = Layout.plan(parts, free).world_size if parts and free else max(1, free)
    elif num_tasks is None:
        num_tasks = free
    if not isinstance(num_tasks, int) or num_tasks < 1:
        raise ValueError(f"num_tasks must be a positive integer, got {num_tasks!r}")
    if free < num_tasks:
        free = available_slots(spark, wait=slot_wait, at_least=num_tasks)
    if free < num_tasks:
        raise InsufficientSlotsError(
            f"barrier stage needs {num_tasks} concurrent task slots but the cluster ({spark.sparkContext.master}) "
            f"has {free} free; lower num_tasks or add executors/cores")

    if df is None:
        source, layout, tagged = spark.range(0, num_tasks, 1, num_tasks), None, False
    else:
        source, layout, tagged = _stage_input(df, num_tasks, free)
    sc = spark.sparkContext
    call_id = uuid.uuid4().hex[:12]
    group = f"sparkml_dist-barrier-{call_id}"
    store = None
    store_address = None
    task_timeout = float(timeout or 24 * 3600)
    if rendezvous == "driver" and collectives:
        import torch.distributed as dist

        host = sc.getConf().get("spark.driver.host", None) or socket.gethostname()
        store = dist.TCPStore(host, 0, None, True, datetime.timedelta(seconds=task_timeout), wait_for_workers=False)
        store_address = f"{host}:{store.port}"
    task = _make_task(fn, tuple(args), dict(kwargs or {}), task_timeout, store_address, call_id, layout, tagged,
                      collectives)
    # the exchange makes the barrier stage a shuffle-map stage, which Spark can re-attempt (a result stage it cannot)
    out_df = source.mapInArrow(task, "rank int, payload binary", barrier=True).repartition(1)
    publisher = _AttemptPublisher(sc, group, store, call_id) if store is not None else None
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
    deadline = None if timeout is None else start + timeout
    fatal = None
    quiet_since = last_poll = time.perf_counter()
    while thread.is_alive():
        thread.join(0.03 if store is not None else 0.5)
        now = time.perf_counter()
        # the task list is polled fast while tasks start (they wait for their attempt number), slowly afterwards;
        # the fatal flag (one store lookup) every round, so a non-retryable error stops the stage before a re-attempt
        if publisher is not None and thread.is_alive() and (now - quiet_since < 3.0 or now - last_poll > 0.5):
            last_poll = now
            if publisher.poll():
                quiet_since = now
        if store is not None and thread.is_alive():
            fatal = _store_get(store, f"{call_id}/fatal")
            if fatal:  # a non-retryable error: every further attempt would fail the same way
                sc.cancelJobGroup(group)
                thread.join(30)
                break
        if deadline is not None and time.perf_counter() > deadline:
            break
    if thread.is_alive() and not fatal:
        sc.cancelJobGroup(group)
        thread.join(30)
        del store
        raise TimeoutError(f"barrier stage with {num_tasks} tasks did not finish within {timeout} s; its jobs were "
                           "cancelled")
    if fatal:
        _raise_failure(RankFailure.decode(fatal))
    if "error" in box:
        failure = _last_failure(store, call_id) or RankFailure.find(str(box["error"]))
        if failure is None:
            raise box["error"]
        _raise_failure(failure)
    rows = sorted(box["rows"], key=lambda r: r["rank"])
    results = BarrierResults()
    results.stats = []
    results.layout = layout
    for row in rows:
        value, stats = pickle.loads(row["payload"])
        results.append(value)
        results.stats.append(stats)
    results.seconds = time.perf_counter() - start
    del store  # the driver's TCPStore lives exactly as long as the call
    logger.debug("barrier x%d finished in %.2fs", num_tasks, results.seconds)
    return results
