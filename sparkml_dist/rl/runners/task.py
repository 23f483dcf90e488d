"""The body of every actor task of an asynchronous Spark run. It imports neither torch nor the learners: what it runs
is the pickled ``factory`` (:meth:`~sparkml_dist.rl.algorithm.Algorithm.actor_factory`), so the actors of IMPALA,
SEED and Ape-X stay numpy + gymnasium processes (~240 MB less RSS each, no torch import at start)."""

from __future__ import annotations

import os
import sys
import time

from sparkml_dist.rl.runners.channel import STOP, ChannelClient
from sparkml_dist.rl.runners.memory import rss_mb


def actor_task(ctx, factory, address: str, generation: int, timeout: float) -> dict:
    """Build actor ``ctx.rank`` and run it against the driver's channel until the learner answers ``STOP``."""
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
