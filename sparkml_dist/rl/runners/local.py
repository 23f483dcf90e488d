"""One-process runner: actors and learner interleaved in the caller's process (debugging, tests, small boxes).

It drives exactly the objects the Spark runner ships to executors, in the same reply protocol
(:mod:`sparkml_dist.rl.algorithm`), so a local run is the reference a distributed run is checked against; in
``"round"`` mode the two give bit-identical results.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import torch

from sparkml_dist.rl.runners.memory import MemoryWatch
from sparkml_dist.rl.runners.progress import Checkpointer, Progress


@contextlib.contextmanager
def single_thread():
    """Actors and learners use one torch thread and one BLAS thread (small nets: threads only add contention);
    restored after.

    numpy's OpenBLAS starts a thread per core: on 2 busy cores a 128-row forward of the Q-network took 0.98 ms with
    it and 0.23 ms without (Spark's Python workers get ``OMP_NUM_THREADS=spark.task.cpus``; the driver does not).
    """
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(before)


def start(algo, learner=None) -> tuple[Progress, Checkpointer, int]:
    """Progress and checkpointer of a run, the learner restored from ``checkpointDir`` when a checkpoint is there."""
    c = algo.config
    progress = Progress(algo.name, c.totalSteps, c.logEvery)
    ckpt = Checkpointer(c.checkpointDir, c.checkpointEvery)
    state = ckpt.load()
    generation = 0
    if state is not None:
        if state.get("algorithm") != algo.name:
            raise ValueError(f"checkpointDir={c.checkpointDir!r} holds a {state.get('algorithm')!r} run, "
                             f"not {algo.name!r}")
        progress.load_state_dict(state["progress"])
        generation = int(state.get("generation", 0)) + 1
        if learner is not None:
            learner.load_state_dict(state["learner"])
    return progress, ckpt, generation


def checkpoint_state(algo, learner, progress: Progress, generation: int) -> dict:
    return {"algorithm": algo.name, "learner": learner.state_dict(), "progress": progress.state_dict(),
            "generation": generation}


def after_update(algo, learner, progress, ckpt, generation, metrics, callback, actors=None) -> None:
    progress.learned(metrics)
    ckpt.maybe_save(progress.env_steps, lambda: checkpoint_state(algo, learner, progress, generation))
    if callback is not None and metrics:
        if callback(event(progress, learner.policy(), actors)) is True:
            progress.stopped = True


def event(progress: Progress, policy, actors=None) -> dict:
    """What a ``train(callback=...)`` callback sees after an update; returning ``True`` stops the run early."""
    return {"env_steps": progress.env_steps, "updates": progress.updates, "return": progress.mean_return(),
            "seconds": progress.seconds, "policy": policy, "actors": dict(actors or {})}


def run_local(algo, callback: Callable[[dict], None] | None = None):
    """Train ``algo`` in this process; returns ``(policy, progress, extra_stats)``."""
    with single_thread():
        if algo.mode == "sync":
            watch = MemoryWatch(algo.config.memoryLimitMB)

            def watched(ev):
                watch.check()
                return callback(ev) if callback is not None else None

            policy, progress, extra = algo.run_replicas(list(range(algo.config.numActors)), None, watched)
            return policy, progress, {**extra, **watch.stats()}
        return _run_async(algo, callback)


def _run_async(algo, callback):
    c = algo.config
    learner = algo.make_learner()
    progress, ckpt, generation = start(algo, learner)
    actors = [algo.make_actor(i, generation) for i in range(c.numActors)]
    watch = MemoryWatch(c.memoryLimitMB)
    try:
        replies = [learner.reply() if algo.mode != "inference" else None for _ in actors]
        first = [a.act(None) for a in actors]  # None: the actor only asks for weights
        while not progress.done:
            watch.check()
            if algo.mode == "weights":
                # round-robin: each actor acts with the newest weights, the learner consumes as data arrives
                for i, actor in enumerate(actors):
                    payload = first[i] if first[i] is not None else actor.act(replies[i])
                    first[i] = None
                    progress.observe(payload)
                    metrics = learner.consume([(i, payload)])
                    replies[i] = learner.reply()
                    after_update(algo, learner, progress, ckpt, generation, metrics, callback)
                    if progress.done:
                        break
            elif algo.mode == "round":
                payloads = [first[i] if first[i] is not None else a.act(replies[i]) for i, a in enumerate(actors)]
                first = [None] * len(actors)
                reply = learner.reply()  # taken before training: the next round acts one version behind
                replies = [reply] * len(actors)
                for p in payloads:
                    progress.observe(p)
                metrics = learner.consume(list(enumerate(payloads)))
                after_update(algo, learner, progress, ckpt, generation, metrics, callback)
            elif algo.mode == "inference":
                items = [(i, first[i] if first[i] is not None else a.act(replies[i])) for i, a in enumerate(actors)]
                first = [None] * len(actors)
                for _, p in items:
                    progress.observe(p)
                answers, metrics = learner.infer(items)
                replies = list(answers)
                if metrics:
                    after_update(algo, learner, progress, ckpt, generation, metrics, callback)
            else:
                raise ValueError(f"unknown runner mode {algo.mode!r}")
    finally:
        for a in actors:
            a.close()
        close_learner(learner)
    ckpt.save(checkpoint_state(algo, learner, progress, generation))
    return learner.policy(), progress, {**_learner_stats(learner), **watch.stats()}


def close_learner(learner) -> None:
    """A learner may hold threads (SEED's training thread): ``close()`` stops them, when it has one."""
    close = getattr(learner, "close", None)
    if callable(close):
        close()


def _learner_stats(learner) -> dict:
    stats = getattr(learner, "stats", None)
    return dict(stats()) if callable(stats) else {}


def mean_of(arrays: list[np.ndarray]) -> np.ndarray:
    """The local runner's gradient average (the Spark runner's is an allreduce divided by the world size)."""
    total = arrays[0].astype(np.float32, copy=True)
    for a in arrays[1:]:
        total += a
    return total / np.float32(len(arrays))
