"""Spark runner: actors are long-lived Spark tasks of **one** barrier stage (``run_barrier``); the learner runs on the
driver and talks to them over :mod:`~sparkml_dist.rl.runners.channel`.

A Spark job costs ~0.1 s here while a PPO-sized rollout takes ~12 ms, so the stage lives for the whole run: tasks
step their envs until the learner answers ``STOP``. If a task dies (its Python worker killed, an executor lost), the
barrier stage fails as a whole; the driver keeps the learner, drops the dead actors' pending requests and launches a
new stage (up to ``maxActorRestarts`` times); the new actors pull the newest weights and continue. DPPO (``"sync"``
mode) has no central learner: its replicas average gradients through the barrier's allreduce and a failed stage
resumes from the last checkpoint.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from sparkml_dist.rl.runners.channel import STOP, ChannelClient, ChannelServer
from sparkml_dist.rl.runners.local import (
    _learner_stats,
    after_update,
    checkpoint_state,
    close_learner,
    single_thread,
    start,
)
from sparkml_dist.rl.runners.memory import MemoryWatch
from sparkml_dist.rl.runners.task import actor_task
from sparkml_dist.runtime.barrier import BarrierTaskError, run_barrier

logger = logging.getLogger(__name__)


class _Stage:
    """The barrier stage of the actors, run from a driver thread (``run_barrier`` blocks until the tasks return)."""

    def __init__(self, algo, spark, args: tuple, task=None):
        self.error: BaseException | None = None
        self.results = None
        self.started = time.perf_counter()
        self.seconds = 0.0
        self.thread = threading.Thread(target=self._run, args=(algo, spark, task or actor_task, args),
                                       name="rl-actors", daemon=True)
        self.thread.start()

    def _run(self, algo, spark, task, args):
        try:
            # actor stages need no gloo group (their channel is the side channel): without one the tasks of IMPALA,
            # SEED and Ape-X never import torch; DPPO's replicas allreduce
            self.results = run_barrier(task, algo.config.numActors, spark=spark, args=args,
                                       timeout=algo.config.timeout, collectives=task is not actor_task)
        except BaseException as exc:  # noqa: BLE001 - inspected by the driver loop
            self.error = exc
        self.seconds = time.perf_counter() - self.started

    @property
    def ended(self) -> bool:
        return not self.thread.is_alive()


def run_spark(algo, spark, callback: Callable[[dict], None] | None = None):
    """Train ``algo`` with its actors as Spark tasks; returns ``(policy, progress, extra_stats)``."""
    if algo.mode == "sync":
        return _run_sync(algo, spark, callback)
    with single_thread():  # the driver's learner: one thread, as in the local runner (same float results)
        return _run_async(algo, spark, callback)


def _run_async(algo, spark, callback):
    c = algo.config
    learner = algo.make_learner()
    progress, ckpt, generation = start(algo, learner)
    host = spark.sparkContext.getConf().get("spark.driver.host", None) or "127.0.0.1"
    server = ChannelServer(host, c.queueSize, auto_reply=algo.mode == "weights")
    if algo.mode != "inference":
        server.publish(learner.reply())

    def launch(generation: int) -> _Stage:
        return _Stage(algo, spark, (algo.actor_factory(), server.address, generation, c.timeout, c.actorNice))

    stage = launch(generation)
    stages = [stage]
    watch = MemoryWatch(c.memoryLimitMB)
    try:
        while not progress.done:
            watch.check(server.actors, server.hosts)
            if stage.ended:
                cause = stage.error or RuntimeError("the actor stage returned before the run was done")
                if progress.restarts >= c.maxActorRestarts:
                    raise RuntimeError(f"{algo.name}: actors failed {progress.restarts + 1} times "
                                       f"(maxActorRestarts={c.maxActorRestarts})") from cause
                progress.restarts += 1
                generation += 1
                logger.warning("%s: actor stage failed (%s); launching replacement actors (restart %d of %d)",
                               algo.name, _short(cause), progress.restarts, c.maxActorRestarts)
                server.reset()
                stage = launch(generation)
                stages.append(stage)
                continue
            items = server.take(algo.mode, c.numActors)
            if not items:
                continue
            for req in items:
                progress.observe(req.payload)
            batch = [(req.actor_id, req.payload) for req in items]
            if algo.mode == "weights":
                metrics = learner.consume(batch)
                server.publish(learner.reply())
            elif algo.mode == "round":
                reply = learner.reply()  # before training: the next round acts one version behind
                for req in items:
                    req.answer(reply)
                metrics = learner.consume(batch)
            else:
                answers, metrics = learner.infer(batch)
                for req, answer in zip(items, answers, strict=True):
                    req.answer(answer)
            if metrics:
                after_update(algo, learner, progress, ckpt, generation, metrics, callback, server.actors)
    finally:
        server.stop_actors()
        stage.thread.join(60)
        server.close()
        close_learner(learner)
    ckpt.save(checkpoint_state(algo, learner, progress, generation))
    extra = {**_learner_stats(learner), **_stage_stats(stage), "channel_bytes_in": server.bytes_in,
             "channel_bytes_out": server.bytes_out, "channel_requests": server.requests, "stages": len(stages),
             **watch.stats()}
    extra["stage_reattempts"] = max(extra.get("stage_reattempts", 0), server.reattempts())
    return learner.policy(), progress, extra


def _stage_stats(stage: _Stage) -> dict:
    """Where the actors' time went: stepping + policy (``act``), waiting on the channel, and Spark (the rest)."""
    if not stage.results:
        return {}
    act = sum(r["act_seconds"] for r in stage.results)
    chan = sum(r["channel_seconds"] for r in stage.results)
    wall = stage.seconds * len(stage.results)
    # Spark's re-attempts of the last stage (a lost actor task fails the barrier stage; run_barrier's stage retries)
    attempt = max((s.get("attempt", 0) for s in getattr(stage.results, "stats", [])), default=0)
    return {"actor_act_seconds": act, "actor_channel_seconds": chan, "stage_seconds": stage.seconds,
            "spark_share": max(0.0, 1.0 - (act + chan) / max(wall, 1e-9)), "stage_reattempts": max(attempt, 0),
            # each actor process at its end: its RSS, and whether torch was loaded in it (IMPALA/SEED/Ape-X: no)
            "actor_rss_mb": [round(r.get("rss_mb", 0.0), 1) for r in stage.results],
            "actor_torch_imported": [bool(r.get("torch_imported")) for r in stage.results]}


