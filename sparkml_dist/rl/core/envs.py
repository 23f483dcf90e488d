"""Vectorised environments: ``B`` gymnasium (or ALE) envs stepped together, one batched policy call per step.

:class:`VectorEnv` wraps gymnasium's ``SyncVectorEnv`` in its *same-step* autoreset mode: when an episode ends, the
observation returned is already the next episode's first one and the last one is kept in ``final_obs`` (Ape-X and
GORILA bootstrap truncated episodes from it). It also keeps the episode returns, so every runner reports the same
numbers. Measured here: 8 CartPole envs + one batched MLP call per step run ~3x faster than one env per policy call.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np


def _register_ale() -> None:
    try:
        import ale_py

        gym.register_envs(ale_py)
    except ImportError:  # ALE is optional; its ids are then unknown
        pass


def check_env_id(env_id: str) -> gym.envs.registration.EnvSpec:
    """The spec of ``env_id``; a clear ``ValueError`` naming ``env`` when gymnasium does not know it."""
    if not isinstance(env_id, str) or not env_id:
        raise ValueError(f"env must be a gymnasium environment id (str), got {env_id!r}")
    if env_id.startswith("ALE/"):
        _register_ale()
    try:
        return gym.spec(env_id)
    except gym.error.Error as exc:
        raise ValueError(f"env={env_id!r} is not a registered gymnasium environment: {exc}") from None


def make_env_fn(env_id: str, env_checker: bool = True) -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        if env_id.startswith("ALE/"):
            _register_ale()
        return gym.make(env_id, disable_env_checker=not env_checker)

    return make


class _CartPoleBatch:
    """gymnasium's ``CartPole-v1`` dynamics stepped for all envs at once in numpy (what gymnasium's own
    ``CartPoleVectorEnv`` does, but with same-step autoreset and each env's own reset stream).

    The physics is ``CartPoleEnv.step``'s, operation for operation in float64, with the constants read from the real
    envs; resets go through the real envs (their seeded ``np_random``), whose state is then copied in. So the
    trajectories are gymnasium's (tested equal to ``SyncVectorEnv(SAME_STEP)``), while a step of 8 envs costs one
    set of array operations instead of 8 passes through the wrapper stack (~10x faster).
    """

    def __init__(self, envs: list[gym.Env]):
        self.envs = envs
        self.core = [env.unwrapped for env in envs]
        c = self.core[0]
        self.gravity, self.masspole, self.total_mass = c.gravity, c.masspole, c.total_mass
        self.length, self.polemass_length, self.force_mag, self.tau = c.length, c.polemass_length, c.force_mag, c.tau
        self.x_threshold, self.theta_threshold = c.x_threshold, c.theta_threshold_radians
        self.max_steps = envs[0].spec.max_episode_steps
        self.state = np.stack([core.state for core in self.core]).astype(np.float64)
        self.elapsed = np.zeros(len(envs), dtype=np.int64)
        self.rewards = np.ones(len(envs))  # +1 every step, the last one included (read-only: callers copy it)

    @staticmethod
    def supports(env_id: str, envs: list[gym.Env]) -> bool:
        from gymnasium.envs.classic_control.cartpole import CartPoleEnv

        core = envs[0].unwrapped
        return (env_id == "CartPole-v1" and type(core) is CartPoleEnv and core.kinematics_integrator == "euler"
                and not core._sutton_barto_reward and core.render_mode is None
                and envs[0].spec.max_episode_steps is not None)

    def step(self, actions: np.ndarray):
        x, x_dot, theta, theta_dot = self.state.T
        force = np.where(np.asarray(actions) == 1, self.force_mag, -self.force_mag)
        costheta = np.cos(theta)
        sintheta = np.sin(theta)
        temp = (force + self.polemass_length * np.square(theta_dot) * sintheta) / self.total_mass
        thetaacc = (self.gravity * sintheta - costheta * temp) / (
            self.length * (4.0 / 3.0 - self.masspole * np.square(costheta) / self.total_mass))
        xacc = temp - self.polemass_length * thetaacc * costheta / self.total_mass
        x = x + self.tau * x_dot
        x_dot = x_dot + self.tau * xacc
        theta = theta + self.tau * theta_dot
        theta_dot = theta_dot + self.tau * thetaacc
        self.state = np.stack((x, x_dot, theta, theta_dot), axis=1)
        # |x| > t is exactly (x < -t) | (x > t): abs is exact
        terminated = (np.abs(x) > self.x_threshold) | (np.abs(theta) > self.theta_threshold)
        self.elapsed += 1
        truncated = self.elapsed >= self.max_steps
        obs = self.state.astype(np.float32)
        final = []
        if terminated.any() or truncated.any():
            for i in np.flatnonzero(terminated | truncated):
                final.append((i, obs[i].copy()))
                obs[i] = self.envs[i].reset()[0]  # the env's own seeded stream (and its wrappers' state) resets
                self.state[i] = self.core[i].state
                self.elapsed[i] = 0
        return obs, self.rewards, terminated, truncated, final


class VectorEnv:
    """``num_envs`` copies of ``env_id`` seeded ``seed, seed + 1, ...``; episode returns recorded as they finish.

    Stepped in one loop here with gymnasium's *same-step* autoreset (what ``SyncVectorEnv`` in that mode does, minus
    its info merging and copies: the same trajectories, ~1.3x the env steps/s on CartPole with 8 envs). CartPole-v1
    is stepped for all envs at once (:class:`_CartPoleBatch`: the same trajectories again, ~10x faster per step).
    """

    def __init__(self, env_id: str, num_envs: int, seed: int):
        self.env_id = env_id
        self.num_envs = num_envs
        self.envs = [make_env_fn(env_id, env_checker=False)() for _ in range(num_envs)]
        self.observation_space = self.envs[0].observation_space
        self.action_space = self.envs[0].action_space
        self.action_space.seed(seed)
        space = self.observation_space
        self.obs = np.empty((num_envs, *space.shape), dtype=space.dtype)
        for i, env in enumerate(self.envs):
            self.obs[i] = env.reset(seed=seed + i)[0]
        self._batch = _CartPoleBatch(self.envs) if _CartPoleBatch.supports(env_id, self.envs) else None
        self._ret = np.zeros(num_envs)
        self._len = np.zeros(num_envs, dtype=np.int64)
        self.finished_returns: list[float] = []
        self.finished_lengths: list[int] = []
        self.steps = 0

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Step every env; returns ``(obs, rewards, terminated, dones, next_obs)``.

        ``obs`` is what the policy sees next (a reset observation where an episode ended); ``next_obs`` is the true
        successor of this step (the final observation where an episode ended).
        """
        if self._batch is not None:
            obs, rewards, terminated, truncated, final = self._batch.step(actions)
        else:
            obs, rewards, terminated, truncated, final = self._step_each(actions)
        dones = terminated | truncated
        next_obs = obs
        if final:
            next_obs = obs.copy()
            for i, o in final:
                next_obs[i] = o
        self._ret += rewards
        self._len += 1
        if final:
            for i in np.flatnonzero(dones):
                self.finished_returns.append(float(self._ret[i]))
                self.finished_lengths.append(int(self._len[i]))
            self._ret[dones] = 0.0
            self._len[dones] = 0
        self.obs = obs
        self.steps += self.num_envs
        return obs, rewards.astype(np.float32), terminated, dones, next_obs

    def _step_each(self, actions: np.ndarray):
        B = self.num_envs
        obs = np.empty_like(self.obs)
        rewards = np.empty(B)
        terminated = np.empty(B, dtype=bool)
        truncated = np.empty(B, dtype=bool)
        final = []
        for i, env in enumerate(self.envs):
            o, rewards[i], terminated[i], truncated[i], _ = env.step(actions[i])
            if terminated[i] or truncated[i]:
                final.append((i, o))
                o, _ = env.reset()
            obs[i] = o
        return obs, rewards, terminated, truncated, final

    def drain_returns(self) -> list[float]:
        out, self.finished_returns = self.finished_returns, []
        self.finished_lengths = []
        return out

    def close(self) -> None:
        for env in self.envs:
            env.close()
