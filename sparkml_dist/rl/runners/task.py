"""The body of every actor task of an asynchronous Spark run. It imports neither torch nor the learners: what it runs
is the pickled ``factory`` (:meth:`~sparkml_dist.rl.algorithm.Algorithm.actor_factory`), so the actors of IMPALA,
SEED and Ape-X stay numpy + gymnasium processes (~240 MB less RSS each, no torch import at start)."""

from __future__ import annotations

import os
import sys
import threading
import time

from sparkml_dist.rl.runners.channel import STOP, ChannelClient
from sparkml_dist.rl.runners.memory import rss_mb


def actor_task(ctx, factory, address: str, generation: int, timeout: float, nice: int = 0) -> dict:
    """Build actor ``ctx.rank`` and run it against the driver's channel until the learner answers ``STOP``.

    With ``nice > 0`` the loop runs in a thread of its own at that much lower CPU priority (Linux niceness is per
    thread, so the reused Python worker keeps its own and the next task starts at normal priority).
    """
    if nice <= 0:
        return _act(ctx, factory, address, generation, timeout)
    box: dict = {}

    def run():
        try:
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
            box["result"] = _act(ctx, factory, address, generation, timeout)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the task's thread
            box["error"] = exc

    thread = threading.Thread(target=run, name=f"rl-actor-{ctx.rank}", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


def _act(ctx, factory, address: str, generation: int, timeout: float) -> dict:
    started = time.perf_counter()
    if "torch" in sys.modules:  # an actor that trains (A3C, GORILA): one thread per task, as on the driver
        sys.modules["torch"].set_num_threads(1)
    actor = factory(ctx.rank, generation)
    client = ChannelClient(address, {"actor_id": ctx.rank, "pid": os.getpid(), "generation": generation},
                           timeout=timeout)
    act_s = channel_s = 0.0
    reply = None
    try:
        while True:
            t0 = time.perf_counter()
            payload = actor.act(reply)
            t1 = time.perf_counter()
            reply = client.request(payload)
            act_s += t1 - t0
            channel_s += time.perf_counter() - t1
            if isinstance(reply, str) and reply == STOP:
                break
    finally:
        client.close()
        actor.close()
    return {"actor_id": ctx.rank, "act_seconds": act_s, "channel_seconds": channel_s,
            "task_seconds": time.perf_counter() - started, "torch_imported": "torch" in sys.modules,
            "rss_mb": rss_mb()}
