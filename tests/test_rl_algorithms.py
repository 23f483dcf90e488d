"""Every algorithm through both runners on CartPole-v1 with small budgets (CleanRL style), and the run machinery:
deterministic lag-1 IMPALA, a killed actor replaced, resume from a checkpoint, bad configs, save/load, back-pressure."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest
import torch

from sparkml_dist.rl import ALGORITHMS, IMPALA, RLResult
from sparkml_dist.rl.core import VectorEnv, get_flat
from sparkml_dist.rl.runners.channel import ChannelClient, ChannelServer

#: small CartPole budgets that learn in seconds (the rl_full benchmark runs the published-size targets)
FAST = {
    "dppo": dict(totalSteps=16_384, numSteps=32, updateEpochs=8, numMinibatches=2, learningRate=1e-3, gaeLambda=0.8,
                 gamma=0.98, entropyCoef=0.0),
    "impala": dict(totalSteps=24_000, unrollLength=16, batchUnrolls=1, learningRate=2e-3),
    "seed": dict(totalSteps=24_000, unrollLength=16, batchUnrolls=1, learningRate=2e-3),
    "a3c": dict(totalSteps=20_000),
    "apex": dict(totalSteps=30_000, learningStarts=1_000),
    "gorila": dict(totalSteps=60_000, nStep=3),  # 1-step targets (30k) and 3-step at 40k pass only in some async orders
}
#: asynchronous Spark runs whose order varies run by run. GORILA's numpy actor-learners outpace the server, which
#: drops ~18% of their gradients as stale (maxStaleness): at 80k, 1 run in ~6 ended below 100; at 100k 3 of 3 passed
SPARK_BUDGET = {"gorila": 100_000}


def random_return(episodes: int = 10, seed: int = 10_000) -> float:
    """Mean return of a uniformly random policy on the evaluation seeds (the reference to beat)."""
    env = VectorEnv("CartPole-v1", episodes, seed)
    rng = np.random.default_rng(0)
    returns = np.full(episodes, np.nan)
    running = np.zeros(episodes)
    while np.isnan(returns).any():
        _, r, _, done, _ = env.step(rng.integers(0, 2, episodes))
        running += r
        first = done & np.isnan(returns)
        returns[first] = running[first]
        running[done] = 0
    return float(returns.mean())


@pytest.fixture(scope="module")
def random_baseline():
    return random_return()


@pytest.mark.parametrize("runner", ["local", "spark"])
@pytest.mark.parametrize("name", sorted(FAST))
def test_learns_cartpole(name, runner, spark, random_baseline):
    params = {**FAST[name], "totalSteps": SPARK_BUDGET.get(name, FAST[name]["totalSteps"])} if runner == "spark" \
        else FAST[name]
    algo = ALGORITHMS[name](env="CartPole-v1", numActors=2, envsPerActor=8, seed=0, runner=runner, **params)
    result = algo.train(spark=spark if runner == "spark" else None)
    score = result.evaluate(episodes=10)
    assert result.stats["env_steps"] >= params["totalSteps"]
    assert result.history and result.history[-1]["env_steps"] == result.stats["env_steps"]
    assert score >= max(100.0, 4 * random_baseline), (name, runner, score, random_baseline, result.history[-3:])
    if runner == "spark" and name != "dppo":
        assert result.stats["stages"] == 1 and result.stats["channel_requests"] > 0


LAG1 = dict(env="CartPole-v1", numActors=2, envsPerActor=8, totalSteps=6_144, unrollLength=16, seed=3,
            lagMode="lag1", learningRate=2e-3)


def test_impala_lag1_is_bit_for_bit_on_both_runners(spark):
    a = IMPALA(runner="local", **LAG1).train()
    b = IMPALA(runner="local", **LAG1).train()
    c = IMPALA(runner="spark", **LAG1).train(spark)
    wa, wb, wc = (get_flat(r.policy) for r in (a, b, c))
    assert np.array_equal(wa, wb) and np.array_equal(wa, wc)
    assert [h["return"] for h in a.history] == [h["return"] for h in c.history]
    # the first update trains on data from the initial weights (lag 0), every later one is exactly one behind
    assert a.stats["policy_lag_max"] == 1.0 and c.stats["policy_lag_max"] == 1.0
    assert a.stats["policy_lag_mean"] == pytest.approx(1 - 1 / a.stats["updates"])


def test_killed_actor_is_replaced_and_learner_continues(spark):
    killed = {}

    def kill_once(event):
        if not killed and event["env_steps"] >= 4_000 and len(event["actors"]) == 2:
            killed["pid"], killed["at"] = event["actors"][1], event["updates"]
            os.kill(killed["pid"], signal.SIGKILL)  # the real Python worker of actor 1

    algo = IMPALA(env="CartPole-v1", numActors=2, envsPerActor=8, totalSteps=16_000, unrollLength=16,
                  batchUnrolls=1, learningRate=2e-3, runner="spark", maxActorRestarts=2)
    result = algo.train(spark, callback=kill_once)
    assert killed, "the callback never saw both actors"
    # a killed task fails the whole barrier stage: the run can only reach its budget if both actors were replaced,
    # by Spark's stage re-attempt (run_barrier's retryable stage; the session has retries on) or, once Spark's
    # attempts are spent, by the runner's relaunch (`actor_restarts`); the learner kept its state throughout
    assert result.stats["env_steps"] >= 16_000 and result.stats["updates"] > killed["at"]
    assert result.stats["actor_restarts"] + result.stats["stage_reattempts"] >= 1


def test_resume_from_checkpoint(tmp_path):
    params = dict(env="CartPole-v1", numActors=2, envsPerActor=4, unrollLength=16, checkpointDir=str(tmp_path),
                  checkpointEvery=1_024, learningRate=2e-3)
    first = IMPALA(totalSteps=4_096, **params).train()
    assert (tmp_path / "checkpoint.pt").exists()
    second = IMPALA(totalSteps=8_192, **params).train()
    key = [(h["env_steps"], h["updates"], h["seconds"]) for h in first.history]
    assert [(h["env_steps"], h["updates"], h["seconds"]) for h in second.history[:len(key)]] == key  # continued
    assert second.stats["env_steps"] >= 8_192 and second.stats["updates"] > first.stats["updates"]
    assert second.stats["env_steps"] - first.stats["env_steps"] < 8_192  # it did not start over
    with pytest.raises(ValueError, match="holds a 'impala' run"):
        ALGORITHMS["seed"](totalSteps=8_192, **params).train()


def test_apex_step_size_decays_with_the_env_steps_received():
    """Ape-X's ``annealLr``: before each round of DQN steps the step size is lr0 x (1 - env steps received / budget)
    (the env steps of every payload, learning or not); without it the step size stays lr0."""
    params = dict(env="CartPole-v1", numActors=2, envsPerActor=4, unrollLength=8, totalSteps=6_000,
                  learningStarts=500, learningRate=1e-3, runner="local")
    annealed = ALGORITHMS["apex"](annealLr=True, **params).train()
    rows = [h for h in annealed.history if "lr" in h]
    assert len(rows) >= 5
    lrs = [h["lr"] for h in rows]
    assert lrs == sorted(lrs, reverse=True) and lrs[0] < 1e-3
    for h in rows:  # a row's newest update ran after its env steps (the row's count) were received
        assert h["lr"] == pytest.approx(1e-3 * max(0.0, 1 - h["env_steps"] / params["totalSteps"]), abs=1e-12)
    fixed = ALGORITHMS["apex"](annealLr=False, **params).train()
    assert {h["lr"] for h in fixed.history if "lr" in h} == {1e-3}


def test_impala_step_size_decays_linearly_to_zero_over_the_budget():
    # lag-1 rounds: every update trains on one 16-step unroll of 8 envs from each of the 2 actors (256 env steps)
    params = dict(LAG1, totalSteps=4_096, envsPerActor=8)
    per_update, lr0 = 2 * 8 * 16, LAG1["learningRate"]
    annealed = IMPALA(runner="local", **params).train()
    rows = [h for h in annealed.history if "lr" in h]
    assert len(rows) >= 5 and rows[-1]["updates"] == params["totalSteps"] // per_update
    for h in rows:  # the step size of a row's newest update, the (updates - 1) before it already trained
        assert h["lr"] == pytest.approx(lr0 * (1 - (h["updates"] - 1) * per_update / params["totalSteps"]))
    assert rows[-1]["lr"] == pytest.approx(lr0 / 16)
    fixed = IMPALA(runner="local", annealLr=False, **params).train()
    assert {h["lr"] for h in fixed.history if "lr" in h} == {lr0}
    assert not np.array_equal(get_flat(annealed.policy), get_flat(fixed.policy))


@pytest.mark.parametrize("params, message", [
    (dict(env="NoSuchEnv-v0"), "env='NoSuchEnv-v0' is not a registered"),
    (dict(numActors=0), "numActors must be >= 1"),
    (dict(learningRate=-1e-3), "learningRate must be > 0"),
    (dict(totalSteps=100), "totalSteps=100 is smaller than one learner batch"),
    (dict(runner="ray"), "runner must be one of"),
    (dict(numActor=2), "unknown parameter.*numActor"),
])
def test_bad_config_fails_before_any_actor(params, message, spark):
    calls = []
    with pytest.raises(ValueError, match=message):
        IMPALA(**{"runner": "spark", **params}).train(spark, callback=calls.append)
    assert not calls


def test_apex_needs_discrete_actions():
    with pytest.raises(ValueError, match="needs a Discrete action space"):
        ALGORITHMS["apex"](env="Pendulum-v1").train()


def test_save_load_roundtrip(tmp_path):
    result = IMPALA(totalSteps=2_048, numActors=1, unrollLength=16).train()
    result.save(str(tmp_path / "run"))
    loaded = RLResult.load(str(tmp_path / "run"))
    obs = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    with torch.no_grad():
        assert torch.equal(result.policy.actor(torch.as_tensor(obs)), loaded.policy.actor(torch.as_tensor(obs)))
    assert [h["env_steps"] for h in loaded.history] == [h["env_steps"] for h in result.history]
    assert loaded.config["totalSteps"] == 2_048
    assert loaded.evaluate(3) == result.evaluate(3)


def test_channel_back_pressure():
    server = ChannelServer("127.0.0.1", queue_size=2, auto_reply=True)
    server.publish((0, np.zeros(3)))
    client = ChannelClient(server.address, {"actor_id": 0, "pid": os.getpid()}, timeout=30)
    sent = []

    def push():
        for i in range(5):
            client.request({"steps": 1, "returns": [], "i": i})
            sent.append(i)

    thread = threading.Thread(target=push, daemon=True)
    thread.start()
    time.sleep(1.0)
    assert server.queue.qsize() == 2 and sent == [0, 1]  # the third request waits: the actor is blocked
    got = server.take("weights", 1)
    deadline = time.time() + 10
    while len(sent) < 4 and time.time() < deadline:
        time.sleep(0.05)
    assert [r.payload["i"] for r in got] == [0, 1] and sent == [0, 1, 2, 3]
    server.stop_actors()
    thread.join(10)
    assert not thread.is_alive()
    client.close()
    server.close()


def test_dppo_replicas_average_the_same_on_both_runners(spark, caplog):
    """Continuous actions (Pendulum): 2 Spark replicas averaging by allreduce take the very steps that the local
    runner takes averaging the same 2 workers' gradients in one process. Their progress reaches the driver: its
    log lines, its callback (which stops both runs at the same update) and the result's history are the local run's."""
    params = dict(env="Pendulum-v1", numActors=2, envsPerActor=2, numSteps=64, totalSteps=2_048, numMinibatches=2,
                  updateEpochs=2, seed=5, logEvery=1e-6)  # 256 env steps per update; episodes end at 200 steps
    events: dict[str, list] = {"local": [], "spark": []}

    def stopper(runner):
        def callback(event):
            events[runner].append((event["env_steps"], event["updates"], event["return"], get_flat(event["policy"]),
                                   os.getpid()))
            return event["env_steps"] >= 1_536  # early stop: 6 of the 8 updates

        return callback

    local = ALGORITHMS["dppo"](runner="local", **params).train(callback=stopper("local"))
    with caplog.at_level("INFO", logger="sparkml_dist.rl"):
        dist = ALGORITHMS["dppo"](runner="spark", **params).train(spark, callback=stopper("spark"))
    np.testing.assert_allclose(get_flat(dist.policy), get_flat(local.policy), rtol=0, atol=1e-6)
    assert not np.allclose(get_flat(local.policy), get_flat(ALGORITHMS["dppo"](**params).make_policy()))  # it moved
    assert dist.stats["env_steps"] == local.stats["env_steps"] == 1_536
    # the driver saw every update (the callback ran in this process, with the replicas' current weights)
    every_update = [(256 * k, 4 * k) for k in range(1, 7)]
    assert [e[:2] for e in events["spark"]] == [e[:2] for e in events["local"]] == every_update
    assert {e[4] for e in events["spark"]} == {os.getpid()}
    np.testing.assert_allclose(events["spark"][-1][3], get_flat(dist.policy), rtol=0, atol=0)
    # history: one row per update, the same steps, episodes, updates, returns and losses as the local run
    cols = ("env_steps", "episodes", "updates")
    assert [[h[k] for k in cols] for h in dist.history] == [[h[k] for k in cols] for h in local.history]
    assert len(dist.history) == 6 and dist.history[-1]["episodes"] == 4  # one per env
    for key in ("return", "loss"):
        np.testing.assert_allclose([h[key] for h in dist.history], [h[key] for h in local.history], rtol=1e-5)
    logged = [r.getMessage() for r in caplog.records if r.name == "sparkml_dist.rl" and r.process == os.getpid()]
    assert any(m.startswith("dppo: 1536/2048 env steps") for m in logged), logged


def test_rl_job_writes_policy_and_metrics(spark, tmp_path):
    from sparkml_dist.rl.jobs import build
    from sparkml_dist.runner import load_config, run_job

    cfg = load_config("conf/jobs/rl_impala.yaml", ["params.totalSteps=2048", "params.runner=local",
                                                   "params.checkpointDir=null", "evaluate.episodes=2"], "rl")
    metrics = run_job("rl", cfg, spark, output=str(tmp_path / "out"))
    assert metrics["env_steps"] >= 2_048 and "greedy_return" in metrics
    loaded = RLResult.load(str(tmp_path / "out" / "policy"))
    assert loaded.algorithm == "impala" and loaded.config["unrollLength"] == 16
    with pytest.raises(ValueError, match="algorithm='nope': unknown"):
        build({"algorithm": "nope"})
    with pytest.raises(ValueError, match="envsPerActor must be >= 1"):
        build({"algorithm": "apex", "params": {"envsPerActor": 0}})
