"""RL cores against hand-computed values and small numpy re-implementations written here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparkml_dist.rl.core import (
    PrioritizedReplay,
    SumTree,
    VectorEnv,
    apex_epsilons,
    gae,
    linear_schedule,
    nstep_targets,
    vtrace,
)


def _gae_numpy(r, v, d, last, gamma, lam):
    T, B = r.shape
    adv = np.zeros((T, B))
    for b in range(B):
        a = 0.0
        for t in reversed(range(T)):
            nv = last[b] if t == T - 1 else v[t + 1, b]
            delta = r[t, b] + gamma * nv * (1 - d[t, b]) - v[t, b]
            a = delta + gamma * lam * (1 - d[t, b]) * a
            adv[t, b] = a
    return adv


def test_gae_hand_computed():
    # T=3, one env, done after step 1: gamma=0.9, lam=0.5
    r = torch.tensor([[1.0], [2.0], [3.0]])
    v = torch.tensor([[0.5], [1.0], [2.0]])
    d = torch.tensor([[0.0], [1.0], [0.0]])
    adv, ret = gae(r, v, d, torch.tensor([4.0]), gamma=0.9, lam=0.5)
    # delta2 = 3 + .9*4 - 2 = 4.6 ; A2 = 4.6
    # delta1 = 2 + 0 - 1 = 1 ; A1 = 1 (episode ended: nothing from step 2)
    # delta0 = 1 + .9*1 - .5 = 1.4 ; A0 = 1.4 + .45*1 = 1.85
    assert adv[:, 0].tolist() == pytest.approx([1.85, 1.0, 4.6])
    assert ret[:, 0].tolist() == pytest.approx([2.35, 2.0, 6.6])


def test_gae_matches_numpy_loop():
    rng = np.random.default_rng(0)
    r, v = rng.normal(size=(7, 3)), rng.normal(size=(7, 3))
    d = (rng.random((7, 3)) < 0.3).astype(float)
    last = rng.normal(size=3)
    adv, _ = gae(*(torch.as_tensor(x) for x in (r, v, d, last)), gamma=0.97, lam=0.9)
    np.testing.assert_allclose(adv.numpy(), _gae_numpy(r, v, d, last, 0.97, 0.9), rtol=1e-12)


def test_nstep_hand_computed():
    # one env, 4 steps, terminated after step 2, n=2, gamma=0.5
    r = np.array([[1.0], [2.0], [4.0], [8.0]])
    term = np.array([[0], [0], [1], [0]], dtype=bool)
    R, disc, last = nstep_targets(r, term, term, gamma=0.5, n=2)
    assert R[:, 0].tolist() == [1 + 0.5 * 2, 2 + 0.5 * 4, 4, 8]
    assert disc[:, 0].tolist() == [0.25, 0.0, 0.0, 0.5]   # t=1 window hits the terminal; t=3 is cut by the unroll end
    assert last[:, 0].tolist() == [1, 2, 2, 3]


def test_nstep_truncation_bootstraps():
    r = np.ones((3, 1))
    term = np.zeros((3, 1), dtype=bool)
    done = np.array([[0], [1], [0]], dtype=bool)  # truncated after step 1
    R, disc, last = nstep_targets(r, term, done, gamma=0.9, n=3)
    assert R[0, 0] == pytest.approx(1.9) and disc[0, 0] == pytest.approx(0.81) and last[0, 0] == 1


def test_vtrace_on_policy_equals_nstep_returns():
    rng = np.random.default_rng(1)
    T, B, gamma = 6, 4, 0.95
    r = rng.normal(size=(T, B))
    done = rng.random((T, B)) < 0.2
    v = rng.normal(size=(T + 1, B))  # V(x_0..x_T); after a done, x_{t+1} is a reset obs, cut by the discount
    logp = np.log(rng.uniform(0.1, 1.0, size=(T, B)))
    vs, pg = vtrace(*(torch.as_tensor(x) for x in (logp, logp, r, gamma * (1 - done), v[:-1], v[-1])))
    # reference: n-step returns with the window running to the unroll's end, bootstrapped from V
    R, disc, last = nstep_targets(r, done, done, gamma, n=T)
    boot = v[last + 1, np.arange(B)[None, :]]
    expected = R + disc * boot
    np.testing.assert_allclose(vs.numpy(), expected, rtol=1e-10)
    expected_next = np.concatenate([expected[1:], v[-1:]])
    np.testing.assert_allclose(pg.numpy(), r + gamma * (1 - done) * expected_next - v[:-1], rtol=1e-10, atol=1e-12)


def test_vtrace_clipping_hand_computed():
    # T=2, B=1: pi/mu = [2, 0.5]; rho_bar = c_bar = 1 -> rho = c = [1, 0.5]; gamma 0.9, no dones
    mu = torch.log(torch.tensor([[0.25], [0.5]]))
    pi = torch.log(torch.tensor([[0.5], [0.25]]))
    r = torch.tensor([[1.0], [1.0]])
    values = torch.tensor([[0.0], [1.0]])
    boot = torch.tensor([2.0])
    vs, pg = vtrace(mu, pi, r, torch.full((2, 1), 0.9), values, boot)
    # delta1 = 0.5 (1 + .9*2 - 1) = 0.9 ; vs1 = 1 + 0.9 = 1.9
    # delta0 = 1 (1 + .9*1 - 0) = 1.9 ; vs0 = 0 + 1.9 + .9*1*(1.9 - 1) = 2.71
    assert vs[:, 0].tolist() == pytest.approx([2.71, 1.9])
    # pg0 = min(1, 2) (1 + .9*1.9 - 0) = 2.71 ; pg1 = 0.5 (1 + .9*2 - 1) = 0.9
    assert pg[:, 0].tolist() == pytest.approx([2.71, 0.9])


def test_sum_tree_sums_and_log_n_update():
    rng = np.random.default_rng(0)
    tree = SumTree(1000)
    assert tree.leaves == 1024 and tree.depth == 10
    prios = rng.uniform(0, 5, 1000)
    tree.update(np.arange(1000), prios)
    for _ in range(50):
        i = int(rng.integers(1000))
        prios[i] = rng.uniform(0, 5)
        tree.update([i], [prios[i]])
        assert tree.last_update_writes == tree.depth + 1  # the leaf and one node per level: O(log n)
    assert tree.total == pytest.approx(prios.sum())
    # every internal node is the sum of its subtree (brute force over the leaf array)
    leaves = np.zeros(tree.leaves)
    leaves[:1000] = prios
    for level in range(tree.depth + 1):
        width = tree.leaves >> level
        nodes = tree.nodes[width:2 * width]
        np.testing.assert_allclose(nodes, leaves.reshape(width, -1).sum(1), rtol=1e-9)


def test_sum_tree_sampling_proportions():
    rng = np.random.default_rng(3)
    tree = SumTree(5)
    p = np.array([1.0, 0.0, 3.0, 6.0, 10.0])
    tree.update(np.arange(5), p)
    draws = np.concatenate([tree.sample(256, rng) for _ in range(200)])
    freq = np.bincount(draws, minlength=5) / len(draws)
    np.testing.assert_allclose(freq, p / p.sum(), atol=0.01)
    assert freq[1] == 0.0


def test_prioritized_replay_weights_and_eviction():
    rng = np.random.default_rng(0)
    replay = PrioritizedReplay(4, {"x": ((), np.float32)}, alpha=1.0, beta=1.0, eps=0.0)
    replay.add({"x": np.arange(6, dtype=np.float32)}, priorities=np.array([9, 9, 1, 1, 2, 4.0]))
    assert len(replay) == 4 and sorted(replay.data["x"].tolist()) == [2, 3, 4, 5]  # FIFO: the oldest evicted
    batch, idx, w = replay.sample(4000, rng)
    probs = replay.tree.get(idx) / replay.tree.total
    np.testing.assert_allclose(w, (1 / probs) / (1 / probs).max(), rtol=1e-6)  # (N P)^-beta, normalised
    freq = np.bincount(batch["x"].astype(int), minlength=6)[2:] / 4000
    np.testing.assert_allclose(freq, np.array([1, 1, 2, 4]) / 8, atol=0.01)


def test_apex_epsilons():
    eps = apex_epsilons(4)
    np.testing.assert_allclose(eps, [0.4 ** (1 + 7 * i / 3) for i in range(4)], rtol=1e-15)
    assert eps[0] == pytest.approx(0.4) and eps[-1] == pytest.approx(0.4 ** 8)
    assert apex_epsilons(1).tolist() == [0.4]  # N = 1: no 0/0
    with pytest.raises(ValueError, match="num_actors"):
        apex_epsilons(0)
    assert linear_schedule(1.0, 0.1, 100, 50) == pytest.approx(0.55)
    assert linear_schedule(1.0, 0.1, 100, 500) == pytest.approx(0.1)


def test_vector_env_batches_and_final_obs():
    env = VectorEnv("CartPole-v1", 8, seed=0)
    assert env.obs.shape == (8, 4)
    ends = 0
    for _ in range(60):
        obs, r, term, done, next_obs = env.step(np.zeros(8, dtype=np.int64))  # always left: falls in ~10 steps
        if done.any():
            i = int(np.flatnonzero(done)[0])
            assert not np.allclose(obs[i], next_obs[i])  # reset obs vs the final obs of the ended episode
            assert abs(next_obs[i][2]) > 0.2 or abs(next_obs[i][0]) > 2.4  # really a terminal state
        ends += int(done.sum())
    returns = env.drain_returns()
    assert len(returns) == ends and all(8 <= x <= 20 for x in returns)
    assert env.steps == 480
    env.close()


@pytest.mark.parametrize("env_id, policy, steps", [
    ("CartPole-v1", "random", 300),        # short episodes: terminations
    ("CartPole-v1", "controller", 1_500),  # a balancing controller: episodes truncated at 500 steps
    ("Acrobot-v1", "random", 600),         # not batched: the per-env loop (truncated at 500)
])
def test_vector_env_is_gymnasium_same_step_autoreset(env_id, policy, steps):
    """The in-loop stepping, and CartPole's batched numpy step, reproduce gymnasium's SyncVectorEnv (same-step
    autoreset) exactly: obs, rewards, terminations, truncations and final observations, across episode ends."""
    import gymnasium as gym

    ref = gym.vector.SyncVectorEnv([lambda: gym.make(env_id) for _ in range(4)],
                                   autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    ref_obs, _ = ref.reset(seed=[7, 8, 9, 10])
    env = VectorEnv(env_id, 4, seed=7)
    assert (env._batch is not None) == (env_id == "CartPole-v1")
    np.testing.assert_array_equal(env.obs, ref_obs)
    rng = np.random.default_rng(0)
    ended = truncated = 0
    for _ in range(steps):
        if policy == "controller":  # push the cart under the falling pole; a random action 10% of the time
            a = np.where(rng.random(4) < 0.1, rng.integers(0, 2, 4), (env.obs[:, 2] + 0.5 * env.obs[:, 3] > 0))
            a = a.astype(np.int64)
        else:
            a = rng.integers(0, ref.single_action_space.n, 4)
        obs, r, term, done, next_obs = env.step(a)
        o, rr, te, tr, info = ref.step(a)
        np.testing.assert_array_equal(obs, o)
        np.testing.assert_array_equal(r, rr.astype(np.float32))
        np.testing.assert_array_equal(done, te | tr)
        np.testing.assert_array_equal(term, te)
        for i in np.flatnonzero(te | tr):
            np.testing.assert_array_equal(next_obs[i], info["final_obs"][i])
            ended += 1
            truncated += int(tr[i])
    assert ended >= (4 if policy == "controller" or env_id == "Acrobot-v1" else 10)
    if policy == "controller" or env_id == "Acrobot-v1":
        assert truncated >= 4, truncated  # the time limit's path ran
    ref.close()
    env.close()


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_policy_act_matches_the_torch_distribution(env_id):
    """``act`` runs the actor in numpy: its log-probabilities are those of the torch distribution the learners
    train (within float32), greedy actions are its mode, sampled actions follow it, and a weight update is seen."""
    from sparkml_dist.rl.algorithm import env_spaces
    from sparkml_dist.rl.core.nets import ActorCritic

    torch.manual_seed(0)
    net = ActorCritic(*env_spaces(env_id))
    obs = np.random.default_rng(1).normal(size=(256, net.actor[0].in_features)).astype(np.float32)

    def check():
        actions, logp = net.act(obs, rng=np.random.default_rng(2))
        with torch.no_grad():
            dist = net.dist(torch.as_tensor(obs))
            ref = net.log_prob(dist, torch.as_tensor(actions)).numpy()
            greedy, _ = net.act(obs, greedy=True)
            mode = dist.probs.argmax(-1).numpy() if net.discrete else dist.mean.numpy()
        np.testing.assert_allclose(logp, ref, rtol=1e-4, atol=1e-4)  # float32 arithmetic in another order
        # float32 sums in another order: errors scale with the largest output (after the update, |mean| ~ 100)
        np.testing.assert_allclose(greedy, mode, rtol=1e-5, atol=1e-6 * max(1.0, float(np.abs(mode).max())))
        return dist

    dist = check()
    if net.discrete:  # sampling: the empirical action frequencies of one state follow its probabilities
        many = np.repeat(obs[:1], 20_000, axis=0)
        actions, _ = net.act(many, rng=np.random.default_rng(3))
        freq = np.bincount(actions, minlength=2) / len(actions)
        np.testing.assert_allclose(freq, dist.probs[0].numpy(), atol=0.015)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)  # an in-place update: act must use the new weights
    loss = net.dist(torch.as_tensor(obs)).entropy().sum() if net.discrete else net.actor(torch.as_tensor(obs)).sum()
    loss.backward()
    opt.step()
    check()


def test_act_sees_every_set_flat():
    """The driver loads each update's weights with ``set_flat`` and evaluates only now and then: every ``act``
    must use the weights last loaded. Reference: the torch distribution's mode of the same net. (When ``set_flat``
    swapped ``.data``, fresh vectors reused freed addresses and 19 of 20 evaluations here acted on stale weights.)"""
    from sparkml_dist.rl.algorithm import env_spaces
    from sparkml_dist.rl.core.nets import ActorCritic, QNetwork, get_flat, set_flat

    obs = np.random.default_rng(0).normal(size=(256, 4)).astype(np.float32)
    rng = np.random.default_rng(1)
    for net in (ActorCritic(*env_spaces("CartPole-v1")), QNetwork(*env_spaces("CartPole-v1"))):
        size = len(get_flat(net))
        for i in range(60):
            set_flat(net, rng.normal(scale=0.5, size=size).astype(np.float32))
            if i % 10 == 0:
                greedy, _ = net.act(obs, greedy=True)
                with torch.no_grad():
                    x = torch.as_tensor(obs)
                    mode = net.dist(x).probs.argmax(-1) if isinstance(net, ActorCritic) else net(x).argmax(-1)
                np.testing.assert_array_equal(greedy, mode.numpy())
        with pytest.raises(ValueError, match="values for"):
            set_flat(net, np.zeros(size + 1, dtype=np.float32))


def test_apex_actor_priorities_are_the_torch_td_errors():
    """The Ape-X actor scores its transitions in numpy: |double-DQN n-step target - Q(s, a)| under its own copy of
    the net, equal (float32) to the double-DQN target written in torch here, with the online net as its own target."""
    from sparkml_dist.rl import ApeX
    from sparkml_dist.rl.core.nets import get_flat

    def td_target(net, target, batch):  # R + discount * Q_target(s', argmax_a Q(s', a))
        next_obs = torch.as_tensor(batch["next_obs"])
        boot = target(next_obs).gather(-1, net(next_obs).argmax(-1, keepdim=True)).squeeze(-1)
        return torch.as_tensor(batch["reward"]) + torch.as_tensor(batch["discount"]) * boot

    algo = ApeX(env="CartPole-v1", numActors=2, envsPerActor=4, unrollLength=16, nStep=3)
    torch.manual_seed(1)
    net = algo.make_policy()
    actor = algo.make_actor(0)
    payload = actor.act((5, get_flat(net)))
    batch = payload["batch"]
    assert len(batch["action"]) == (16 - 2) * 4 and payload["version"] == 5
    with torch.no_grad():
        q = net(torch.as_tensor(batch["obs"])).gather(-1, torch.as_tensor(batch["action"]).long()[:, None])[:, 0]
        ref = (td_target(net, net, batch) - q).abs().numpy()
    np.testing.assert_allclose(batch["priority"], ref, rtol=1e-5, atol=1e-6)
    assert ref.std() > 0  # not a constant


def test_numpy_double_dqn_step_is_torchs():
    """Ape-X's numpy learner step against torch on the same data: double-DQN target, importance-weighted Huber loss
    (``smooth_l1_loss``), autograd, ``clip_grad_norm_`` and ``torch.optim.Adam``, 60 steps with target syncs; the
    clipping is active (a small norm) and the TD errors and losses agree at every step."""
    import torch.nn.functional as F

    from sparkml_dist.rl import ApeX
    from sparkml_dist.rl.core.nets import get_flat
    from sparkml_dist.rl.core.qlearn import NumpyDoubleDQN

    algo = ApeX(env="CartPole-v1")
    torch.manual_seed(3)
    net, target = algo.make_policy(), algo.make_policy()
    target.load_state_dict(net.state_dict())
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    dqn = NumpyDoubleDQN(algo.layout(), get_flat(net), lr=2e-3, max_grad_norm=0.1)
    rng = np.random.default_rng(0)
    clipped = 0
    for step in range(60):
        n = 64
        batch = {"obs": rng.normal(size=(n, 4)).astype(np.float32), "action": rng.integers(0, 2, n),
                 "reward": rng.normal(size=n).astype(np.float32),
                 "discount": (0.97 * (rng.random(n) > 0.1)).astype(np.float32),
                 "next_obs": rng.normal(size=(n, 4)).astype(np.float32)}
        weights = rng.uniform(0.2, 1.0, n).astype(np.float32)
        with torch.no_grad():
            nxt = torch.as_tensor(batch["next_obs"])
            a_star = net(nxt).argmax(-1, keepdim=True)
            y = torch.as_tensor(batch["reward"]) + torch.as_tensor(batch["discount"]) * target(nxt).gather(
                -1, a_star)[:, 0]
        q = net(torch.as_tensor(batch["obs"])).gather(-1, torch.as_tensor(batch["action"])[:, None])[:, 0]
        loss = (torch.as_tensor(weights) * F.smooth_l1_loss(q, y, reduction="none")).mean()
        opt.zero_grad()
        loss.backward()
        clipped += float(torch.nn.utils.clip_grad_norm_(net.parameters(), 0.1)) > 0.1
        opt.step()
        got_loss, got_td = dqn.step(batch, weights)
        assert got_loss == pytest.approx(loss.item(), rel=1e-4, abs=1e-6)
        np.testing.assert_allclose(got_td, (y - q.detach()).abs().numpy(), rtol=1e-4, atol=1e-4)
        if step % 20 == 19:
            target.load_state_dict(net.state_dict())
            dqn.sync_target()
    assert clipped > 10
    np.testing.assert_allclose(dqn.params, get_flat(net), atol=2e-4)
    assert np.abs(dqn.params - get_flat(algo.make_policy())).max() > 1e-2  # it trained
    with pytest.raises(ValueError, match="Q-network layout"):
        NumpyDoubleDQN({"kind": "actor_critic", "layers": []}, dqn.params, 1e-3, 1.0)
