"""The memory ceiling (``memoryLimitMB``): the config checked before any actor starts, the run's RSS watched."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from sparkml_dist.rl import ALGORITHMS, IMPALA
from sparkml_dist.rl.apex import replay_fields
from sparkml_dist.rl.core.replay import PrioritizedReplay, replay_nbytes
from sparkml_dist.rl.runners.memory import ACTOR_PROCESS_MB, MemoryLimitError, rss_mb


def test_replay_estimate_is_what_the_replay_allocates():
    algo = ALGORITHMS["apex"](env="CartPole-v1", bufferSize=3_000)
    replay = PrioritizedReplay(3_000, replay_fields(algo))
    allocated = sum(a.nbytes for a in replay.data.values()) + replay.tree.nodes.nbytes
    assert replay_nbytes(3_000, replay_fields(algo)) == allocated == algo.replay_bytes()
    gorila = ALGORITHMS["gorila"](env="CartPole-v1", bufferSize=3_000, numActors=3)
    assert gorila.replay_bytes() == 3 * allocated  # one replay per actor-learner


@pytest.mark.parametrize("algo, params, part", [
    ("apex", dict(bufferSize=20_000_000), r"replay \d+\.\d MB"),  # ~1.2 GB of replay (obs, next_obs, tree)
    ("impala", dict(queueSize=100_000, unrollLength=256), r"queueSize=100000 payloads \d+\.\d MB"),
    ("impala", dict(numActors=8, runner="spark"), r"8 actor processes 1600\.0 MB"),
])
def test_config_that_cannot_fit_fails_before_start(algo, params, part, spark):
    calls = []
    limit = int(rss_mb()) + 900
    with pytest.raises(ValueError, match=rf"memoryLimitMB={limit} cannot hold this config: .*{part}"):
        ALGORITHMS[algo](memoryLimitMB=limit, **params).train(spark, callback=calls.append)
    assert not calls  # nothing ran
    assert 8 * ACTOR_PROCESS_MB > 900


def _leaky(limit_mb: float):
    """A callback that leaks 32 MB per update (touched, so resident) until it holds ``limit_mb``.

    It leaks at most 32 MB per 20 ms (a fast leak: 1.6 GB/s): between two samples of the watch (every 0.2 s) it grows
    by at most ~320 MB, so a watch that works stops the run long before ``limit_mb``, however fast the updates come.
    """
    held: list[np.ndarray] = []

    def callback(event):
        if len(held) * 32 < limit_mb:
            held.append(np.ones(32 * 1024 * 1024 // 8))
            time.sleep(0.02)
        return False

    return callback, held


def test_runtime_watch_stops_a_leaking_local_run():
    limit = int(rss_mb()) + 200
    callback, held = _leaky(1600)
    algo = IMPALA(env="CartPole-v1", numActors=2, envsPerActor=8, totalSteps=500_000, unrollLength=16,
                  batchUnrolls=1, memoryLimitMB=limit)
    with pytest.raises(MemoryLimitError, match=rf"memoryLimitMB={limit} exceeded: the driver and its actors hold "
                                               r"\d+ MB \(driver \d+ MB\)"):
        algo.train(callback=callback)
    assert 3 <= len(held) < 1600 // 32  # it ran until the leak passed the limit (+200 MB), and stopped soon after
    held.clear()
    ok = IMPALA(env="CartPole-v1", numActors=2, envsPerActor=8, totalSteps=2_048, unrollLength=16,
                memoryLimitMB=limit).train()
    assert ok.stats["memory_peak_mb"] > 0 and ok.stats["memory_peak_mb"] <= limit


def test_runtime_watch_counts_the_actor_processes(spark):
    """Spark runner: the sum includes each actor's Python worker (read from /proc/<pid>/status)."""
    base = rss_mb()
    limit = int(base + 2 * ACTOR_PROCESS_MB + 300)
    callback, held = _leaky(900)
    algo = IMPALA(env="CartPole-v1", numActors=2, envsPerActor=8, totalSteps=500_000, unrollLength=16,
                  batchUnrolls=1, memoryLimitMB=limit, runner="spark")
    with pytest.raises(MemoryLimitError, match=r"exceeded: .*driver \d+ MB; actor 0 \(pid \d+\) \d+ MB, "
                                               r"actor 1 \(pid \d+\) \d+ MB\)") as err:
        algo.train(spark, callback=callback)
    held.clear()
    actor_mb = [float(m) for m in re.findall(r"actor \d \(pid \d+\) (\d+) MB", str(err.value))]
    assert all(mb > 50 for mb in actor_mb), err.value  # real Python workers with torch loaded


@pytest.mark.parametrize("name", ["impala", "seed", "apex"])
def test_acting_actors_run_without_torch(name):
    """IMPALA, SEED and Ape-X actors are numpy + gymnasium: a fresh interpreter that unpickles the factory a Spark
    task gets (cloudpickle, as run_barrier ships it), builds actor 1 and runs it on the learner's weights never
    imports torch, and its RSS stays a fraction of a torch process's (the ~240 MB each actor process saves)."""
    import subprocess
    import sys

    import cloudpickle

    from sparkml_dist.rl.core.nets import get_flat

    algo = ALGORITHMS[name](env="CartPole-v1", numActors=2, envsPerActor=8)
    reply = (3, get_flat(algo.make_policy())) if name != "seed" else np.zeros(8, dtype=np.int64)
    blob = cloudpickle.dumps((algo.actor_factory(), reply))
    code = f"""
import pickle, sys
from sparkml_dist.rl.runners.task import actor_task  # the task body's module
factory, reply = pickle.loads({blob!r})
actor = factory(1, 0)
first = actor.act(None)
steps = sum(actor.act(reply)["steps"] for _ in range(20))
rss = int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) // 1024
print("torch" in sys.modules, steps, rss)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    torch_loaded, steps, rss = out.stdout.split()
    assert torch_loaded == "False"
    assert int(steps) >= 20 * 8  # it acted: 20 calls on 8 envs (a whole unroll each for IMPALA / Ape-X)
    assert int(rss) < 150, rss  # a torch process is ~290 MB here


def test_actor_loop_runs_at_the_added_niceness_and_the_worker_thread_keeps_its_own():
    """``actorNice``: the actor loop runs in a thread of its own at the added niceness (Linux: per thread), so the
    (reused) Python worker's thread, here the test's, keeps its priority; the loop still ends on ``STOP``."""
    import os
    import threading
    import types

    from sparkml_dist.rl.runners.channel import ChannelServer
    from sparkml_dist.rl.runners.task import actor_task

    def niceness():
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    server = ChannelServer("127.0.0.1", 8, auto_reply=True)
    server.publish((0, None))
    seen = []

    class Probe:
        def __init__(self, rank, generation):
            self.rank = rank

        def act(self, reply):
            seen.append(niceness())
            if len(seen) == 3:
                server.stop_actors()
            return {"steps": 1}

        def close(self):
            pass

    before = niceness()
    try:
        out = actor_task(types.SimpleNamespace(rank=0), Probe, server.address, 0, 30.0, nice=5)
    finally:
        server.close()
    assert out["actor_id"] == 0 and len(seen) >= 3
    assert seen == [min(19, before + 5)] * len(seen)
    assert niceness() == before