def _short(exc: BaseException) -> str:
    if isinstance(exc, BarrierTaskError):
        return f"rank {exc.rank}: {exc.remote_traceback.strip().splitlines()[-1]}"
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"


def _replica_task(ctx, algo, state, generation: int, address: str):
    """One DPPO replica: gradients averaged over the barrier's allreduce; progress reported to the driver."""
    import torch

    torch.set_num_threads(1)
    world = ctx.world_size
    client = ChannelClient(address, {"actor_id": ctx.rank, "pid": os.getpid(), "generation": generation},
                           timeout=algo.config.timeout)

    def reduce_mean(flat):
        return ctx.allreduce(flat) / world

    def report(payload: dict) -> dict:
        reply = client.request(payload)
        if isinstance(reply, str) and reply == STOP:
            raise RuntimeError("dppo: the driver stopped the run")
        return reply

    try:
        return algo.run_replicas([ctx.rank], reduce_mean, None, state=state, generation=generation, rank=ctx.rank,
                                 world_size=world, report=report)
    finally:
        client.close()


def _run_sync(algo, spark, callback):
    """DPPO: one barrier stage whose ranks are synchronous replicas; a failed stage resumes from the checkpoint.

    The replicas average gradients among themselves (allreduce); after every update each sends its steps, returns
    and loss to the driver, which records the round in its :class:`Progress` (the log lines and ``history`` of the
    other algorithms), runs ``callback`` and answers every replica with the round and the stop decision.
    """
    c = algo.config
    from sparkml_dist.rl.core.nets import set_flat
    from sparkml_dist.rl.runners.local import event

    progress, ckpt, generation = start(algo)
    state = ckpt.loaded
    host = spark.sparkContext.getConf().get("spark.driver.host", None) or "127.0.0.1"
    server = ChannelServer(host, max(c.queueSize, c.numActors), auto_reply=False)
    policy = algo.make_policy() if callback is not None else None
    stage = _Stage(algo, spark, (algo, state, generation, server.address), task=_replica_task)
    restarts = 0
    watch = MemoryWatch(c.memoryLimitMB)
    try:
        while True:
            watch.check(server.actors, server.hosts)
            if stage.ended:
                if stage.error is None:
                    break
                if restarts >= c.maxActorRestarts:
                    raise RuntimeError(f"{algo.name}: replicas failed {restarts + 1} times "
                                       f"(maxActorRestarts={c.maxActorRestarts})") from stage.error
                restarts += 1
                logger.warning("%s: replica stage failed (%s); relaunching from the last checkpoint (restart %d of "
                               "%d)", algo.name, _short(stage.error), restarts, c.maxActorRestarts)
                server.reset()
                before = generation
                progress, ckpt, generation = start(algo)  # the driver's progress goes back to the checkpoint too
                state, generation = ckpt.loaded, max(generation, before + 1)  # fresh env seeds
                stage = _Stage(algo, spark, (algo, state, generation, server.address), task=_replica_task)
                continue
            items = server.take("round", c.numActors)
            if not items:
                continue
            payloads = [{"steps": r.payload["steps"], "returns": r.payload["returns"], "loss": r.payload["loss"]}
                        for r in items]
            metrics = algo.round_metrics(payloads)
            for p in payloads:
                progress.observe(p)
            progress.learned(dict(metrics))
            if callback is not None:
                set_flat(policy, items[0].payload["weights"])
                if callback(event(progress, policy, server.actors)) is True:
                    progress.stopped = True
            reply = {"payloads": payloads, "loss": metrics["loss"], "stop": progress.stopped}
            for req in items:
                req.answer(reply)
    finally:
        server.stop_actors()
        stage.thread.join(60)
        server.close()
    results = stage.results
    policy, _, extra = results[0]
    progress.restarts += restarts
    extra = {**extra, **watch.stats(), "stage_seconds": results.seconds, "stages": restarts + 1,
             "spark_share": max(0.0, 1.0 - max(s["seconds"] for s in results.stats) / max(results.seconds, 1e-9))}
    return policy, progress, extra
